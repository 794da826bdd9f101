//! The per-user inbox: every notification accepted for a user (not broadcasts) is kept for
//! `inbox.retention_secs`, at most `inbox.max_per_user` per user (the oldest go first), for
//! `GET /v1/inbox`: clients that cannot hold a stream poll it, and apps woken by a push that
//! carries only an id fetch the notification there.
//!
//! - **Writes are batched and off the notify path.** [`Inbox::append`] queues the notification
//!   for one writer task, which stores what waits in one transaction (SQL: the store's writer,
//!   the push queue's too) or one pipeline (Redis: this module's). A notify routed to a stream
//!   does not wait for it: the stream carries the content, and the inbox is a copy for later.
//!   A push may carry only the id, which the app then looks up here: the row is stored before
//!   the push is sent, by the store writer's order ([`Inbox::stored_before_push`]) or else by
//!   the router waiting for it.
//! - **Ids are cursors.** Ids are UUIDv7, so they order by acceptance time, and their first 13
//!   characters are that time: retention is an id comparison, and `after=<id>` pages.
//! - **A cheap `If-None-Match`.** The answer's tag is derived from the user's head (newest id)
//!   and the query; the head is kept in memory ([`versions`]), advanced by this node's writes
//!   and, on several nodes, by the other nodes' writes through Redis pub/sub. A poll that
//!   finds nothing new costs a token check and a map lookup, no read of the inbox.
//!
//! Engines: [`sql`] (one node: the store's database) and [`redis`] (several nodes), chosen by
//! [`open`] beside the broker, as the push queue is.

mod redis;
mod sql;
pub mod versions;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerKind, Config};
use crate::ids::{NotificationId, UserId};
use crate::metrics::{Counters, Label, Metrics};
use crate::notification::SharedNotification;
use crate::store::{InboxRow, Store};
use crate::time::unix_millis;
use versions::{Head, Lookup, Versions};

/// Most notifications one write stores.
const WRITE_BATCH: usize = 512;
/// Most appends waiting for the writer; past it an append is dropped (and counted).
const WRITE_QUEUE: usize = 1 << 16;
/// How often the SQL engine deletes what is past retention (reads filter it anyway).
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// The inbox's engine did not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("inbox unavailable: {0}")]
pub struct InboxError(pub String);

pub type InboxFuture<T> = BoxFuture<'static, Result<T, InboxError>>;

/// Told how an append ended, by whoever wrote it; it must be quick.
pub type Kept = Box<dyn FnOnce(Result<(), InboxError>) + Send>;

/// Where the inbox is kept.
pub trait InboxEngine: Send + Sync {
    /// Stores `rows` and trims each user touched to `max_per_user` and to ids not below
    /// `since`; other nodes learn of the new heads. `lazy`: nobody waits for it, so the engine
    /// may hold it back a little to store it with others.
    fn append(&self, rows: Vec<InboxRow>, since: String, lazy: bool) -> InboxFuture<()>;
    /// A lazy [`append`](Self::append) nobody awaits: `then` hears how it ended. An engine
    /// whose writer runs `then` itself spares each of these a task and its wake-up.
    fn keep(&self, rows: Vec<InboxRow>, since: String, then: Kept) {
        let written = self.append(rows, since, true);
        tokio::spawn(async move { then(written.await) });
    }
    /// `(id, JSON)` of up to `limit` notifications of `user` not below `since`: after `after`,
    /// the oldest; without, the newest. Oldest first.
    fn page(
        &self,
        user: &UserId,
        after: Option<&str>,
        since: &str,
        limit: usize,
    ) -> InboxFuture<Vec<(String, String)>>;
    /// The JSON of one notification of `user`, if kept (not below `since`).
    fn get(&self, user: &UserId, id: &NotificationId, since: &str) -> InboxFuture<Option<String>>;
    /// The newest id kept for `user`.
    fn head(&self, user: &UserId) -> InboxFuture<Option<String>>;
    /// Deletes what is below `since`, where the engine does not expire it by itself.
    fn expire(&self, since: String) -> InboxFuture<u64>;
    /// True when [`append`](Self::append) hands its rows over at the call (not when the
    /// future is first polled) to a writer that batches them itself and writes the push
    /// queue too, in call order: appends then skip this module's writer, and a row appended
    /// before a push queue put is stored no later than it.
    fn shares_push_writer(&self) -> bool {
        false
    }
}

