//! The processes under test: a private redis-server (restarted on
//! schedule) and redcast (signalled with SIGHUP, measured through /proc
//! and its admin listener). Loopback only; both are killed on drop.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A free TCP port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A redis-server child on a fixed loopback port.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start(dir: &Path) -> anyhow::Result<Redis> {
        let mut r = Redis {
            port: free_port()?,
            dir: dir.to_owned(),
            child: None,
        };
        r.launch()?;
        Ok(r)
    }

    /// Starts the server and returns once it accepts connections.
    pub fn launch(&mut self) -> anyhow::Result<()> {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server must be installed")?;
        let stdout = child.stdout.take().context("redis stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        rx.recv_timeout(Duration::from_secs(15))
            .context("redis-server did not become ready")
    }

    /// Stops it: SIGKILL (`hard`) or SIGTERM (a clean shutdown).
    pub fn stop(&mut self, hard: bool) {
        if let Some(mut c) = self.child.take() {
            let sig = if hard { libc::SIGKILL } else { libc::SIGTERM };
            // SAFETY: kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop(true);
    }
}

/// redcast as a child process with a generated configuration.
pub struct Redcast {
    pub pid: u32,
    pub ws: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
}

impl Redcast {
    pub fn start(bin: &Path, dir: &Path, redis_url: &str) -> anyhow::Result<Redcast> {
        let ws: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let config = dir.join("redcast.toml");
        // Many clients share 127.0.0.1: no per-IP cap. Everything else is
        // the default, reconnect policy included.
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"{ws}\"\nmax_connections = 20000\n\
                 [admin]\nlisten = \"{admin}\"\n[redis]\nurl = \"{redis_url}\"\n\
                 [client]\nmax_connections_per_ip = 0\n[log]\nlevel = \"warn\"\n"
            ),
        )?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("redcast.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Redcast {
            pid: child.id(),
            ws,
            admin,
            child,
        })
    }

    /// SIGHUP: reload the configuration.
    pub fn sighup(&self) {
        // SAFETY: kill(2) on our own running child.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGHUP) };
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmRSS")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid))?.count())
    }

    /// The sum of every sample of a metric family (0 when absent).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (_, body) = self.get("/metrics").await?;
        Ok(body
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    pub async fn ready(&self) -> bool {
        matches!(self.get("/readyz").await, Ok((200, _)))
    }

    /// Waits (bounded) until /readyz answers 200.
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        while !self.ready().await {
            if start.elapsed() > limit {
                bail!("redcast not ready after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(start.elapsed())
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let io = async {
            let mut s = TcpStream::connect(self.admin).await?;
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            anyhow::Ok(String::from_utf8_lossy(&buf).into_owned())
        };
        let text = tokio::time::timeout(Duration::from_secs(5), io).await??;
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
        Ok((status, body.unwrap_or_default()))
    }
}

impl Drop for Redcast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
