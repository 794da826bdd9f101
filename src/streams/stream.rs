//! One live SSE stream: who it belongs to and its bounded queue of frames waiting to be written.
//! Kept small (no task, no timer, no buffer while idle) because a node holds 100K of them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use crate::metrics::DisconnectReason;
use crate::notification::SharedNotification;

/// Most bytes one write gathers from the queue.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Something waiting to be written to a stream.
pub enum Item {
    /// A ready-made frame (the `retry:` preamble, a heartbeat, a broadcast, `event: shutdown`).
    Frame(Bytes),
    /// A notification: written as its shared frame, and tracked (latency, fallback if unwritten).
    Notification(SharedNotification),
}

/// What became of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The queue is at capacity: the stream is a slow consumer.
    Full,
    /// The stream is ending or gone.
    Closed,
}

/// What the heartbeat's visit found.
#[derive(Debug, PartialEq, Eq)]
pub enum Visit {
    /// Busy, or idle and pinged.
    Live,
    /// The queue is at capacity: the stream is a slow consumer.
    Full,
    /// The stream's token has expired.
    Expired,
    /// The stream is ending or gone.
    Closed,
}

pub struct Stream {
    /// Unique per node; tells two streams of one user apart.
    pub id: u64,
    pub user: Arc<str>,
    pub device_id: Option<Box<str>>,
    pub topics: Box<[Arc<str>]>,
    /// The client confirms receipt with POST /v1/ack.
    pub ack: bool,
    /// Unix ms.
    pub connected_at: u64,
    capacity: u32,
    /// Set once the hub has unregistered the stream.
    closed: AtomicBool,
    /// The HTTP/1 connection carrying the stream, to drop it when the stream must end at once.
    conn: OnceLock<Arc<super::ConnWatch>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Item>,
    waker: Option<Waker>,
    /// Set once the server decided to end the stream; the writer drains what is queued, then ends.
    ending: Option<DisconnectReason>,
    /// Something was queued since the heartbeat last visited: the stream is not idle.
    /// (Fits in the struct's padding: no memory per stream.)
    queued_since_visit: bool,
    /// When the stream's token expires, unix seconds (also in the padding). The heartbeat's
    /// visits check it: no timer per stream.
    expires_at: u32,
}

pub struct StreamInfo {
    pub id: u64,
    pub user: Arc<str>,
    pub device_id: Option<Box<str>>,
    pub topics: Box<[Arc<str>]>,
    pub ack: bool,
    pub connected_at: u64,
    pub capacity: usize,
    /// The token's `exp`, unix seconds.
    pub expires_at: u64,
}

impl Stream {
    pub fn new(info: StreamInfo) -> Stream {
        Stream {
            id: info.id,
            user: info.user,
            device_id: info.device_id,
            topics: info.topics,
            ack: info.ack,
            connected_at: info.connected_at,
            capacity: info.capacity.min(u32::MAX as usize) as u32,
            closed: AtomicBool::new(false),
            conn: OnceLock::new(),
            state: Mutex::new(State {
                expires_at: u32::try_from(info.expires_at).unwrap_or(u32::MAX),
                ..State::default()
            }),
        }
    }

    pub fn set_conn(&self, conn: Arc<super::ConnWatch>) {
        let _ = self.conn.set(conn);
    }

    /// Drops the connection under the stream (HTTP/1 only; on HTTP/2 the stream just ends).
    pub fn abort_conn(&self) {
        if let Some(c) = self.conn.get() {
            c.abort();
        }
    }

