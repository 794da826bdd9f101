//! The node's live streams: who holds which stream, which topics each follows, and the broker
//! subscriptions that follow from it (a user's channel is subscribed while the node holds at
//! least one of the user's streams). Messages from the broker land here and are queued on the
//! streams; what cannot be written goes to the fallback path.

mod body;
mod fallback;
mod stream;
mod users;

pub use body::{ConnWatch, SseBody};
pub use fallback::{Fallback, FallbackReason};
pub use stream::{Item, Push, Stream, StreamInfo, Visit};

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::backend::{BackendError, Broker, Channel, Connection, Inbound, SharedLedger};
use crate::metrics::{Counters, DisconnectReason, Metrics};
use crate::notification::{SharedBroadcast, SharedNotification};

const PING: &[u8] = b": ping\n\n";
const SHUTDOWN: &[u8] = b"event: shutdown\ndata: {}\n\n";
/// The stream's token expired: fetch a fresh one and reconnect with `Last-Event-ID`.
const REAUTH: &[u8] = b"event: reauth\ndata: {}\n\n";
/// The heartbeat visits one slice of the users per tick, so that the pings (and the writes they
/// wake) spread over the period rather than landing on every stream at once.
const HEARTBEAT_SLICES: u32 = users::SLICES;

pub struct HubConfig {
    pub node_id: Arc<str>,
    pub max_per_user: usize,
    pub queue_capacity: usize,
    pub retry_ms: u64,
    /// Each stream's `retry:` is `retry_ms` ± up to this, so that the clients of a node that
    /// restarts do not all reconnect at the same instant.
    pub retry_jitter_ms: u64,
}

/// What a client asked for when opening a stream.
pub struct OpenRequest {
    pub user: Arc<str>,
    pub device_id: Option<String>,
    pub topics: Vec<Arc<str>>,
    pub ack: bool,
    /// The token's `exp` (unix seconds): the stream ends with `event: reauth` then.
    pub expires_at: u64,
    /// Queued before anything live: a replay, or an `event: reset`.
    pub preload: Vec<Item>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("too many streams for this user (at most {0})")]
    TooMany(usize),
    #[error("this node is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Broker(#[from] BackendError),
}

pub struct Hub {
    cfg: HubConfig,
    /// Streams by user. The entry lock orders subscribe/unsubscribe of the user's channel.
    users: users::Users,
    /// Streams by topic.
    topics: DashMap<Arc<str>, Vec<Arc<Stream>>>,
    next_id: AtomicU64,
    /// Counts heartbeat ticks: which slice of the users the next tick visits.
    heartbeat_ticks: AtomicU32,
    /// Set at shutdown: no new streams.
    closing: AtomicBool,
    broker: Arc<dyn Broker>,
    ledger: SharedLedger,
    metrics: Arc<Metrics>,
    fallbacks: Counters<FallbackReason>,
    fallback: mpsc::UnboundedSender<Fallback>,
}

