//! Reads of durable channels' history, through `FCALL redcast_read` on
//! the command connection (routed by the channel's slot on a cluster).
//! At most `history.max_reads` run at once in the process (a semaphore:
//! a recovery storm waits its turn instead of swamping Redis), each
//! bounded by `history.read_timeout`.

use super::keeper::Keeper;
use super::Position;
use crate::broker::commands::{is_lost, Commands};
use redis::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The Function redcast reads with.
pub const READ_FUNCTION: &str = "redcast_read";

/// Why a read gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("redis is unavailable")]
    Unavailable,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis refused the read: {0}")]
    Refused(String),
    #[error("redis answered in an unexpected shape")]
    Shape,
}

/// One kept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// What a recovery found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Everything after the client's position, in order (maybe nothing).
    Complete(Vec<Entry>),
    /// Another epoch, or more missed than kept or than `max_replay`.
    Impossible,
    /// The client's offset is ahead of the channel's.
    Ahead,
}

/// Reads history for sessions.
pub struct Store {
    commands: Arc<Commands>,
    keeper: Arc<Keeper>,
    reads: Semaphore,
    timeout: Duration,
}

impl Store {
    pub fn new(
        commands: Arc<Commands>,
        keeper: Arc<Keeper>,
        max_reads: usize,
        timeout: Duration,
    ) -> Store {
        Store {
            commands,
            keeper,
            reads: Semaphore::new(max_reads),
            timeout,
        }
    }

    /// The channel's current position (its epoch is made if it had none).
    pub async fn position(&self, channel: &str) -> Result<Position, ReadError> {
        let reply = self.read(channel, &["position"]).await?;
        Ok(top(&reply)?.0)
    }

    /// Everything after `since`, if all of it is kept and at most `max`.
    pub async fn recover(
        &self,
        channel: &str,
        since: &Position,
        max: usize,
    ) -> Result<(Position, Recovery), ReadError> {
        let offset = since.offset.to_string();
        let max = max.to_string();
        let reply = self
            .read(channel, &["recover", &offset, &since.epoch, &max])
            .await?;
        let (position, rest) = top(&reply)?;
        let (status, entries) = rest.split_first().ok_or(ReadError::Shape)?;
        let recovery = match status {
            Value::Int(1) => Recovery::Complete(entries_of(entries)?),
            Value::Int(-1) => Recovery::Ahead,
            _ => Recovery::Impossible,
        };
        Ok((position, recovery))
    }

    /// The newest `limit` kept messages, oldest first.
    pub async fn latest(
        &self,
        channel: &str,
        limit: usize,
    ) -> Result<(Position, Vec<Entry>), ReadError> {
        let limit = limit.to_string();
        let reply = self.read(channel, &["latest", &limit]).await?;
        let (position, rest) = top(&reply)?;
        Ok((position, entries_of(rest)?))
    }

    /// One FCALL under a permit, all within the deadline (waiting for the
    /// permit included, so that waiting reads are bounded in time too).
    async fn read(&self, channel: &str, args: &[&str]) -> Result<Vec<Value>, ReadError> {
        tokio::time::timeout(self.timeout, self.read_now(channel, args))
            .await
            .map_err(|_| ReadError::Timeout(self.timeout))?
    }

    /// A library found missing is loaded and the read tried once more.
    async fn read_now(&self, channel: &str, args: &[&str]) -> Result<Vec<Value>, ReadError> {
        let _permit = self
            .reads
            .acquire()
            .await
            .map_err(|_| ReadError::Unavailable)?;
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(READ_FUNCTION).arg(1).arg(channel).arg(args);
        match self.call(&cmd).await {
            Err(ReadError::Refused(e)) if e.contains("Function not found") => {
                self.keeper.ensure().await.map_err(ReadError::Refused)?;
                self.call(&cmd).await
            }
            other => other,
        }
    }

    async fn call(&self, cmd: &redis::Cmd) -> Result<Vec<Value>, ReadError> {
        let (mut conn, generation) = self.commands.conn().await.ok_or(ReadError::Unavailable)?;
        match conn.query::<Value>(cmd).await {
            Ok(Value::Array(items)) => Ok(items),
            Ok(_) => Err(ReadError::Shape),
            Err(e) if is_lost(&e) => {
                self.commands.lost(generation).await;
                Err(ReadError::Unavailable)
            }
            Err(e) => Err(ReadError::Refused(e.to_string())),
        }
    }
}

/// `[top, epoch, rest...]`.
fn top(reply: &[Value]) -> Result<(Position, &[Value]), ReadError> {
    match reply {
        [Value::Int(offset), Value::BulkString(epoch), rest @ ..] => {
            let epoch = std::str::from_utf8(epoch).map_err(|_| ReadError::Shape)?;
            let offset = u64::try_from(*offset).map_err(|_| ReadError::Shape)?;
            Ok((Position::new(offset, epoch).ok_or(ReadError::Shape)?, rest))
        }
        _ => Err(ReadError::Shape),
    }
}

/// `offset, payload, offset, payload...`.
fn entries_of(flat: &[Value]) -> Result<Vec<Entry>, ReadError> {
    flat.chunks(2)
        .map(|pair| match pair {
            [Value::Int(offset), Value::BulkString(payload)] => Ok(Entry {
                offset: u64::try_from(*offset).map_err(|_| ReadError::Shape)?,
                payload: payload.clone(),
            }),
            _ => Err(ReadError::Shape),
        })
        .collect()
}
