//! One writer for the store's database: every write of the push queue (puts, ends, retries,
//! the sweep's claims) and of the inbox goes through one task that applies whatever waits in
//! one transaction (`Store::write_batch`).
//!
//! - One commit serves many callers, and no two of these transactions wait for SQLite's write
//!   lock (a wait its busy handler sleeps through).
//! - Writes are applied in the order they were handed over, and a batch's inbox rows before
//!   its puts: a notification's inbox row is stored no later than its push sends, so a push
//!   carrying only the id finds it there, with no wait for the inbox before the put.

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{mpsc, oneshot};

use super::{Applied, Change, InboxRow, NewSends, QueueRow, Store, StoreError};

/// Most writes one transaction applies. Under load the batches fill up: a larger one costs
/// the callers in it a longer wait, a smaller one more commits.
pub(super) const WRITE_BATCH: usize = 1024;

/// One write; [`Store::write`] hands it to the writer.
#[derive(Debug, Clone)]
pub enum Write {
    /// New sends of the push queue.
    Put(NewSends),
    /// The end or retry of a claimed send.
    Change(Change),
    /// Up to `limit` sends due at `now`, held by `claim` until `lease_end`.
    Claim {
        claim: String,
        now: i64,
        lease_end: i64,
        limit: usize,
    },
    /// Inbox rows, then each user touched trimmed to its newest `max_per_user`. With no rows,
    /// answered once everything handed over before it is written. `lazy`: nobody waits for
    /// it, so the writer may hold it back for up to [`LAZY_WRITE_DELAY`] to share a
    /// transaction with others.
    Keep {
        rows: Vec<InboxRow>,
        max_per_user: usize,
        lazy: bool,
    },
}

/// The longest a lazy write waits for company, when nothing else is to be written: at a low
/// rate of lazy writes (inbox copies of notifications that went out over a stream), a
/// transaction each would cost far more than the rows in it.
pub const LAZY_WRITE_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

impl Write {
    pub(super) fn is_lazy(&self) -> bool {
        matches!(self, Write::Keep { lazy: true, .. })
    }
}

/// What a [`Write`] did, in kind.
#[derive(Debug, Clone)]
pub enum Written {
    /// The device ids of the sends a put stored now.
    Stored(Vec<String>),
    Applied(Applied),
    Claimed(Vec<QueueRow>),
    Kept,
}

/// A callback the writer runs when a write's batch is committed (or failed).
pub type Then = Box<dyn FnOnce(Result<Written, StoreError>) + Send>;

/// Who hears how a write ended.
pub(super) enum Reply {
    /// A caller awaiting it.
    Wait(oneshot::Sender<Result<Written, StoreError>>),
    /// Nobody awaits it: the writer runs this itself, which costs no task and no wake-up.
    Then(Then),
}

impl Reply {
    pub(super) fn send(self, result: Result<Written, StoreError>) {
        match self {
            Reply::Wait(tx) => {
                let _ = tx.send(result);
            }
            Reply::Then(then) => then(result),
        }
    }
}

/// Answers each write of a batch: with what it did, or with the batch's error.
pub(super) fn answer<E: std::fmt::Display>(replies: Vec<Reply>, written: Result<Vec<Written>, E>) {
    match written {
        Ok(written) => {
            for (reply, w) in replies.into_iter().zip(written) {
                reply.send(Ok(w));
            }
        }
        Err(e) => {
            let e = e.to_string();
            for reply in replies {
                reply.send(Err(StoreError::Batch(e.clone())));
            }
        }
    }
}

/// Where writes are handed over: the writer task's channel, or the writer thread's.
#[derive(Clone)]
pub(super) enum Writes {
    Task(mpsc::UnboundedSender<(Write, Reply)>),
    Thread(super::handoff::Sender),
}

impl Writes {
    /// Gives the reply back when the writer is gone.
    fn send(&self, write: Write, reply: Reply) -> Result<(), Reply> {
        match self {
            Writes::Task(tx) => tx.send((write, reply)).map_err(|e| e.0 .1),
            Writes::Thread(tx) => tx.send(write, reply),
        }
    }
}

/// Starts the writer of `store` as a task (a store without a writer of its own: it applies
/// each batch with sqlx). A SQLite file has a writer thread instead (`sqlite_writer`).
pub(super) fn spawn(store: Store) -> Writes {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Write, Reply)>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let (writes, replies): (Vec<Write>, Vec<Reply>) = batch.drain(..).unzip();
            answer(replies, store.write_batch(&writes).await);
        }
    });
    Writes::Task(tx)
}

impl Store {
    /// Hands `write` to the writer now (the order of calls is the order of writes); the
    /// future resolves to its answer, or to its batch's error. Dropping it does not cancel
    /// the write.
    pub fn write(&self, write: Write) -> BoxFuture<'static, Result<Written, StoreError>> {
        let Some(writes) = &self.writes else {
            let store = self.clone();
            return async move {
                let mut written = store.write_batch(std::slice::from_ref(&write)).await?;
                written.pop().ok_or(StoreError::WriterStopped)
            }
            .boxed();
        };
        let (tx, rx) = oneshot::channel();
        let sent = writes.send(write, Reply::Wait(tx)).is_ok();
        async move {
            if !sent {
                return Err(StoreError::WriterStopped);
            }
            rx.await.map_err(|_| StoreError::WriterStopped)?
        }
        .boxed()
    }

    /// Hands `write` to the writer now, as [`Store::write`] does, for a caller that does not
    /// wait: `then` hears how it ended, run by the writer itself, so it must be quick.
    pub fn write_then(&self, write: Write, then: Then) {
        let Some(writes) = &self.writes else {
            let store = self.clone();
            tokio::spawn(async move {
                let written = store.write_batch(std::slice::from_ref(&write)).await;
                then(written.and_then(|mut w| w.pop().ok_or(StoreError::WriterStopped)));
            });
            return;
        };
        if let Err(reply) = writes.send(write, Reply::Then(then)) {
            reply.send(Err(StoreError::WriterStopped));
        }
    }
}