impl Hub {
    pub fn new(
        cfg: HubConfig,
        broker: Arc<dyn Broker>,
        ledger: SharedLedger,
        metrics: Arc<Metrics>,
        fallback: mpsc::UnboundedSender<Fallback>,
    ) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            cfg,
            users: users::Users::new(),
            topics: DashMap::new(),
            next_id: AtomicU64::new(1),
            heartbeat_ticks: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            broker,
            ledger,
            fallbacks: metrics.fallbacks.counters(),
            metrics,
            fallback,
        });
        let weak = Arc::downgrade(&hub);
        hub.broker.attach(weak);
        hub
    }

    pub fn node_id(&self) -> &str {
        &self.cfg.node_id
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the node is shutting down (`shutdown_all` was called): long-lived answers end.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Registers a stream (replacing the user's stream of the same device), subscribes what
    /// the node newly needs, and returns it with the `retry:` preamble queued.
    pub async fn open(&self, req: OpenRequest) -> Result<Arc<Stream>, OpenError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(OpenError::ShuttingDown);
        }
        let stream = Arc::new(Stream::new(StreamInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            user: req.user.clone(),
            device_id: req.device_id.map(String::into_boxed_str),
            topics: req.topics.into_boxed_slice(),
            ack: req.ack,
            connected_at: crate::time::unix_millis(),
            capacity: self.cfg.queue_capacity,
            expires_at: req.expires_at,
        }));
        stream.push(Item::Frame(self.retry_frame()));
        for item in req.preload {
            stream.push(item);
        }
        let mut pending = Vec::new();
        let replaced = {
            let mut entry = self
                .users
                .of(&req.user)
                .entry(req.user.clone())
                .or_default();
            let same_device = stream
                .device_id
                .as_ref()
                .and_then(|d| entry.iter().position(|s| s.device_id.as_ref() == Some(d)));
            if entry.len() - usize::from(same_device.is_some()) >= self.cfg.max_per_user {
                return Err(OpenError::TooMany(self.cfg.max_per_user));
            }
            let replaced = same_device.map(|i| entry.swap_remove(i));
            if entry.is_empty() {
                pending.push(self.broker.subscribe(Channel::User(req.user.clone())));
            }
            entry.push(stream.clone());
            replaced
        };
        for topic in stream.topics.iter() {
            let mut subs = self.topics.entry(topic.clone()).or_default();
            if subs.is_empty() {
                pending.push(self.broker.subscribe(Channel::Topic(topic.clone())));
            }
            subs.push(stream.clone());
        }
        self.metrics.sse_connections.inc();
        self.broker
            .set_presence(&stream.user, stream.id, Some(self.connection(&stream)));
        if let Some(old) = replaced {
            // What the old stream had not written yet goes to the new one, in order.
            for n in old
                .end(DisconnectReason::Replaced, None, true)
                .unwrap_or_default()
            {
                stream.push(Item::Notification(n.clone()));
                if n.dropped_unwritten() {
                    self.fall_back(n, FallbackReason::StreamClosed);
                }
            }
        }
        if self.closing.load(Ordering::Acquire) {
            // Shutdown began while this stream was being registered.
            stream.end(
                DisconnectReason::Shutdown,
                Some(Bytes::from_static(SHUTDOWN)),
                false,
            );
        }
        for sub in pending {
            if let Err(e) = sub.await {
                self.metrics.broker_errors.inc();
                let unsent = stream.end(DisconnectReason::WriteError, None, true);
                self.dropped(unsent.unwrap_or_default(), FallbackReason::StreamClosed);
                self.close(&stream, None);
                return Err(e.into());
            }
        }
        Ok(stream)
    }

    /// Unregisters a stream whose writer is gone and counts why it ended. Idempotent.
    /// `conn` defers the reason to the connection's outcome when the server did not end it.
    pub fn close(&self, stream: &Arc<Stream>, conn: Option<&ConnWatch>) {
        if !stream.mark_closed() {
            return;
        }
        let users = self.users.of(&stream.user);
        let user_channel_done = match users.get_mut(&stream.user) {
            Some(mut entry) => {
                entry.retain(|s| s.id != stream.id);
                entry.is_empty()
            }
            None => false,
        };
        if user_channel_done {
            // Re-checked under the entry lock: a new stream may have arrived meanwhile.
            let removed = users.remove_if(&stream.user, |_, v| v.is_empty());
            if removed.is_some() {
                self.broker.unsubscribe(Channel::User(stream.user.clone()));
            }
        }
        for topic in stream.topics.iter() {
            if let Some(mut subs) = self.topics.get_mut(topic) {
                subs.retain(|s| s.id != stream.id);
            }
            if self.topics.remove_if(topic, |_, v| v.is_empty()).is_some() {
                self.broker.unsubscribe(Channel::Topic(topic.clone()));
            }
        }
        self.broker.set_presence(&stream.user, stream.id, None);
        self.metrics.sse_connections.dec();
        self.dropped(stream.take_unsent(), FallbackReason::StreamClosed);
        match (stream.ending(), conn) {
            (Some(reason), _) => self.metrics.disconnect(reason),
            (None, Some(conn)) => conn.defer_disconnect(),
            (None, None) => self.metrics.disconnect(DisconnectReason::ClientClosed),
        }
    }

    /// A notification was written to a stream.
    pub fn written(&self, s: &Stream, n: &SharedNotification) {
        let micros = crate::time::unix_micros().saturating_sub(n.accepted_us);
        self.metrics.delivery_latency.observe(micros as f64 / 1e6);
        if !s.ack {
            // Without acks, the write settles it: this device will not get it through FCM.
            self.metrics.fcm_sends_avoided.inc();
        }
        self.ledger.written(n, s.device_id.as_deref(), s.ack);
    }

    /// Ends every stream with `event: shutdown`; the writers drain and close.
    pub fn shutdown_all(&self) {
        self.closing.store(true, Ordering::Release);
        let frame = Bytes::from_static(SHUTDOWN);
        for entry in self.users.iter() {
            for s in entry.value() {
                s.end(DisconnectReason::Shutdown, Some(frame.clone()), false);
            }
        }
    }

    /// How often to call [`Hub::heartbeat`] for a comment on each idle stream every `period`:
    /// every slice is visited twice per period.
    pub fn heartbeat_tick(period: Duration) -> Duration {
        period / (2 * HEARTBEAT_SLICES)
    }

    /// Visits the next slice of the users' streams: a ping for each stream nothing was queued on
    /// since the previous visit (see [`Stream::heartbeat`]); a stream too far behind to take
    /// more is a slow consumer; a stream whose token expired ends with `event: reauth` after
    /// what is queued. Each slice is visited twice per heartbeat period, so a stream ends at
    /// most half a period after its token's `exp`, at no cost per stream but a `u32`.
    pub fn heartbeat(&self) {
        let slice = self.heartbeat_ticks.fetch_add(1, Ordering::Relaxed) % HEARTBEAT_SLICES;
        let mut visit = Vec::new();
        for entry in self.users.slice(slice).iter() {
            visit.extend(entry.value().iter().cloned());
        }
        let ping = Bytes::from_static(PING);
        let now = crate::time::unix_secs();
        let mut slow = Vec::new();
        for s in visit {
            match s.heartbeat(&ping, now) {
                Visit::Full => slow.push(s),
                Visit::Expired => {
                    // Not dropped: what is queued is written before `reauth`, and what is
                    // unacked replays on the client's reconnect with `Last-Event-ID`.
                    s.end(
                        DisconnectReason::TokenExpired,
                        Some(Bytes::from_static(REAUTH)),
                        false,
                    );
                }
                Visit::Live | Visit::Closed => {}
            }
        }
        self.end_slow(slow);
    }

    /// The `retry:` preamble of a new stream: `retry_ms` ± up to `retry_jitter_ms`. The jitter
    /// is capped at `retry_ms`, so lowering `retry_ms` alone never needs the jitter changed.
    fn retry_frame(&self) -> Bytes {
        let (ms, jitter) = (
            self.cfg.retry_ms,
            self.cfg.retry_jitter_ms.min(self.cfg.retry_ms),
        );
        let retry = if jitter == 0 {
            ms
        } else {
            rand::random_range(ms.saturating_sub(jitter)..=ms.saturating_add(jitter))
        };
        Bytes::from(format!("retry: {retry}\n\n"))
    }

    pub fn stream_count(&self) -> usize {
        self.users.iter().map(|e| e.value().len()).sum()
    }

    fn connection(&self, s: &Stream) -> Connection {
        Connection {
            device_id: s.device_id.as_deref().map(str::to_string),
            node_id: self.cfg.node_id.to_string(),
            connected_at: s.connected_at,
        }
    }

    /// Ends streams that cannot keep up: unregistered at once (what they held falls back), and
    /// their connection dropped, since a client that stopped reading never lets the writer
    /// finish.
    fn end_slow(&self, slow: Vec<Arc<Stream>>) {
        for s in slow {
            if let Some(unsent) = s.end(DisconnectReason::SlowConsumer, None, true) {
                tracing::info!(user_id = %s.user, stream = s.id, "slow consumer: stream closed");
                self.dropped(unsent, FallbackReason::StreamClosed);
                self.close(&s, None);
                s.abort_conn();
            }
        }
    }

    /// Copies dropped unwritten: the last copy of a notification no stream wrote falls back.
    fn dropped(&self, unsent: Vec<SharedNotification>, reason: FallbackReason) {
        for n in unsent {
            if n.dropped_unwritten() {
                self.fall_back(n, reason);
            }
        }
    }

    fn fall_back(&self, notification: SharedNotification, reason: FallbackReason) {
        self.fallbacks.inc(reason);
        let _ = self.fallback.send(Fallback {
            notification,
            reason,
        });
    }
}

