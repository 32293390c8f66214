//! Redis over TLS (`rediss://` with a CA file) and Redis ACL credentials
//! from the config; a wrong password keeps readiness down.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_ca_file_and_acl_user() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("redis.pem"), dir.path().join("redis.key"));
    std::fs::write(&cert, ca.cert.pem()).unwrap();
    std::fs::write(&key, ca.signing_key.serialize_pem()).unwrap();
    let tls_port = free_port().to_string();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    // Plain port for the test's own publishing; TLS and ACL for redcast.
    let redis = Redis::start_with(
        free_port(),
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert_s,
            "--tls-key-file",
            &key_s,
            "--tls-auth-clients",
            "no",
            "--user",
            "gateway",
            "on",
            ">s3cret-pass",
            "~*",
            "&*",
            "+@all",
        ],
    );
    let url = format!("rediss://localhost:{tls_port}");
    let env = [
        ("REDCAST_REDIS__CA_FILE", cert_s.as_str()),
        ("REDCAST_REDIS__USERNAME", "gateway"),
        ("REDCAST_REDIS__PASSWORD", "s3cret-pass"),
    ];
    let gw = redcast::Gateway::start(settings(&url, &env)).await.unwrap();
    let mut ws = subscribed_client(&gw, &["secure"]).await;
    wait_until("ready over TLS", || ready(&gw)).await;
    redis.publish("secure", "1").await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"secure","data":1})
    );

    // The same with a wrong password never becomes ready.
    let env = [
        ("REDCAST_REDIS__CA_FILE", cert_s.as_str()),
        ("REDCAST_REDIS__USERNAME", "gateway"),
        ("REDCAST_REDIS__PASSWORD", "wrong"),
    ];
    let bad = redcast::Gateway::start(settings(&url, &env)).await.unwrap();
    let (status, body) = get(bad.admin_addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(!body.contains("wrong"), "{body}");
}

#[test]
fn ca_file_needs_rediss_and_must_exist() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_redcast"));
        cmd.arg("check-config").env_clear();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = run(&[("REDCAST_REDIS__CA_FILE", "/etc/hostname")]);
    assert!(!ok && text.contains("redis.ca_file"), "{text}");
    let (ok, text) = run(&[
        ("REDCAST_REDIS__URL", "rediss://h:6380"),
        ("REDCAST_REDIS__CA_FILE", "/nonexistent"),
    ]);
    assert!(!ok && text.contains("redis.ca_file"), "{text}");
    let (ok, text) = run(&[
        ("REDCAST_REDIS__PASSWORD", "hunter2"),
        ("REDCAST_REDIS__USERNAME", "u"),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("password = \"***\"") && !text.contains("hunter2"),
        "{text}"
    );
}
