//! The `redcast` command line: check-config, errors that name the key,
//! environment and flag overrides, secrets masked, --version, and a real
//! process that starts, serves and exits on SIGTERM.

mod common;

use common::cli::{check, config_file, redcast};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn version_prints_the_crate_version() {
    let out = redcast(&["--version"], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn defaults_without_a_file() {
    let out = redcast(&["check-config"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("listen = \"127.0.0.1:8080\""), "{text}");
    assert!(text.contains("listen = \"127.0.0.1:9090\""), "{text}");
    assert!(text.contains("url = \"redis://127.0.0.1:6379\""), "{text}");
    assert!(text.contains("max_message_bytes = 65536"), "{text}");
}

#[test]
fn check_config_prints_effective_values_with_secrets_masked() {
    let (ok, out, _) = check("[redis]\nurl = \"redis://app:hunter2@127.0.0.1:6380\"\n[client]\nping_interval = \"10s\"\n", &[]);
    assert!(ok);
    assert!(out.contains("redis://app:***@127.0.0.1:6380"), "{out}");
    assert!(!out.contains("hunter2"));
    assert!(out.contains("ping_interval = \"10s\""), "{out}");
}

#[test]
fn errors_name_the_file_the_key_and_why() {
    let cases = [
        ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
        ("[server]\nbogus = 1\n", "bogus"),
        ("[nosuch]\n", "nosuch"),
        (
            "[client]\nmax_message_bytes = \"big\"\n",
            "client.max_message_bytes",
        ),
        (
            "[client]\nping_interval = \"soon\"\n",
            "client.ping_interval",
        ),
        (
            "[client]\nping_interval = \"30s\"\nidle_timeout = \"10s\"\n",
            "client.idle_timeout",
        ),
        (
            "[channels]\nname_pattern = \"([\"\n",
            "channels.name_pattern",
        ),
        ("[redis]\nurl = \"http://x\"\n", "redis.url"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        (
            "[server]\ndirect_writes = \"yes\"\n",
            "server.direct_writes",
        ),
        (
            "[server]\nproxy_protocol = \"v2\"\n",
            "server.proxy_protocol",
        ),
        // It could never apply: no peer is trusted to send a header.
        ("[server]\nproxy_protocol = true\n", "server.proxy_protocol"),
        ("[server\n", "TOML"),
    ];
    for (text, key) in cases {
        let (ok, _, err) = check(text, &[]);
        assert!(!ok, "{text} must be refused");
        assert!(err.contains(key), "{text}: error must name `{key}`: {err}");
        assert!(err.contains("config"), "{err}");
    }
    let (ok, _, err) = check("[redis]\nurl = \"rediss://u:topsecret@[bad\"\n", &[]);
    assert!(!ok);
    assert!(
        !err.contains("topsecret"),
        "secrets never appear in errors: {err}"
    );
}

#[test]
fn worker_threads_defaults_to_the_cores_and_refuses_zero() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let (ok, out, err) = check("", &[]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("worker_threads = {cores}")), "{out}");
    let (ok, out, err) = check("[server]\nworker_threads = 3\n", &[]);
    assert!(ok && out.contains("worker_threads = 3"), "{err}");
    for (text, env) in [
        ("[server]\nworker_threads = 0\n", None),
        ("[server]\nworker_threads = -2\n", None),
        ("[server]\nworker_threads = \"all\"\n", None),
        ("", Some(("REDCAST_SERVER__WORKER_THREADS", "0"))),
    ] {
        let env: Vec<_> = env.into_iter().collect();
        let (ok, _, err) = check(text, &env);
        assert!(!ok, "{text} {env:?} must be refused");
        assert!(err.contains("server.worker_threads"), "{err}");
    }
}

#[test]
fn environment_overrides_file_and_flags_override_environment() {
    let env = [
        ("REDCAST_CLIENT__MAX_SUBSCRIPTIONS", "7"),
        ("REDCAST_SERVER__LISTEN", "127.0.0.1:7000"),
    ];
    let (ok, out, err) = check("[client]\nmax_subscriptions = 3\n", &env);
    assert!(ok, "{err}");
    assert!(out.contains("max_subscriptions = 7"), "{out}");
    assert!(out.contains("listen = \"127.0.0.1:7000\""), "{out}");

    let f = config_file("");
    let out = redcast(
        &[
            "check-config",
            "--config",
            f.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:7001",
        ],
        &env,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"127.0.0.1:7001\""));

    let (ok, _, err) = check("", &[("REDCAST_CLIENT__NOPE", "1")]);
    assert!(!ok && err.contains("nope"), "{err}");
    let (ok, _, err) = check("", &[("REDCAST_CLIENT__MAX_SUBSCRIPTIONS", "many")]);
    assert!(!ok && err.contains("client.max_subscriptions"), "{err}");
    let (ok, _, err) = check("", &[("REDCAST_SERVER__DIRECT_WRITES", "maybe")]);
    assert!(!ok && err.contains("server.direct_writes"), "{err}");
    let (ok, _, err) = check("", &[("REDCAST_SERVER__PROXY_PROTOCOL", "sometimes")]);
    assert!(!ok && err.contains("server.proxy_protocol"), "{err}");
    let proxied = [
        ("REDCAST_SERVER__PROXY_PROTOCOL", "true"),
        ("REDCAST_SERVER__TRUSTED_PROXIES", r#"["10.0.0.0/8"]"#),
    ];
    let (ok, out, err) = check("", &proxied);
    assert!(ok, "{err}");
    assert!(out.contains("proxy_protocol = true"), "{out}");
}

#[test]
fn insecure_listen_address_warns_loudly() {
    let (ok, _, err) = check("[server]\nlisten = \"0.0.0.0:8080\"\n", &[]);
    assert!(ok);
    assert!(
        err.contains("warning") && err.contains("without TLS"),
        "{err}"
    );
}

#[test]
fn the_binary_serves_and_exits_on_sigterm() {
    let redis = common::Redis::start();
    let (ws, admin) = (common::free_port(), common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_redcast"))
        .args([
            "--listen",
            &format!("127.0.0.1:{ws}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .args(["--redis-url", &redis.url(), "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("redcast started"));
    let started = started.expect("start line");
    assert!(
        serde_json::from_str::<serde_json::Value>(&started).is_ok(),
        "JSON logs: {started}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt
        .block_on(common::get(
            format!("127.0.0.1:{admin}").parse().unwrap(),
            "/healthz",
        ))
        .0;
    assert_eq!(status, 200);
    send_signal(child.id(), "TERM");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}

fn send_signal(pid: u32, signal: &str) {
    Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn sighup_reloads_rules_keeps_connections_and_refuses_broken_config() {
    use serde_json::json;
    let redis = common::Redis::start();
    let (ws_port, admin) = (common::free_port(), common::free_port());
    let file = config_file(&format!(
        "[server]\nlisten = \"127.0.0.1:{ws_port}\"\ndrain_window = \"0s\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[redis]\nurl = \"{}\"\n",
        redis.url()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_redcast"))
        .args([
            "--config",
            file.path().to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_log = |needle: &str| {
        let deadline = std::time::Instant::now() + common::DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with `{needle}`"));
            if line.contains(needle) {
                return line;
            }
        }
    };
    wait_log("redcast started");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{ws_port}").parse().unwrap();
    let mut ws = rt.block_on(async {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?channel=a"))
            .await
            .unwrap();
        ws
    });
    let next = |ws: &mut common::Ws| rt.block_on(common::recv_json(ws));
    assert_eq!(next(&mut ws)["type"], "subscribed");

    let rules = "\n[[channels.rules]]\npattern = \"b\"\nsubscribe = \"anyone\"\n";
    let base = std::fs::read_to_string(file.path()).unwrap();
    std::fs::write(file.path(), base.clone() + rules).unwrap();
    send_signal(child.id(), "HUP");
    wait_log("configuration reloaded");
    rt.block_on(common::send_json(
        &mut ws,
        json!({"type":"subscribe","channels":["a2"],"id":"1"}),
    ));
    assert_eq!(
        next(&mut ws)["code"],
        "forbidden",
        "new rules apply to the open connection"
    );
    rt.block_on(common::send_json(
        &mut ws,
        json!({"type":"subscribe","channels":["b"],"id":"2"}),
    ));
    assert_eq!(next(&mut ws)["type"], "subscribed");

    std::fs::write(
        file.path(),
        base.clone() + "[client]\nmax_subscriptions = \"many\"\n",
    )
    .unwrap();
    send_signal(child.id(), "HUP");
    let refused = wait_log("reload refused");
    assert!(refused.contains("client.max_subscriptions"), "{refused}");
    rt.block_on(common::send_json(
        &mut ws,
        json!({"type":"subscribe","channels":["a3"],"id":"3"}),
    ));
    assert_eq!(next(&mut ws)["code"], "forbidden", "the running rules stay");

    let moved = base.replace(&format!("127.0.0.1:{ws_port}"), "127.0.0.1:1") + rules;
    std::fs::write(file.path(), moved).unwrap();
    send_signal(child.id(), "HUP");
    let warned = wait_log("needs a restart");
    assert!(warned.contains("server.listen"), "{warned}");
    rt.block_on(common::send_json(
        &mut ws,
        json!({"type":"ping","id":"alive"}),
    ));
    assert_eq!(next(&mut ws), json!({"type":"pong","id":"alive"}));
    send_signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn example_config_documents_exactly_the_defaults() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let with_file = redcast(&["check-config", "--config", example], &[]);
    let defaults = redcast(&["check-config"], &[]);
    assert!(
        with_file.status.success(),
        "{}",
        String::from_utf8_lossy(&with_file.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&with_file.stdout),
        String::from_utf8_lossy(&defaults.stdout),
        "config.example.toml must set every key to its default (or leave it commented)"
    );
    // Every key the code knows appears in the example, set or commented.
    let text = std::fs::read_to_string(example).unwrap();
    let rendered = String::from_utf8_lossy(&defaults.stdout).to_string();
    for line in rendered.lines().filter(|l| l.contains(" = ")) {
        let key = line.split(" = ").next().unwrap().trim();
        let documented =
            text.contains(&format!("{key} =")) || text.contains(&format!("[[channels.{key}]]"));
        assert!(documented, "config.example.toml lacks `{key}`");
    }
}
