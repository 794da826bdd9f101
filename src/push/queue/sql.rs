//! The queue in the store's database, for one node (the rows in `store::push_queue`).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::{
    progress_of, Entry, Finished, NewSends, Progress, PushQueue, QueueError, QueueFuture,
    QueueStats,
};
use crate::notification::Notification;
use crate::store::{
    app_column, app_from_column, Applied, Change, Device, NewRow, NewRows, Platform, ProviderKind,
    QueueRow, Store, StoreError,
};
use crate::time::unix_millis;

/// Most changes one transaction applies.
const WRITE_BATCH: usize = 512;
/// Most notifications whose sends one transaction stores.
const PUT_BATCH: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

pub struct SqlQueue {
    store: Store,
    /// Ends and retries go through one writer that commits them in batches.
    writes: mpsc::UnboundedSender<(Change, Reply<Applied>)>,
    /// New sends too: under load one commit stores the sends of many notifies.
    puts: mpsc::UnboundedSender<(NewRows, Reply<Vec<String>>)>,
}

impl SqlQueue {
    pub fn new(store: Store) -> SqlQueue {
        let writes = spawn_writer(WRITE_BATCH, {
            let store = store.clone();
            move |changes: Vec<Change>| {
                let store = store.clone();
                async move { store.queue_apply(&changes).await }
            }
        });
        let puts = spawn_writer(PUT_BATCH, {
            let store = store.clone();
            move |puts: Vec<NewRows>| {
                let store = store.clone();
                async move { store.queue_put_many(&puts).await }
            }
        });
        SqlQueue {
            store,
            writes,
            puts,
        }
    }
}

/// A writer task for one kind of write: it takes what waits, up to `max` per call of `write`
/// (one transaction), so under load one commit serves many callers; alone, a write is made at
/// once. Each caller gets its own result, or the batch's error.
fn spawn_writer<T, R, F, Fut>(max: usize, write: F) -> mpsc::UnboundedSender<(T, Reply<R>)>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<R>, StoreError>> + Send,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(T, Reply<R>)>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(max);
        while rx.recv_many(&mut batch, max).await > 0 {
            let (items, replies): (Vec<T>, Vec<_>) = batch.drain(..).unzip();
            match write(items).await {
                Ok(results) => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    let e = failed(e);
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    });
    tx
}

/// Hands `item` to a writer and waits for its result.
fn submit<T: Send + 'static, R: Send + 'static>(
    writer: &mpsc::UnboundedSender<(T, Reply<R>)>,
    item: T,
) -> QueueFuture<R> {
    let (tx, rx) = oneshot::channel();
    let sent = writer.send((item, tx));
    async move {
        sent.map_err(|_| QueueError("push queue writer stopped".into()))?;
        rx.await
            .map_err(|_| QueueError("push queue writer stopped".into()))?
    }
    .boxed()
}

fn failed(e: impl std::fmt::Display) -> QueueError {
    QueueError(e.to_string())
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A row back into an entry; `None` when its payload is unreadable (it is dropped then).
fn entry(row: QueueRow, claim: &Arc<str>) -> Option<Entry> {
    let n = match Notification::from_json(Bytes::from(row.payload)) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(notification_id = %row.notification_id, error = %e, "push queue: unreadable payload");
            return None;
        }
    };
    Some(Entry {
        notification: Arc::new(n),
        device: Device {
            device_id: row.device_id,
            user_id: row.user_id,
            platform: Platform::parse(&row.platform),
            provider: ProviderKind::parse(&row.provider),
            app: app_from_column(&row.app),
            token: row.token,
            updated_at: 0,
        },
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        created_ms: row.created_at.max(0) as u64,
        deadline_ms: row.deadline_at.max(0) as u64,
        last_error: row.last_error,
        claim: claim.clone(),
    })
}

