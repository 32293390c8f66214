//! The real `redcast` binary, run as a child process: check-config and
//! configuration files.

use std::io::Write;
use std::process::{Command, Output};

/// Runs the binary with a clean environment plus `env`.
pub fn redcast(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redcast"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("runs")
}

/// A temporary config file holding `text`.
pub fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// `check-config` on `text`: success, stdout, stderr.
pub fn check(text: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let f = config_file(text);
    let out = redcast(
        &["check-config", "--config", f.path().to_str().unwrap()],
        env,
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
