//! `redis.mode` and its keys through the real binary's check-config:
//! each mode validated, errors naming the key, secrets masked, and the
//! environment overrides of the issue's contract.

mod common;

use common::cli::check;

#[test]
fn standalone_is_the_default_and_renders_no_foreign_keys() {
    let (ok, out, err) = check("", &[]);
    assert!(ok, "{err}");
    assert!(out.contains("mode = \"standalone\""), "{out}");
    assert!(!out.contains("sentinel"), "{out}");
    assert!(!out.contains("sharded"), "{out}");
}

#[test]
fn sentinel_mode_renders_its_keys_with_the_password_masked() {
    let text = r#"
[redis]
mode = "sentinel"
url = "rediss://app:datapass@ignored:1/2"
ca_file = "/dev/null"
sentinels = ["10.0.0.1:26379", "s2.example:26380", "[::1]:26381"]
sentinel_master = "mymaster"
sentinel_username = "watcher"
sentinel_password = "sentinelpass"
sentinel_tls = true
"#;
    let (ok, out, err) = check(text, &[]);
    assert!(ok, "{err}");
    for want in [
        "mode = \"sentinel\"",
        "sentinels = [\"10.0.0.1:26379\", \"s2.example:26380\", \"[::1]:26381\"]",
        "sentinel_master = \"mymaster\"",
        "sentinel_username = \"watcher\"",
        "sentinel_password = \"***\"",
        "sentinel_tls = true",
    ] {
        assert!(out.contains(want), "missing {want}: {out}");
    }
    assert!(!out.contains("sentinelpass") && !out.contains("datapass"));
}

#[test]
fn cluster_mode_defaults_to_sharded_and_takes_seeds_from_the_environment() {
    let env = [
        ("REDCAST_REDIS__MODE", "cluster"),
        (
            "REDCAST_REDIS__NODES",
            r#"["127.0.0.1:7001", "127.0.0.1:7002"]"#,
        ),
    ];
    let (ok, out, err) = check("", &env);
    assert!(ok, "{err}");
    assert!(out.contains("mode = \"cluster\""), "{out}");
    assert!(out.contains("sharded = true"), "{out}");
    assert!(
        out.contains("nodes = [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]"),
        "{out}"
    );
    assert!(out.contains("cluster_refresh_interval = \"10s\""), "{out}");
    let (ok, out, _) = check("[redis]\nmode = \"cluster\"\nsharded = false\n", &[]);
    assert!(ok && out.contains("sharded = false"), "{out}");
    // Classic pub/sub does not care where a prefix's hash tag hashes.
    let text = "[redis]\nmode = \"cluster\"\nsharded = false\nchannel_prefix = \"{app}:\"\n";
    assert!(check(text, &[]).0);
}

#[test]
fn every_bad_topology_setting_names_its_key() {
    let cases: &[(&str, &str)] = &[
        ("mode = \"replicated\"", "redis.mode"),
        (
            "mode = \"sentinel\"\nsentinel_master = \"m\"",
            "redis.sentinels",
        ),
        (
            "mode = \"sentinel\"\nsentinels = [\"a:1\"]",
            "redis.sentinel_master",
        ),
        (
            "mode = \"sentinel\"\nsentinels = [\"a:1\"]\nsentinel_master = \"\"",
            "redis.sentinel_master",
        ),
        (
            "mode = \"sentinel\"\nsentinels = [\"nohost\"]\nsentinel_master = \"m\"",
            "redis.sentinels",
        ),
        (
            "mode = \"sentinel\"\nsentinels = [\"a:1\"]\nsentinel_master = \"m\"\nsharded = true",
            "redis.sharded",
        ),
        ("sentinels = [\"a:1\"]", "redis.sentinels"),
        ("sentinel_tls = true", "redis.sentinel_tls"),
        ("nodes = [\"a:1\"]", "redis.nodes"),
        ("sharded = false", "redis.sharded"),
        ("mode = \"cluster\"\nnodes = [\"a:99999\"]", "redis.nodes"),
        (
            "mode = \"cluster\"\nurl = \"redis://127.0.0.1:7000/3\"",
            "redis.url",
        ),
        ("mode = \"cluster\"\nsharded = \"yes\"", "redis.sharded"),
        (
            "mode = \"cluster\"\ncluster_refresh_interval = \"0s\"",
            "redis.cluster_refresh_interval",
        ),
        (
            "mode = \"cluster\"\nsentinel_master = \"m\"",
            "redis.sentinel_master",
        ),
    ];
    for (body, key) in cases {
        let text = format!("[redis]\n{body}\n");
        let (ok, _, err) = check(&text, &[]);
        assert!(!ok, "{text} must be refused");
        assert!(err.contains(key), "{text}: error must name `{key}`: {err}");
    }
    let (ok, _, err) = check("", &[("REDCAST_REDIS__MODE", "sentinel")]);
    assert!(!ok && err.contains("redis.sentinels"), "{err}");
    let (ok, _, err) = check("", &[("REDCAST_REDIS__MODE", "ring")]);
    assert!(!ok && err.contains("REDCAST_REDIS__MODE"), "{err}");
}