impl Inbound for Hub {
    fn user_message(&self, n: SharedNotification, remote: bool) -> bool {
        let mut queued = false;
        let mut slow = Vec::new();
        if let Some(streams) = self.users.of(&n.user_id).get(n.user_id.as_str()) {
            for s in streams.iter() {
                match s.push(Item::Notification(n.clone())) {
                    Push::Queued => queued = true,
                    Push::Full => slow.push(s.clone()),
                    Push::Closed => {}
                }
            }
        }
        self.end_slow(slow);
        if !queued && remote {
            self.fall_back(n, FallbackReason::StreamGone);
        }
        queued
    }

    fn topic_message(&self, b: SharedBroadcast) -> usize {
        let frame = b.frame();
        let mut queued = 0;
        let mut slow = Vec::new();
        if let Some(subs) = self.topics.get(b.topic.as_str()) {
            for s in subs.iter() {
                match s.push(Item::Frame(frame.clone())) {
                    Push::Queued => queued += 1,
                    Push::Full => slow.push(s.clone()),
                    Push::Closed => {}
                }
            }
        }
        self.end_slow(slow);
        self.metrics.broadcast_deliveries.inc_by(queued as u64);
        queued
    }

    fn local_connections(&self, user: &str) -> Vec<Connection> {
        self.users
            .of(user)
            .get(user)
            .map(|v| v.iter().map(|s| self.connection(s)).collect())
            .unwrap_or_default()
    }
}

