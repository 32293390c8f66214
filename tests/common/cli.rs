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

/// The real binary serving on free loopback ports, its JSON log lines
/// collected; killed when dropped.
pub struct Instance {
    pub ws_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    child: std::process::Child,
    logs: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Instance {
    /// Starts it against `redis_url` with extra `REDCAST_*` variables and
    /// waits for its `redcast started` line.
    pub fn start(redis_url: &str, env: &[(&str, &str)]) -> Instance {
        use std::io::{BufRead, BufReader};
        let (ws, admin) = (super::free_port(), super::free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_redcast"));
        cmd.args(["--listen", &format!("127.0.0.1:{ws}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--redis-url", redis_url, "--log-format", "json"])
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("runs");
        let stderr = child.stderr.take().unwrap();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["fields"]["message"] == "redcast started" {
                    let _ = tx.send(());
                }
                sink.lock().unwrap().push(v);
            }
        });
        let instance = Instance {
            ws_addr: format!("127.0.0.1:{ws}").parse().unwrap(),
            admin_addr: format!("127.0.0.1:{admin}").parse().unwrap(),
            child,
            logs,
        };
        rx.recv_timeout(super::DEADLINE).expect("redcast started");
        instance
    }

    /// The `fields` of every log line with this message so far.
    pub fn log_fields(&self, message: &str) -> Vec<serde_json::Value> {
        let logs = self.logs.lock().unwrap();
        logs.iter()
            .filter(|v| v["fields"]["message"] == message)
            .map(|v| v["fields"].clone())
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