    /// Marks the stream unregistered; true only the first time.
    pub fn mark_closed(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    pub fn push(&self, item: Item) -> Push {
        let waker = {
            let mut st = self.state.lock();
            if st.ending.is_some() {
                return Push::Closed;
            }
            if st.queue.len() >= self.capacity as usize {
                return Push::Full;
            }
            if let Item::Notification(n) = &item {
                n.queued();
            }
            st.queue.push_back(item);
            st.queued_since_visit = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Push::Queued
    }

    /// The heartbeat's visit, made twice per heartbeat period: queues `ping` unless something
    /// was queued since the previous visit. An idle stream thus gets a ping every period (the
    /// ping itself counts as queued, so the next visit skips), and a busy one no later than a
    /// period after its last frame. A full queue is reported either way: a slow consumer; then
    /// a token that expired by `now_secs`.
    pub fn heartbeat(&self, ping: &Bytes, now_secs: u64) -> Visit {
        {
            let mut st = self.state.lock();
            if st.ending.is_some() {
                return Visit::Closed;
            }
            if st.queue.len() >= self.capacity as usize {
                return Visit::Full;
            }
            if u64::from(st.expires_at) <= now_secs {
                return Visit::Expired;
            }
            if std::mem::take(&mut st.queued_since_visit) {
                return Visit::Live;
            }
        }
        match self.push(Item::Frame(ping.clone())) {
            Push::Queued => Visit::Live,
            Push::Full => Visit::Full,
            Push::Closed => Visit::Closed,
        }
    }

    /// Pushes a frame that must go out even if the queue is full (the final `event: shutdown`).
    fn push_final(&self, frame: Bytes) {
        self.state.lock().queue.push_back(Item::Frame(frame));
    }

    /// Asks the writer to end the stream. A `final_frame` is written after what is queued;
    /// with `drop_queue`, queued notifications are taken out and returned (for the fallback path)
    /// instead of written. Returns `None` if the stream was already ending.
    pub fn end(
        &self,
        reason: DisconnectReason,
        final_frame: Option<Bytes>,
        drop_queue: bool,
    ) -> Option<Vec<SharedNotification>> {
        let (waker, unsent) = {
            let mut st = self.state.lock();
            if st.ending.is_some() {
                return None;
            }
            st.ending = Some(reason);
            let unsent = if drop_queue {
                take_notifications(&mut st.queue)
            } else {
                Vec::new()
            };
            (st.waker.take(), unsent)
        };
        if let Some(f) = final_frame {
            self.push_final(f);
        }
        if let Some(w) = waker {
            w.wake();
        }
        Some(unsent)
    }

    /// The reason the server gave for ending the stream, if it did.
    pub fn ending(&self) -> Option<DisconnectReason> {
        self.state.lock().ending
    }

    /// Everything still queued (the stream is gone): its notifications, for the fallback path.
    pub fn take_unsent(&self) -> Vec<SharedNotification> {
        take_notifications(&mut self.state.lock().queue)
    }

    /// The writer's side: the next batch of bytes, `None` once the stream has ended and drained.
    /// `written` sees each notification in the batch.
    pub fn poll_batch(
        &self,
        cx: &mut Context<'_>,
        mut written: impl FnMut(&SharedNotification),
    ) -> Poll<Option<Bytes>> {
        let mut st = self.state.lock();
        let Some(first) = st.queue.pop_front() else {
            if st.ending.is_some() {
                return Poll::Ready(None);
            }
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        };
        let first = item_bytes(first, &mut written);
        if st.queue.is_empty() {
            return Poll::Ready(Some(first));
        }
        let mut buf = BytesMut::with_capacity(first.len() * (st.queue.len() + 1));
        buf.extend_from_slice(&first);
        while buf.len() < MAX_BATCH_BYTES {
            let Some(item) = st.queue.pop_front() else {
                break;
            };
            buf.extend_from_slice(&item_bytes(item, &mut written));
        }
        Poll::Ready(Some(buf.freeze()))
    }
}

fn item_bytes(item: Item, written: &mut impl FnMut(&SharedNotification)) -> Bytes {
    match item {
        Item::Frame(b) => b,
        Item::Notification(n) => {
            n.wrote();
            written(&n);
            n.frame()
        }
    }
}

fn take_notifications(queue: &mut VecDeque<Item>) -> Vec<SharedNotification> {
    queue
        .drain(..)
        .filter_map(|i| match i {
            Item::Notification(n) => Some(n),
            Item::Frame(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    fn stream(capacity: usize) -> Stream {
        Stream::new(StreamInfo {
            id: 1,
            user: "u".into(),
            device_id: None,
            topics: Box::new([]),
            ack: false,
            connected_at: 0,
            capacity,
            expires_at: EXPIRES,
        })
    }

    const EXPIRES: u64 = 2_000_000_000;

    fn notification() -> SharedNotification {
        let req: crate::notification::NotifyRequest =
            serde_json::from_str(r#"{"user_id":"u","data":{"k":"v"}}"#).unwrap();
        Arc::new(req.accept().unwrap())
    }

    #[test]
    fn batches_queued_frames_into_one_write() {
        let s = stream(8);
        s.push(Item::Frame(Bytes::from_static(b"a")));
        s.push(Item::Notification(notification()));
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut seen = 0;
        let Poll::Ready(Some(b)) = s.poll_batch(&mut cx, |_| seen += 1) else {
            panic!()
        };
        assert!(b.starts_with(b"aid: "));
        assert_eq!(seen, 1);
        assert!(s.poll_batch(&mut cx, |_| ()).is_pending());
    }

    #[test]
    fn full_queue_and_ending() {
        let s = stream(4);
        for _ in 0..4 {
            assert_eq!(s.push(Item::Notification(notification())), Push::Queued);
        }
        assert_eq!(s.push(Item::Frame(Bytes::new())), Push::Full);
        let unsent = s.end(DisconnectReason::SlowConsumer, None, true).unwrap();
        assert_eq!(unsent.len(), 4);
        assert!(s.end(DisconnectReason::Shutdown, None, false).is_none());
        assert_eq!(s.push(Item::Frame(Bytes::new())), Push::Closed);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(s.poll_batch(&mut cx, |_| ()), Poll::Ready(None)));
    }

    fn drain(s: &Stream) -> Vec<u8> {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        match s.poll_batch(&mut cx, |_| ()) {
            Poll::Ready(Some(b)) => b.to_vec(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn heartbeat_pings_an_idle_stream_every_other_visit() {
        let s = stream(8);
        let ping = Bytes::from_static(b"p");
        s.push(Item::Frame(Bytes::from_static(b"retry")));
        drain(&s);
        let pinged: Vec<bool> = (0..6)
            .map(|_| {
                assert_eq!(s.heartbeat(&ping, 0), Visit::Live);
                drain(&s) == b"p"
            })
            .collect();
        assert_eq!(pinged, [false, true, false, true, false, true]);
    }

    #[test]
    fn heartbeat_skips_a_busy_stream_but_finds_a_full_one() {
        let s = stream(4);
        let ping = Bytes::from_static(b"p");
        s.heartbeat(&ping, 0);
        drain(&s);
        s.push(Item::Notification(notification()));
        assert_eq!(s.heartbeat(&ping, 0), Visit::Live);
        assert!(!drain(&s).ends_with(b"p"), "no ping right after a frame");
        assert_eq!(s.heartbeat(&ping, 0), Visit::Live);
        assert_eq!(drain(&s), b"p", "a ping one period after the frame");
        for _ in 0..4 {
            s.push(Item::Notification(notification()));
        }
        assert_eq!(s.heartbeat(&ping, 0), Visit::Full);
        s.end(DisconnectReason::SlowConsumer, None, true);
        assert_eq!(s.heartbeat(&ping, 0), Visit::Closed);
    }

    #[test]
    fn heartbeat_finds_an_expired_token() {
        let s = stream(4);
        let ping = Bytes::from_static(b"p");
        assert_eq!(s.heartbeat(&ping, EXPIRES - 1), Visit::Live);
        assert_eq!(s.heartbeat(&ping, EXPIRES), Visit::Expired);
        s.end(DisconnectReason::TokenExpired, None, false);
        assert_eq!(s.heartbeat(&ping, EXPIRES), Visit::Closed);
    }

    #[test]
    fn the_token_expiry_costs_a_stream_no_memory() {
        #[allow(dead_code)]
        struct WithoutExpiry {
            queue: VecDeque<Item>,
            waker: Option<Waker>,
            ending: Option<DisconnectReason>,
            queued_since_visit: bool,
        }
        assert_eq!(
            std::mem::size_of::<State>(),
            std::mem::size_of::<WithoutExpiry>()
        );
    }

    #[test]
    fn shutdown_frame_follows_the_queue() {
        let s = stream(1);
        s.push(Item::Frame(Bytes::from_static(b"x")));
        s.end(
            DisconnectReason::Shutdown,
            Some(Bytes::from_static(b"bye")),
            false,
        );
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(Some(b)) = s.poll_batch(&mut cx, |_| ()) else {
            panic!()
        };
        assert_eq!(&b[..], b"xbye");
        assert!(matches!(s.poll_batch(&mut cx, |_| ()), Poll::Ready(None)));
    }
}
