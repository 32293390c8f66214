//! The clients of the recovery storm (they report to board.rs).
//!
//! A *storm* client subscribes to one durable channel, reads live
//! messages, drops its connection when told, and when told again comes
//! back with `since` = the last position it saw: it must get an ack with
//! `recovered: true`, then every offset after its own, in order, once,
//! into live messages. An *other* client stays connected throughout and
//! records the publish-to-receive latency of each message by phase.

use super::board::{Board, Cmd, BROKEN};
use super::peer::{self, Fault, Frame, Position, Track, Ws};
use crate::client::Connector;
use crate::payload;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// A resume in progress: where from, and the top the ack reported.
struct Resume {
    since: Position,
    target: Option<u64>,
    done: bool,
}

/// One client.
pub struct Client {
    pub i: usize,
    pub channel: u32,
    pub other: bool,
    pub conn: Arc<Connector>,
    pub board: Arc<Board>,
    pub cmd: watch::Receiver<Cmd>,
    track: Option<Track>,
    exact: bool,
    /// The first ack came.
    acked: bool,
    /// False after a refused resume without a position: nothing to check.
    follow: bool,
}

impl Client {
    pub fn new(
        i: usize,
        channel: u32,
        other: bool,
        conn: &Arc<Connector>,
        board: &Arc<Board>,
        cmd: &watch::Receiver<Cmd>,
    ) -> Self {
        Client {
            i,
            channel,
            other,
            conn: conn.clone(),
            board: board.clone(),
            cmd: cmd.clone(),
            track: None,
            exact: true,
            acked: false,
            follow: true,
        }
    }

    fn name(&self) -> String {
        self.conn.names[self.channel as usize].clone()
    }