impl PushQueue for SqlQueue {
    fn put(&self, sends: NewSends<'_>) -> QueueFuture<Vec<String>> {
        let n = sends.notification;
        let payload = n.json();
        let put = std::str::from_utf8(&payload)
            .map_err(failed)
            .map(|payload| NewRows {
                id: n.id.to_string(),
                payload: payload.to_string(),
                rows: sends
                    .devices
                    .iter()
                    .map(|d| NewRow {
                        device_id: d.device_id.to_string(),
                        user_id: d.user_id.to_string(),
                        token: d.token.to_string(),
                        platform: d.platform.as_str().to_string(),
                        provider: d.provider.as_str().to_string(),
                        app: app_column(d.app.as_ref()).to_string(),
                    })
                    .collect(),
                claim: sends.claim.map(str::to_string),
                due_at: ms(sends.due_ms),
                created_at: ms(unix_millis()),
                deadline_at: ms(sends.deadline_ms),
            });
        match put {
            Ok(put) => submit(&self.puts, put),
            Err(e) => async move { Err(e) }.boxed(),
        }
    }

    fn claim(&self, claim: Arc<str>, limit: usize, lease_end_ms: u64) -> QueueFuture<Vec<Entry>> {
        let store = self.store.clone();
        async move {
            let rows = store
                .queue_claim(&claim, ms(unix_millis()), ms(lease_end_ms), limit)
                .await
                .map_err(failed)?;
            Ok(rows.into_iter().filter_map(|r| entry(r, &claim)).collect())
        }
        .boxed()
    }

    fn finish(&self, entry: &Entry, accepted: bool) -> QueueFuture<Finished> {
        let (id, device_id, claim) = keys(entry);
        let applied = submit(
            &self.writes,
            Change::Finish {
                id,
                device_id,
                claim: claim.to_string(),
                accepted,
            },
        );
        async move {
            match applied.await? {
                Applied::Finished(f) => Ok(f),
                Applied::Retried(_) => Err(QueueError("unexpected answer".into())),
            }
        }
        .boxed()
    }

    fn retry(&self, entry: &Entry, due_ms: u64, error: &str) -> QueueFuture<bool> {
        let (id, device_id, claim) = keys(entry);
        let applied = submit(
            &self.writes,
            Change::Retry {
                id,
                device_id,
                claim: claim.to_string(),
                due_at: ms(due_ms),
                attempts: i64::from(entry.attempts) + 1,
                error: error.to_string(),
            },
        );
        async move {
            match applied.await? {
                Applied::Retried(r) => Ok(r),
                Applied::Finished(_) => Err(QueueError("unexpected answer".into())),
            }
        }
        .boxed()
    }

    fn stats(&self) -> QueueFuture<QueueStats> {
        let store = self.store.clone();
        async move {
            let (depth, oldest) = store.queue_stats().await.map_err(failed)?;
            Ok(QueueStats {
                depth: depth.max(0) as u64,
                oldest_ms: oldest.map(|o| o.max(0) as u64),
            })
        }
        .boxed()
    }

    fn progress(&self, id: &str) -> QueueFuture<Option<Progress>> {
        let store = self.store.clone();
        let id = id.to_string();
        async move {
            let rows = store.queue_progress(&id).await.map_err(failed)?;
            Ok(progress_of(rows.into_iter().map(|(a, d, c)| {
                (u32::try_from(a).unwrap_or(u32::MAX), d.max(0) as u64, c)
            })))
        }
        .boxed()
    }

    fn recover(&self) -> QueueFuture<u64> {
        let store = self.store.clone();
        async move { store.queue_recover(ms(unix_millis())).await.map_err(failed) }.boxed()
    }
}

