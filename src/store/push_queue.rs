//! The durable push queue's SQL side (one node: SQLite, or PostgreSQL when it is the device
//! store of a single node). `push::queue::sql` puts it behind the `PushQueue` trait; the
//! semantics (claims, leases, batches) are documented there.

use super::{on_pool, Store, StoreError};

/// One send as the queue keeps it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRow {
    pub notification_id: String,
    pub device_id: String,
    pub user_id: String,
    pub fcm_token: String,
    pub platform: String,
    pub attempts: i64,
    pub created_at: i64,
    pub deadline_at: i64,
    pub last_error: Option<String>,
    pub payload: String,
}

/// A new send: the device part of a row.
pub struct NewRow<'a> {
    pub device_id: &'a str,
    pub user_id: &'a str,
    pub fcm_token: &'a str,
    pub platform: &'a str,
}

/// A change to one send held by `claim`.
#[derive(Debug, Clone)]
pub enum Change {
    /// Removed, and counted in its notification's batch.
    Finish {
        id: String,
        device_id: String,
        claim: String,
        accepted: bool,
    },
    /// Given back to the queue, due at `due_at`.
    Retry {
        id: String,
        device_id: String,
        claim: String,
        due_at: i64,
        attempts: i64,
        error: String,
    },
}

/// What a [`Change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Finished(Finished),
    /// False: another claim holds it now.
    Retried(bool),
}

/// How ending one send went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Another claim holds it now (this one's lease ran out): nothing was changed.
    Lost,
    /// Removed; other sends of its notification remain.
    Done,
    /// Removed, and it was its notification's last: whether any of them was accepted.
    Last { accepted: bool },
}

const INSERT: &str = "INSERT INTO push_queue (notification_id, device_id, user_id, fcm_token, \
     platform, attempts, due_at, created_at, deadline_at, last_error, claim, payload) \
     VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, NULL, $9, $10) \
     ON CONFLICT (notification_id, device_id) DO NOTHING";
const INSERT_BATCH: &str = "INSERT INTO push_batches (notification_id, remaining, accepted) \
     VALUES ($1, $2, 0) ON CONFLICT (notification_id) \
     DO UPDATE SET remaining = push_batches.remaining + excluded.remaining";
const CLAIM: &str = "UPDATE push_queue SET claim = $1, due_at = $2 \
     WHERE (notification_id, device_id) IN (SELECT notification_id, device_id FROM push_queue \
     WHERE due_at <= $3 ORDER BY due_at LIMIT $4) \
     RETURNING notification_id, device_id, user_id, fcm_token, platform, attempts, created_at, \
     deadline_at, last_error, payload";
const DELETE: &str =
    "DELETE FROM push_queue WHERE notification_id = $1 AND device_id = $2 AND claim = $3";
const COUNT_DOWN: &str = "UPDATE push_batches SET remaining = remaining - 1, \
     accepted = accepted + $2 WHERE notification_id = $1 RETURNING remaining, accepted";
const DELETE_BATCH: &str = "DELETE FROM push_batches WHERE notification_id = $1";
const RETRY: &str = "UPDATE push_queue SET due_at = $4, attempts = $5, last_error = $6, \
     claim = NULL WHERE notification_id = $1 AND device_id = $2 AND claim = $3";
const STATS: &str = "SELECT COUNT(*), MIN(created_at) FROM push_queue";
const PROGRESS: &str = "SELECT attempts, due_at, claim FROM push_queue WHERE notification_id = $1";
const RECOVER: &str = "UPDATE push_queue SET claim = NULL, due_at = $1 WHERE claim IS NOT NULL";

