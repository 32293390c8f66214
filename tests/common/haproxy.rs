//! A real haproxy in TCP mode in front of redcast instances, as
//! packaging/haproxy/haproxy.cfg ships it: `send-proxy-v2` towards each
//! backend, HTTP health checks on each one's admin `/readyz` (without a
//! PROXY header), leastconn. Started on a free loopback port, with its
//! stats socket in a temporary directory; killed when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Haproxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

/// One backend: its public listener and its admin port.
pub struct Backend {
    pub ws: SocketAddr,
    pub admin: SocketAddr,
}

impl Haproxy {
    /// Starts haproxy in front of `backends` (named `r1`, `r2`, ...).
    pub fn start(backends: &[Backend]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", super::free_port()).parse().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(addr, &dir.path().join("stats.sock"), backends)).unwrap();
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output();
        let check = check.expect("haproxy must be installed (apt-get install -y haproxy)");
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Haproxy { addr, child, dir }
    }

    /// haproxy's `show stat`, as (server name, status, last check) rows.
    pub async fn servers(&self) -> Vec<(String, String, String)> {
        let path = self.dir.path().join("stats.sock");
        let Ok(mut s) = tokio::net::UnixStream::connect(path).await else {
            return Vec::new(); // not listening yet
        };
        s.write_all(b"show stat\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let mut lines = out.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(sv), Some(status), Some(check)) =
            (col("svname"), col("status"), col("check_status"))
        else {
            return Vec::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.first() == Some(&"redcast") && f[sv].starts_with('r'))
            .map(|f| {
                (
                    f[sv].to_string(),
                    f[status].to_string(),
                    f[check].to_string(),
                )
            })
            .collect()
    }

    /// Waits until every backend passed its health check and is UP.
    pub async fn wait_all_up(&self, n: usize) {
        super::wait_until("haproxy reports every backend UP", || async {
            let servers = self.servers().await;
            servers.len() == n && servers.iter().all(|(_, st, ck)| st == "UP" && ck == "L7OK")
        })
        .await;
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped example's shape, on test addresses and with fast checks.
fn config(addr: SocketAddr, stats: &std::path::Path, backends: &[Backend]) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "    server r{} {} send-proxy-v2 check port {}\n",
                i + 1,
                b.ws,
                b.admin.port()
            )
        })
        .collect();
    format!(
        "global\n    stats socket {} mode 600 level admin\n    maxconn 1000\n\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    \
         timeout server 30s\n    timeout tunnel 1h\n\n\
         frontend ws\n    bind {addr}\n    default_backend redcast\n\n\
         backend redcast\n    balance leastconn\n    option httpchk GET /readyz\n    \
         http-check expect status 200\n    default-server inter 100ms fall 2 rise 1\n{servers}",
        stats.display()
    )
}
