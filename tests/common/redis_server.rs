//! A real redis-server child process on a free loopback port (standalone,
//! or a cluster node or sentinel for the topology harnesses): started and
//! waited for on its own log line, killed on Drop.

use super::{free_port, DEADLINE};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// A real redis-server child process.
pub struct Redis {
    pub port: u16,
    pub(super) child: Option<Child>,
    pub(super) dir: tempfile::TempDir,
    pub(super) extra: Vec<String>,
    /// Sentinel mode: the (writable) config file, passed first.
    pub(super) sentinel_conf: Option<PathBuf>,
}

impl Redis {
    /// Starts redis-server on a free port and waits until it is ready.
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    /// A Redis on a port where nothing listens yet (for "down at start").
    pub fn not_started() -> Redis {
        Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            extra: Vec::new(),
            sentinel_conf: None,
        }
    }

    pub fn start_on(port: u16) -> Redis {
        Self::start_with(port, &[])
    }

    /// Starts with extra redis-server arguments (TLS, ACL users, ...).
    pub fn start_with(port: u16, extra: &[&str]) -> Redis {
        Self::start_in_dir(port, |_| extra.iter().map(|s| s.to_string()).collect())
    }

    /// Starts with extra arguments that may name files in the node's own
    /// temp dir (e.g. `--cluster-config-file <dir>/nodes.conf`).
    pub fn start_in_dir(port: u16, extra: impl FnOnce(&Path) -> Vec<String>) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let extra = extra(dir.path());
        let mut r = Redis {
            port,
            child: None,
            dir,
            extra,
            sentinel_conf: None,
        };
        r.launch();
        r
    }

    /// Whether this harness holds a live child (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts (again) on the same port.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new("redis-server");
        let ready = match &self.sentinel_conf {
            Some(conf) => {
                cmd.arg(conf).arg("--sentinel");
                "Sentinel ID is"
            }
            None => "Ready to accept connections",
        };
        let mut child = cmd
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--logfile", "", "--daemonize", "no"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install -y redis-server)");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            // Keep draining so redis never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(ready) {
                    let _ = tx.send(());
                }
            }
        });
        if let Err(e) = rx.recv_timeout(DEADLINE) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "redis-server on port {} did not become ready: {e}",
                self.port
            );
        }
        self.child = Some(child);
    }

    /// Kills the server (SIGKILL): connections drop without goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server cleanly (SIGTERM, as a service manager would):
    /// Redis closes its clients and exits.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A command connection for publishing and inspecting.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    pub async fn publish(&self, channel: &str, payload: impl redis::ToRedisArgs) -> i64 {
        let mut c = self.conn().await;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut c)
            .await
            .unwrap()
    }

    /// Cuts every pub/sub connection (`CLIENT KILL TYPE pubsub`); how many.
    pub async fn kill_pubsub_clients(&self) -> i64 {
        let mut c = self.conn().await;
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut c)
            .await
            .unwrap()
    }

    /// Subscribers Redis counts on a channel (redcast holds at most one).
    pub async fn numsub(&self, channel: &str) -> i64 {
        let mut c = self.conn().await;
        let v: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut c)
            .await
            .unwrap();
        v.1
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