fn keys(entry: &Entry) -> (String, String, Arc<str>) {
    (
        entry.notification.id.clone(),
        entry.device.device_id.clone(),
        entry.claim.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::NotifyRequest;

    async fn queue() -> (SqlQueue, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
        (SqlQueue::new(Store::connect(&url).await.unwrap()), dir)
    }

    fn device(id: &str) -> Device {
        Device {
            device_id: id.into(),
            user_id: "u".into(),
            platform: Platform::Android,
            provider: ProviderKind::Fcm,
            app: None,
            token: format!("tok-{id}"),
            updated_at: 0,
        }
    }

    #[tokio::test]
    async fn a_queued_send_keeps_its_devices_provider_and_app() {
        let (q, _dir) = queue().await;
        let req: NotifyRequest =
            serde_json::from_str(r#"{"user_id":"u","data":{"k":"v"}}"#).unwrap();
        let n = Arc::new(req.accept().unwrap());
        let ios = Device {
            platform: Platform::Ios,
            provider: ProviderKind::Apns,
            app: Some("shop".try_into().unwrap()),
            token: "ab".repeat(32),
            ..device("ios")
        };
        let now = unix_millis();
        q.put(NewSends {
            notification: &n,
            devices: &[ios.clone(), device("android")],
            claim: None,
            due_ms: now,
            deadline_ms: now + 600_000,
        })
        .await
        .unwrap();
        let mut taken = q.claim("c".into(), 10, now + 60_000).await.unwrap();
        taken.sort_by(|a, b| a.device.device_id.cmp(&b.device.device_id));
        assert_eq!(taken[0].device, device("android"));
        assert_eq!(taken[1].device, ios);
    }

    #[tokio::test]
    async fn a_claim_whose_lease_ran_out_is_taken_over_and_the_first_claimer_cannot_settle_it() {
        let (q, _dir) = queue().await;
        let req: NotifyRequest =
            serde_json::from_str(r#"{"user_id":"u","data":{"k":"v"}}"#).unwrap();
        let n = Arc::new(req.accept().unwrap());
        let devices = [device("a"), device("b")];
        let now = unix_millis();
        let stored = q
            .put(NewSends {
                notification: &n,
                devices: &devices,
                claim: Some("first"),
                due_ms: now + 60_000,
                deadline_ms: now + 600_000,
            })
            .await
            .unwrap();
        assert_eq!(stored, ["a", "b"]);
        // Held by "first" until its lease ends: nothing to claim.
        assert!(q
            .claim("second".into(), 10, now + 60_000)
            .await
            .unwrap()
            .is_empty());
        // Stored again (a second hand-over): nothing new.
        let again = q
            .put(NewSends {
                notification: &n,
                devices: &devices,
                claim: None,
                due_ms: now,
                deadline_ms: now + 600_000,
            })
            .await
            .unwrap();
        assert!(again.is_empty());

        // The lease ends (as if "first" died): "second" takes both over.
        q.store.queue_recover(ms(now)).await.unwrap();
        let taken = q.claim("second".into(), 10, now + 60_000).await.unwrap();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].notification.id, n.id);
        let stale = Entry {
            claim: "first".into(),
            ..clone_entry(&taken[0])
        };
        assert_eq!(q.finish(&stale, true).await.unwrap(), Finished::Lost);

        assert!(q.retry(&taken[0], now, "unavailable").await.unwrap());
        assert_eq!(
            q.progress(&n.id).await.unwrap().map(|p| p.attempts),
            Some(1)
        );
        assert_eq!(q.finish(&taken[1], true).await.unwrap(), Finished::Done);
        let retried = q.claim("third".into(), 10, now + 60_000).await.unwrap();
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].attempts, 1);
        assert_eq!(retried[0].last_error.as_deref(), Some("unavailable"));
        assert_eq!(
            q.finish(&retried[0], false).await.unwrap(),
            Finished::Last { accepted: true }
        );
        assert_eq!(q.stats().await.unwrap().depth, 0);
        assert_eq!(q.progress(&n.id).await.unwrap(), None);
    }

    fn clone_entry(e: &Entry) -> Entry {
        Entry {
            notification: e.notification.clone(),
            device: e.device.clone(),
            attempts: e.attempts,
            created_ms: e.created_ms,
            deadline_ms: e.deadline_ms,
            last_error: e.last_error.clone(),
            claim: e.claim.clone(),
        }
    }
}