/// A hub on the memory broker and ledger, for unit tests here and in `http`.
#[cfg(test)]
pub(crate) fn test_hub() -> (Arc<Hub>, mpsc::UnboundedReceiver<Fallback>) {
    use crate::backend::memory::{MemoryBroker, MemoryLedger};
    use crate::backend::LedgerConfig;
    let (tx, rx) = mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::new());
    let ledger = Arc::new(MemoryLedger::new(
        LedgerConfig {
            ack_timeout_ms: 1000,
            retention_ms: 60_000,
            replay_window_ms: 60_000,
            replay_capacity: 4,
            max_records: 100,
            max_idempotency_keys: 100,
        },
        metrics.clone(),
    ));
    let hub = Hub::new(
        HubConfig {
            node_id: "n".into(),
            max_per_user: 2,
            queue_capacity: 4,
            retry_ms: 1000,
            retry_jitter_ms: 0,
        },
        Arc::new(MemoryBroker::new()),
        ledger,
        metrics,
        tx,
    );
    (hub, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(user: &str) -> SharedNotification {
        let req: crate::notification::NotifyRequest =
            serde_json::from_str(&format!(r#"{{"user_id":"{user}","data":{{"k":"v"}}}}"#)).unwrap();
        Arc::new(req.accept().unwrap())
    }

    /// Race 1: the publisher counted this node, but the user's stream went away before the
    /// message arrived: it falls back at once, counted as `stream_gone`.
    #[test]
    fn a_message_for_a_stream_that_just_went_falls_back() {
        let (hub, mut rx) = test_hub();
        assert!(!hub.user_message(notification("gone"), true));
        let f = rx.try_recv().expect("a fallback");
        assert_eq!(f.reason, FallbackReason::StreamGone);
        assert!(hub
            .metrics()
            .render()
            .contains("switchboard_fallbacks_total{reason=\"stream_gone\"} 1"));
    }

    /// Race 1 on the stream: queued, then the stream ended before writing it.
    #[test]
    fn what_a_closed_stream_did_not_write_falls_back() {
        let (hub, mut rx) = test_hub();
        let stream = futures::executor::block_on(hub.open(OpenRequest {
            user: "u".into(),
            device_id: None,
            topics: Vec::new(),
            ack: false,
            expires_at: u64::MAX,
            preload: Vec::new(),
        }))
        .unwrap();
        let n = notification("u");
        assert!(hub.user_message(n.clone(), true));
        hub.close(&stream, None);
        let f = rx.try_recv().expect("a fallback");
        assert_eq!(
            (f.reason, f.notification.id.as_str()),
            (FallbackReason::StreamClosed, n.id.as_str())
        );
    }

    #[tokio::test]
    async fn heartbeat_reaches_every_idle_stream_once_per_period() {
        let (hub, _rx) = test_hub();
        let mut streams = Vec::new();
        for i in 0..200 {
            let req = OpenRequest {
                user: format!("u{i}").into(),
                device_id: None,
                topics: Vec::new(),
                ack: false,
                expires_at: u64::MAX,
                preload: Vec::new(),
            };
            streams.push(hub.open(req).await.unwrap());
        }
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut pings = vec![0; streams.len()];
        let mut busiest_tick = 0;
        // Six periods; each slice's first visit finds the `retry:` preamble queued at open.
        for _ in 0..6 * 2 * HEARTBEAT_SLICES {
            hub.heartbeat();
            let mut this_tick = 0;
            for (s, n) in streams.iter().zip(&mut pings) {
                if let std::task::Poll::Ready(Some(b)) = s.poll_batch(&mut cx, |_| ()) {
                    if &b[..] == PING {
                        *n += 1;
                        this_tick += 1;
                    }
                }
            }
            busiest_tick = busiest_tick.max(this_tick);
        }
        assert!(pings.iter().all(|&n| n == 6), "{pings:?}");
        assert!(busiest_tick < streams.len() / 4, "{busiest_tick}");
    }
}
