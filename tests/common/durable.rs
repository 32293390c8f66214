//! Durable-channel helpers: `FCALL redcast_publish` as a backend does it,
//! the library's readiness, and a TCP proxy that cuts clients off.

use super::Redis;
use redis::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Rules with one durable pattern (`d.*`, `size` entries, `ttl`), one
/// plain (`p.*`) and one forbidden (`secret.*`).
pub fn rules(size: usize, ttl: &str) -> String {
    format!(
        r#"[{{pattern = "d.*", subscribe = "anyone", publish = "anyone", history_size = {size}, history_ttl = "{ttl}"}},
            {{pattern = "secret.*", subscribe = "nobody", history_size = 10}},
            {{pattern = "*", subscribe = "anyone", publish = "anyone"}}]"#
    )
}

/// `FCALL redcast_publish 1 <channel> <payload>`: `(offset, epoch)`, or
/// `None` on a channel without history.
pub async fn fcall(redis: &Redis, channel: &str, payload: &str) -> Option<(u64, String)> {
    let mut conn = redis.conn().await;
    let reply: Value = redis::cmd("FCALL")
        .arg("redcast_publish")
        .arg(1)
        .arg(channel)
        .arg(payload)
        .query_async(&mut conn)
        .await
        .expect("FCALL redcast_publish");
    match reply {
        Value::Nil => None,
        Value::Array(v) => match v.as_slice() {
            [Value::Int(o), Value::BulkString(e)] => {
                Some((*o as u64, String::from_utf8(e.clone()).unwrap()))
            }
            other => panic!("unexpected reply {other:?}"),
        },
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Waits until the gateway has loaded its library into `redis`.
pub async fn library_loaded(redis: &Redis) {
    super::wait_until("the function library is loaded", || async {
        let mut conn = redis.conn().await;
        redis::cmd("FCALL")
            .arg("redcast_version")
            .arg(0)
            .query_async::<Value>(&mut conn)
            .await
            .is_ok()
    })
    .await;
}

/// A TCP proxy in front of redcast whose [`Cutter::cut`] drops every
/// connection going through it at once (both sides see them end).
pub struct Cutter {
    pub addr: SocketAddr,
    pipes: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Cutter {
    pub async fn start(upstream: SocketAddr) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pipes = Arc::new(Mutex::new(Vec::new()));
        let held = pipes.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let pipe = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                held.lock().unwrap().push(pipe.abort_handle());
            }
        });
        Cutter { addr, pipes }
    }

    /// Drops every connection through the proxy.
    pub fn cut(&self) {
        self.pipes.lock().unwrap().drain(..).for_each(|p| p.abort());
    }
}