/// How an append ended (`switchboard_inbox_appends_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendResult {
    Stored,
    /// The engine refused the batch (logged).
    Failed,
    /// The writer's queue was full.
    Dropped,
}

impl Label for AppendResult {
    const ALL: &'static [Self] = &[Self::Stored, Self::Failed, Self::Dropped];
    fn index(self) -> usize {
        self as usize
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }
}

/// What a read answered (`switchboard_inbox_reads_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadResult {
    /// A page, read from the engine.
    Page,
    /// A page known to be empty (the cursor is at the head): nothing was read.
    Empty,
    /// `304 Not Modified`: nothing was read.
    NotModified,
    /// One notification.
    Item,
    NotFound,
}

impl Label for ReadResult {
    const ALL: &'static [Self] = &[
        Self::Page,
        Self::Empty,
        Self::NotModified,
        Self::Item,
        Self::NotFound,
    ];
    fn index(self) -> usize {
        self as usize
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::Empty => "empty",
            Self::NotModified => "not_modified",
            Self::Item => "item",
            Self::NotFound => "not_found",
        }
    }
}

enum Write {
    Append(InboxRow, Option<oneshot::Sender<bool>>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<bool>),
}

/// A page of `GET /v1/inbox`.
pub struct Page {
    /// Each notification's JSON, oldest first.
    pub items: Vec<String>,
    /// The cursor for the next poll: the last item's id, else the request's `after`.
    pub next: Option<String>,
}

pub struct Inbox {
    engine: Arc<dyn InboxEngine>,
    versions: Arc<Versions>,
    /// This module's batching writer, for an engine that does not share the push writer.
    writes: Option<mpsc::Sender<Write>>,
    retention_ms: u64,
    appends: Arc<Counters<AppendResult>>,
    reads: Counters<ReadResult>,
}

/// The inbox beside the configured broker: Redis with the Redis broker, else the store's
/// database.
pub async fn open(config: &Config, store: Store, metrics: &Metrics) -> Result<Inbox, InboxError> {
    let versions = Arc::new(Versions::default());
    let max = config.inbox.max_per_user;
    let engine: Arc<dyn InboxEngine> = match config.broker.kind {
        BrokerKind::Memory => Arc::new(sql::SqlInbox::new(store, max)),
        BrokerKind::Redis => Arc::new(
            redis::RedisInbox::connect(
                &config.broker,
                max,
                config.inbox.retention_secs,
                versions.clone(),
            )
            .await?,
        ),
    };
    let appends = Arc::new(metrics.inbox_appends.counters());
    let retention_ms = config.inbox.retention_secs.saturating_mul(1000);
    let writes = (!engine.shares_push_writer()).then(|| {
        spawn_writer(
            engine.clone(),
            versions.clone(),
            appends.clone(),
            retention_ms,
        )
    });
    Ok(Inbox {
        engine,
        versions,
        writes,
        retention_ms,
        appends,
        reads: metrics.inbox_reads.counters(),
    })
}

fn spawn_writer(
    engine: Arc<dyn InboxEngine>,
    versions: Arc<Versions>,
    appends: Arc<Counters<AppendResult>>,
    retention_ms: u64,
) -> mpsc::Sender<Write> {
    let (tx, mut rx) = mpsc::channel::<Write>(WRITE_QUEUE);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let mut rows = Vec::with_capacity(batch.len());
            let mut replies = Vec::new();
            for w in batch.drain(..) {
                match w {
                    Write::Append(row, reply) => {
                        rows.push(row);
                        replies.extend(reply);
                    }
                    Write::Flush(reply) => replies.push(reply),
                }
            }
            let heads: Vec<(String, String)> = rows
                .iter()
                .map(|r| (r.user_id.clone(), r.id.clone()))
                .collect();
            let count = rows.len();
            let stored = rows.is_empty()
                || match engine.append(rows, since(retention_ms), false).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, notifications = count, "inbox: a batch was not stored");
                        false
                    }
                };
            let result = if stored {
                for (user, id) in &heads {
                    versions.advance(user, id);
                }
                AppendResult::Stored
            } else {
                AppendResult::Failed
            };
            for _ in 0..count {
                appends.inc(result);
            }
            for reply in replies {
                let _ = reply.send(stored);
            }
        }
    });
    tx
}

