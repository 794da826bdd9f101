//! The queue in the store's database, for one node (the rows in `store::push_queue`).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::FutureExt;

use super::{
    progress_of, Entry, Finished, NewSends, Progress, PushQueue, QueueError, QueueFuture,
    QueueStats,
};
use crate::notification::Notification;
use crate::store::{
    app_column, app_from_column, Applied, Change, Device, NewRow, NewRows, Platform, ProviderKind,
    QueueRow, Store, Write, Written,
};
use crate::time::unix_millis;

/// Every write (puts, ends, retries, claims) goes through the store's one writer
/// (`store::writer`), which commits them in batches.
pub struct SqlQueue {
    store: Store,
}

impl SqlQueue {
    pub fn new(store: Store) -> SqlQueue {
        SqlQueue { store }
    }

    /// Hands `write` to the writer; `pick` takes its answer out of the `Written` it gets.
    fn submit<R: Send + 'static>(
        &self,
        write: Write,
        pick: fn(Written) -> Option<R>,
    ) -> QueueFuture<R> {
        let written = self.store.write(write);
        async move {
            let written = written.await.map_err(failed)?;
            pick(written).ok_or_else(|| QueueError("unexpected answer".into()))
        }
        .boxed()
    }
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
            Ok(put) => self.submit(Write::Put(put), |w| match w {
                Written::Stored(stored) => Some(stored),
                _ => None,
            }),
            Err(e) => async move { Err(e) }.boxed(),
        }
    }

    fn claim(&self, claim: Arc<str>, limit: usize, lease_end_ms: u64) -> QueueFuture<Vec<Entry>> {
        let rows = self.submit(
            Write::Claim {
                claim: claim.to_string(),
                now: ms(unix_millis()),
                lease_end: ms(lease_end_ms),
                limit,
            },
            |w| match w {
                Written::Claimed(rows) => Some(rows),
                _ => None,
            },
        );
        async move {
            let rows = rows.await?;
            Ok(rows.into_iter().filter_map(|r| entry(r, &claim)).collect())
        }
        .boxed()
    }

    fn finish(&self, entry: &Entry, accepted: bool) -> QueueFuture<Finished> {
        let (id, device_id, claim) = keys(entry);
        self.submit(
            Write::Change(Change::Finish {
                id,
                device_id,
                claim: claim.to_string(),
                accepted,
            }),
            |w| match w {
                Written::Applied(Applied::Finished(f)) => Some(f),
                _ => None,
            },
        )
    }

    fn retry(&self, entry: &Entry, due_ms: u64, error: &str) -> QueueFuture<bool> {
        let (id, device_id, claim) = keys(entry);
        self.submit(
            Write::Change(Change::Retry {
                id,
                device_id,
                claim: claim.to_string(),
                due_at: ms(due_ms),
                attempts: i64::from(entry.attempts) + 1,
                error: error.to_string(),
            }),
            |w| match w {
                Written::Applied(Applied::Retried(r)) => Some(r),
                _ => None,
            },
        )
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

    #[tokio::test]
    async fn the_sends_of_one_notification_ended_in_one_batch_end_it_exactly_once() {
        let (q, _dir) = queue().await;
        let req: NotifyRequest =
            serde_json::from_str(r#"{"user_id":"u","data":{"k":"v"}}"#).unwrap();
        let n = Arc::new(req.accept().unwrap());
        let devices = [device("a"), device("b"), device("c"), device("d")];
        let now = unix_millis();
        q.put(NewSends {
            notification: &n,
            devices: &devices,
            claim: None,
            due_ms: now,
            deadline_ms: now + 600_000,
        })
        .await
        .unwrap();
        let taken = q.claim("c1".into(), 10, now + 60_000).await.unwrap();
        assert_eq!(taken.len(), 4);
        let stale = Entry {
            claim: "someone-else".into(),
            ..clone_entry(&taken[3])
        };
        // Handed to the writer together, so that one transaction applies them: a retry, a
        // change by a claim that does not hold its send, and two ends.
        let (retried, lost, first, second) = tokio::join!(
            q.retry(&taken[0], now, "unavailable"),
            q.finish(&stale, true),
            q.finish(&taken[1], false),
            q.finish(&taken[2], true),
        );
        assert!(retried.unwrap());
        assert_eq!(lost.unwrap(), Finished::Lost);
        assert_eq!(first.unwrap(), Finished::Done);
        assert_eq!(second.unwrap(), Finished::Done);
        // The same send twice in one batch: applied one after the other.
        let (end, again) = tokio::join!(q.finish(&taken[3], false), q.finish(&taken[3], true));
        assert_eq!(end.unwrap(), Finished::Done);
        assert_eq!(again.unwrap(), Finished::Lost);
        let last = q.claim("c2".into(), 10, now + 60_000).await.unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(
            q.finish(&last[0], false).await.unwrap(),
            Finished::Last { accepted: true }
        );
        assert_eq!(q.stats().await.unwrap().depth, 0);
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
