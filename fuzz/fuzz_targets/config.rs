//! Configuration: a TOML file plus `REDCAST_<SECTION>__<KEY>` environment
//! overrides, through the same loading and validation as the binary.
//! Input: the file's text, then (after a NUL byte) one `SECTION__KEY=value`
//! per line. A configuration that loads must render (`check-config`) to a
//! file that loads again to the same rendering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redcast::config::{self, Overrides};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, env) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("{}{k}", config::ENV_PREFIX), v.to_string()))
        .collect();
    let origin = Path::new("fuzz.toml");
    let overrides = Overrides::default();
    let Ok(settings) = config::load_str(file, origin, env, &overrides) else {
        return;
    };
    let _ = settings.warnings();
    let rendered = settings.render();
    let again = config::load_str(&rendered, origin, Vec::new(), &overrides)
        .unwrap_or_else(|e| panic!("rendered configuration does not load: {e}\n{rendered}"));
    assert_eq!(again.render(), rendered, "rendering is stable");
});