fn row_of(n: &SharedNotification) -> InboxRow {
    InboxRow {
        user_id: n.user_id.clone(),
        id: n.id.clone(),
        payload: n.event_json(),
    }
}

/// The smallest id still within retention: the UUIDv7 prefix of the time `retention_ms` ago.
fn since(retention_ms: u64) -> String {
    let ms = unix_millis().saturating_sub(retention_ms);
    format!("{:08x}-{:04x}", (ms >> 16) & 0xffff_ffff, ms & 0xffff)
}

/// Resolves to whether the append was stored.
pub type Stored = BoxFuture<'static, bool>;

impl Inbox {
    /// Queues `n` for its user's inbox; the returned future says when it is stored (dropping
    /// it does not cancel the write).
    pub fn append(&self, n: &SharedNotification) -> Stored {
        self.append_row(row_of(n), false)
    }

    /// Queues `n` for its user's inbox when nobody waits for it (its content went out over a
    /// stream): the store's writer may hold it back for up to `store::LAZY_WRITE_DELAY` to
    /// share a transaction with others.
    pub fn keep(&self, n: &SharedNotification) {
        let row = row_of(n);
        if self.writes.is_some() {
            drop(self.append_row(row, true));
            return;
        }
        let done = self.on_stored(&row);
        self.engine.keep(
            vec![row],
            since(self.retention_ms),
            Box::new(move |r| {
                done(r);
            }),
        );
    }

    fn append_row(&self, row: InboxRow, lazy: bool) -> Stored {
        use futures::FutureExt;
        let Some(writes) = &self.writes else {
            return self.append_shared(row, lazy);
        };
        let (tx, rx) = oneshot::channel();
        match writes.try_send(Write::Append(row, Some(tx))) {
            Ok(()) => rx.map(|r| r.unwrap_or(false)).boxed(),
            Err(_) => {
                self.appends.inc(AppendResult::Dropped);
                futures::future::ready(false).boxed()
            }
        }
    }

    /// An append through the engine's own writer, handed over now; a task of its own waits for
    /// it (the caller may drop the future) and then advances the user's head.
    fn append_shared(&self, row: InboxRow, lazy: bool) -> Stored {
        use futures::FutureExt;
        let done = self.on_stored(&row);
        let written = self
            .engine
            .append(vec![row], since(self.retention_ms), lazy);
        tokio::spawn(async move { done(written.await) })
            .map(|r| r.unwrap_or(false))
            .boxed()
    }