impl Store {
    /// Stores the sends of notification `id` (`payload`: its JSON), due at `due_at`; with
    /// `claim`, held by that claim until `due_at`. A send already queued is kept as it is;
    /// returns the device ids of those stored now.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue_put(
        &self,
        id: &str,
        payload: &str,
        rows: &[NewRow<'_>],
        claim: Option<&str>,
        due_at: i64,
        created_at: i64,
        deadline_at: i64,
    ) -> Result<Vec<String>, StoreError> {
        let stored = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut stored = Vec::with_capacity(rows.len());
            for r in rows {
                let n = sqlx::query(INSERT)
                    .bind(id)
                    .bind(r.device_id)
                    .bind(r.user_id)
                    .bind(r.fcm_token)
                    .bind(r.platform)
                    .bind(due_at)
                    .bind(created_at)
                    .bind(deadline_at)
                    .bind(claim)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n > 0 {
                    stored.push(r.device_id.to_string());
                }
            }
            if !stored.is_empty() {
                sqlx::query(INSERT_BATCH)
                    .bind(id)
                    .bind(stored.len() as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            stored
        });
        Ok(stored)
    }

    /// Claims up to `limit` sends due at `now`, holding them until `lease_end`.
    pub async fn queue_claim(
        &self,
        claim: &str,
        now: i64,
        lease_end: i64,
        limit: usize,
    ) -> Result<Vec<QueueRow>, StoreError> {
        let rows: Vec<QueueRow> = on_pool!(self, pool => sqlx::query_as(CLAIM)
            .bind(claim)
            .bind(lease_end)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(pool)
            .await?);
        Ok(rows)
    }

    /// Ends or gives back sends, all in one transaction (a commit per send would bound the
    /// rate at which a backlog drains); one answer per change, in order.
    pub async fn queue_apply(&self, changes: &[Change]) -> Result<Vec<Applied>, StoreError> {
        let applied = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut out = Vec::with_capacity(changes.len());
            for c in changes {
                let applied = match c {
                    Change::Finish { id, device_id, claim, accepted } => {
                        let removed = sqlx::query(DELETE)
                            .bind(id)
                            .bind(device_id)
                            .bind(claim)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        if removed == 0 {
                            Applied::Finished(Finished::Lost)
                        } else {
                            let left: Option<(i64, i64)> = sqlx::query_as(COUNT_DOWN)
                                .bind(id)
                                .bind(i64::from(*accepted))
                                .fetch_optional(&mut *tx)
                                .await?;
                            let finished = match left {
                                Some((remaining, _)) if remaining > 0 => Finished::Done,
                                Some((_, n)) => Finished::Last { accepted: n > 0 },
                                None => Finished::Last { accepted: *accepted },
                            };
                            if matches!(finished, Finished::Last { .. }) {
                                sqlx::query(DELETE_BATCH).bind(id).execute(&mut *tx).await?;
                            }
                            Applied::Finished(finished)
                        }
                    }
                    Change::Retry { id, device_id, claim, due_at, attempts, error } => {
                        let n = sqlx::query(RETRY)
                            .bind(id)
                            .bind(device_id)
                            .bind(claim)
                            .bind(due_at)
                            .bind(attempts)
                            .bind(error)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        Applied::Retried(n > 0)
                    }
                };
                out.push(applied);
            }
            tx.commit().await?;
            out
        });
        Ok(applied)
    }

    /// Sends in the queue, and the creation time of the oldest.
    pub async fn queue_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        let row: (i64, Option<i64>) =
            on_pool!(self, pool => sqlx::query_as(STATS).fetch_one(pool).await?);
        Ok(row)
    }

    /// The queued sends of notification `id`: (attempts, due_at, claimed) each.
    pub async fn queue_progress(&self, id: &str) -> Result<Vec<(i64, i64, bool)>, StoreError> {
        let rows: Vec<(i64, i64, Option<String>)> = on_pool!(self, pool => sqlx::query_as(PROGRESS)
            .bind(id)
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(a, d, c)| (a, d, c.is_some()))
            .collect())
    }

    /// Drops every claim (the process that held them is gone), due at `now`.
    pub async fn queue_recover(&self, now: i64) -> Result<u64, StoreError> {
        let n = on_pool!(self, pool => sqlx::query(RECOVER)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n)
    }
}