    /// The whole life of the client.
    pub async fn run(mut self) {
        let b = self.board.clone();
        let name = self.name();
        let mut ws = match self.open(&[]).await {
            Some(ws) => ws,
            None => return,
        };
        if self.other {
            if !self.read(&mut ws, None, Cmd::Stop).await {
                b.lost.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if self.read(&mut ws, None, Cmd::Drop).await {
            peer::close(ws).await;
        } else {
            b.lost.fetch_add(1, Ordering::Relaxed);
        }
        b.away.fetch_add(1, Ordering::Relaxed);
        while !matches!(*self.cmd.borrow_and_update(), Cmd::Resume | Cmd::Stop) {
            if self.cmd.changed().await.is_err() {
                return;
            }
        }
        if *self.cmd.borrow() == Cmd::Stop {
            return;
        }
        let settle = |what: &AtomicUsize| {
            what.fetch_add(1, Ordering::Relaxed);
            b.settled.fetch_add(1, Ordering::Relaxed);
        };
        let Some(since) = self.track.as_ref().map(Track::position) else {
            b.note(format!("{name}: no position to resume from"));
            return settle(&b.failed);
        };
        b.since_sum.fetch_add(since.0, Ordering::Relaxed);
        let Some(mut ws) = self.open(&[(&name, &since)]).await else {
            return settle(&b.failed);
        };
        let mut resume = Resume {
            since,
            target: None,
            done: false,
        };
        let stopped = self.read(&mut ws, Some(&mut resume), Cmd::Stop).await;
        if !stopped {
            b.lost.fetch_add(1, Ordering::Relaxed);
            if !resume.done {
                b.note(format!("{name}: connection lost while resuming"));
                settle(&b.failed);
            }
        }
    }

    /// Connects and subscribes (resuming from `since`).
    async fn open(&mut self, since: &[(&str, &Position)]) -> Option<Ws> {
        let name = self.name();
        let opened = async {
            let mut ws = peer::connect(&self.conn, &self.conn.url).await?;
            ws.send(peer::subscribe(&[&name], since)).await?;
            anyhow::Ok(ws)
        };
        match opened.await {
            Ok(ws) => Some(ws),
            Err(e) => {
                self.board.note(format!("{name}: connect: {e:#}"));
                None
            }
        }
    }

    fn fault(&mut self, what: String, resume: &mut Option<&mut Resume>) {
        let b = &self.board;
        if self.exact {
            self.exact = false;
            b.last[self.i].store(BROKEN, Ordering::Relaxed);
            b.broken.fetch_add(1, Ordering::Relaxed);
            b.note(format!("{}: {what}", self.name()));
        }
        if let Some(r) = resume.as_mut().filter(|r| !r.done) {
            r.done = true;
            b.faulted.fetch_add(1, Ordering::Relaxed);
            b.settled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads until the controller says `until` (true) or the connection
    /// ends (false).
    async fn read(&mut self, ws: &mut Ws, mut resume: Option<&mut Resume>, until: Cmd) -> bool {
        let b = self.board.clone();
        let name = self.name();
        loop {
            let msg = tokio::select! {
                changed = self.cmd.changed() => {
                    let c = *self.cmd.borrow_and_update();
                    if changed.is_err() || c == until || c == Cmd::Stop {
                        return true;
                    }
                    continue;
                }
                msg = ws.next() => msg,
            };
            let Some(bytes) = peer::data(&msg) else {
                return false;
            };
            let Some(bytes) = bytes else { continue };
            match peer::parse(bytes) {
                Frame::Ack {
                    positions,
                    recovered,
                } => self.on_ack(
                    &name,
                    positions.get(&name),
                    recovered.get(&name),
                    &mut resume,
                ),
                Frame::Message {
                    channel,
                    position,
                    payload,
                } => {
                    if channel != name {
                        self.fault(format!("message of {channel}"), &mut resume);
                        continue;
                    }
                    self.on_message(position, payload, &mut resume);
                }
                Frame::Error(e) => self.fault(format!("error frame {e}"), &mut resume),
                Frame::Other => b.note(format!("{name}: unexpected frame")),
            }
        }
    }

    fn on_ack(
        &mut self,
        name: &str,
        at: Option<&Position>,
        recovered: Option<&bool>,
        resume: &mut Option<&mut Resume>,
    ) {
        let b = self.board.clone();
        let Some(r) = resume.as_mut() else {
            // Without a position (redcast could not read it), a client
            // takes its position from the first message, as the JS one does.
            self.track = at.map(|at| Track::new(at, self.channel, true));
            if at.is_none() {
                b.no_position.fetch_add(1, Ordering::Relaxed);
                b.note(format!("{name}: ack without a position"));
            }
            self.acked = true;
            b.acked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        b.since_start(&b.acks);
        if recovered != Some(&true) {
            b.note(format!(
                "{name}: recovered {recovered:?} from {:?}, position {at:?}",
                r.since
            ));
            r.done = true;
            b.refused.fetch_add(1, Ordering::Relaxed);
            b.settled.fetch_add(1, Ordering::Relaxed);
            // Like an application that reloads: follow live from the
            // position, if the ack gave one.
            self.track = at.map(|at| Track::new(at, self.channel, true));
            self.follow = self.track.is_some();
            self.exact = false;
            b.last[self.i].store(BROKEN, Ordering::Relaxed);
            return;
        }
        let Some(at) = at else {
            return self.fault("recovered without a position".into(), resume);
        };
        if at.1 != r.since.1 {
            return self.fault(
                format!("recovered into epoch {} from {}", at.1, r.since.1),
                resume,
            );
        }
        r.target = Some(at.0);
        if at.0 <= r.since.0 {
            self.recovered(resume);
        }
    }

    fn recovered(&self, resume: &mut Option<&mut Resume>) {
        let b = &self.board;
        if let Some(r) = resume.as_mut().filter(|r| !r.done) {
            r.done = true;
            b.since_start(&b.recoveries);
            b.recovered.fetch_add(1, Ordering::Relaxed);
            b.settled.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_message(
        &mut self,
        position: Option<(u64, &str)>,
        p: Option<payload::Payload>,
        resume: &mut Option<&mut Resume>,
    ) {
        let b = self.board.clone();
        if resume.is_some() {
            b.resumed_messages.fetch_add(1, Ordering::Relaxed);
        }
        if self.other {
            let phase = b.phase.load(Ordering::Relaxed);
            if let (Some(p), 1..=3) = (&p, phase) {
                if let Ok(mut h) = b.latency[usize::from(phase - 1)].lock() {
                    h.saturating_record(payload::unix_nanos().saturating_sub(p.sent).max(1));
                }
            }
        }
        if !self.follow {
            return;
        }
        if !self.acked {
            return self.fault("message before the ack".into(), resume);
        }
        let track = match (&mut self.track, position) {
            (Some(t), _) => t,
            (None, Some((offset, epoch))) => {
                let at = (offset.saturating_sub(1), epoch.to_string());
                self.track.insert(Track::new(&at, self.channel, true))
            }
            (None, None) => return self.fault("message without a position".into(), resume),
        };
        if resume
            .as_ref()
            .is_some_and(|r| r.target.is_none() && !r.done)
        {
            return self.fault("message before the resume ack".into(), resume);
        }
        match track.on_message(position, p.as_ref()) {
            Ok(offset) => {
                if self.exact {
                    b.last[self.i].store(offset, Ordering::Relaxed);
                }
                if resume.as_ref().and_then(|r| r.target) == Some(offset) {
                    self.recovered(resume);
                }
            }
            Err(f) => {
                let resync = match &f {
                    Fault::Gap { got, .. } | Fault::Repeat { got, .. } => Some(*got + 1),
                    _ => None,
                };
                if let Some(next) = resync.filter(|n| *n > track.next) {
                    track.next = next;
                }
                self.fault(format!("{f:?}"), resume);
            }
        }
    }
}