    /// What follows the engine's answer to an append of `row`: the user's head advances, the
    /// append is counted; true when it was stored.
    fn on_stored(&self, row: &InboxRow) -> impl FnOnce(Result<(), InboxError>) -> bool {
        let (user, id) = (row.user_id.clone(), row.id.clone());
        let (versions, appends) = (self.versions.clone(), self.appends.clone());
        move |written| {
            let stored = match written {
                Ok(()) => {
                    versions.advance(&user, &id);
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, notification_id = %id, "inbox: a notification was not stored");
                    false
                }
            };
            appends.inc(if stored {
                AppendResult::Stored
            } else {
                AppendResult::Failed
            });
            stored
        }
    }

    /// True when a row appended before a push queue put is stored no later than the put
    /// (the engine shares the push queue's writer): the router need not wait for it then.
    pub fn stored_before_push(&self) -> bool {
        self.writes.is_none()
    }

    /// Waits until every append queued so far is written (at shutdown).
    pub async fn flush(&self) {
        let Some(writes) = &self.writes else {
            // An empty append is answered after everything handed over before it.
            let _ = self
                .engine
                .append(Vec::new(), since(self.retention_ms), false)
                .await;
            return;
        };
        let (tx, rx) = oneshot::channel();
        if writes.send(Write::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The user's newest id: from memory, else read (and remembered).
    pub async fn head(&self, user: &UserId) -> Result<Head, InboxError> {
        match self.versions.get(user) {
            Lookup::Known(head) => Ok(head),
            Lookup::Miss(token) => {
                let head: Head = self.engine.head(user).await?.map(Into::into);
                self.versions.fill(user, token, head.clone());
                Ok(head)
            }
        }
    }

    /// The page after `after` (or the newest), `head` being the user's newest id: a cursor at
    /// the head answers an empty page without a read.
    pub async fn page(
        &self,
        user: &UserId,
        head: &Head,
        after: Option<&NotificationId>,
        limit: usize,
    ) -> Result<Page, InboxError> {
        let at_head = at_head(head, after);
        let after = after.map(|a| a.to_ascii_lowercase());
        if at_head {
            self.reads.inc(ReadResult::Empty);
            return Ok(Page {
                items: Vec::new(),
                next: after,
            });
        }
        let rows = self
            .engine
            .page(user, after.as_deref(), &since(self.retention_ms), limit)
            .await?;
        self.reads.inc(ReadResult::Page);
        let next = rows.last().map(|(id, _)| id.clone()).or(after);
        Ok(Page {
            items: rows.into_iter().map(|(_, json)| json).collect(),
            next,
        })
    }

    /// One notification of `user`.
    pub async fn get(
        &self,
        user: &UserId,
        id: &NotificationId,
    ) -> Result<Option<String>, InboxError> {
        let id: NotificationId = id
            .to_ascii_lowercase()
            .try_into()
            .map_err(|e| InboxError(format!("{e}")))?;
        let found = self
            .engine
            .get(user, &id, &since(self.retention_ms))
            .await?;
        self.reads.inc(if found.is_some() {
            ReadResult::Item
        } else {
            ReadResult::NotFound
        });
        Ok(found)
    }

    /// Counts a `304 Not Modified`.
    pub fn not_modified(&self) {
        self.reads.inc(ReadResult::NotModified);
    }

    /// Deletes what is past retention every minute, until `stop`.
    pub async fn run_expiry(self: Arc<Self>, stop: CancellationToken) {
        let every = EXPIRE_EVERY.min(Duration::from_millis(self.retention_ms.max(1000)));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.engine.expire(since(self.retention_ms)).await {
                tracing::warn!(error = %e, "inbox: expiry failed");
            }
        }
    }
}

/// Whether the page after `after` is known to be empty: the cursor is at (or past) the head.
pub fn at_head(head: &Head, after: Option<&NotificationId>) -> bool {
    match (head, after) {
        (None, _) => true,
        (Some(h), Some(a)) => a.to_ascii_lowercase().as_str() >= &**h,
        (Some(_), None) => false,
    }
}

/// The `ETag` of a page: the user's head, the query's `limit`, and its cursor (`None` for an
/// answer that brings the client up to the head), hashed (FNV-1a). Every answer that ends at
/// the head shares the head's tag, so the poll after it (whose cursor moved to the head)
/// matches it and is a `304`.
pub fn etag(head: &Head, after: Option<&NotificationId>, limit: usize) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(head.as_deref().unwrap_or("").as_bytes());
    eat(after
        .map_or("", |a| a.as_str())
        .to_ascii_lowercase()
        .as_bytes());
    eat(limit.to_string().as_bytes());
    format!("\"{h:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retention_cutoff_is_a_uuid_v7_prefix_of_that_time() {
        let id = crate::ids::new_id();
        let now = since(0);
        assert_eq!(now.len(), 13);
        assert!(id.as_str() >= now.as_str(), "{id} < {now}");
        assert!(since(60_000) < now);
    }

    #[test]
    fn the_tag_changes_with_the_head_and_the_query() {
        let a: Head = Some("a".into());
        let b: Head = Some("b".into());
        let id = NotificationId::try_from("01a2281e-af88-7611-8000-3c5e1f2a9b40").unwrap();
        assert_eq!(etag(&a, None, 10), etag(&a, None, 10));
        assert_ne!(etag(&a, None, 10), etag(&b, None, 10));
        assert_ne!(etag(&a, None, 10), etag(&a, Some(&id), 10));
        assert_ne!(etag(&a, None, 10), etag(&a, None, 11));
    }
}
