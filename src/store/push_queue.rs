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
    pub token: String,
    pub platform: String,
    pub provider: String,
    /// '' for the default app.
    pub app: String,
    pub attempts: i64,
    pub created_at: i64,
    pub deadline_at: i64,
    pub last_error: Option<String>,
    pub payload: String,
}

/// A new send: the device part of a row.
#[derive(Debug, Clone)]
pub struct NewRow {
    pub device_id: String,
    pub user_id: String,
    pub token: String,
    pub platform: String,
    pub provider: String,
    /// '' for the default app.
    pub app: String,
}

/// The new sends of one notification (`payload`: its JSON).
#[derive(Debug, Clone)]
pub struct NewSends {
    pub id: String,
    pub payload: String,
    pub rows: Vec<NewRow>,
    pub claim: Option<String>,
    pub due_at: i64,
    pub created_at: i64,
    pub deadline_at: i64,
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

/// Rows per multi-row statement: 13 parameters each, well under SQLite's 32 766.
const ROWS_PER_STATEMENT: usize = 1000;
const INSERT_ROWS: &str = "INSERT INTO push_queue (notification_id, device_id, user_id, token, \
     platform, provider, app, attempts, due_at, created_at, deadline_at, claim, payload) ";
const INSERT_ROWS_TAIL: &str = " ON CONFLICT (notification_id, device_id) DO NOTHING \
     RETURNING notification_id, device_id";
const INSERT_BATCHES: &str = "INSERT INTO push_batches (notification_id, remaining, accepted) ";
const INSERT_BATCHES_TAIL: &str = " ON CONFLICT (notification_id) \
     DO UPDATE SET remaining = push_batches.remaining + excluded.remaining";
const CLAIM: &str = "UPDATE push_queue SET claim = $1, due_at = $2 \
     WHERE (notification_id, device_id) IN (SELECT notification_id, device_id FROM push_queue \
     WHERE due_at <= $3 ORDER BY due_at LIMIT $4) \
     RETURNING notification_id, device_id, user_id, token, platform, provider, app, attempts, \
     created_at, deadline_at, last_error, payload";
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
    /// Stores the sends of several notifications in one transaction, each due at its `due_at`
    /// and, with a `claim`, held by it until then. A send already queued (or twice in `puts`) is
    /// kept as it first was; returns, for each put, the device ids of the sends stored now.
    /// Multi-row statements: each statement is a round trip to the database (for SQLite, to
    /// sqlx's worker thread), so a batch costs a handful of them whatever its size.
    pub async fn queue_put_many(&self, puts: &[NewSends]) -> Result<Vec<Vec<String>>, StoreError> {
        let returned: Vec<(String, String)> = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut returned = Vec::new();
            let rows: Vec<(&NewSends, &NewRow)> = puts
                .iter()
                .flat_map(|p| p.rows.iter().map(move |r| (p, r)))
                .collect();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut qb = sqlx::QueryBuilder::new(INSERT_ROWS);
                qb.push_values(chunk, |mut b, (p, r)| {
                    b.push_bind(p.id.as_str())
                        .push_bind(r.device_id.as_str())
                        .push_bind(r.user_id.as_str())
                        .push_bind(r.token.as_str())
                        .push_bind(r.platform.as_str())
                        .push_bind(r.provider.as_str())
                        .push_bind(r.app.as_str())
                        .push_bind(0_i64)
                        .push_bind(p.due_at)
                        .push_bind(p.created_at)
                        .push_bind(p.deadline_at)
                        .push_bind(p.claim.as_deref())
                        .push_bind(p.payload.as_str());
                });
                qb.push(INSERT_ROWS_TAIL);
                let got: Vec<(String, String)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                returned.extend(got);
            }
            // One count per notification: a row of push_batches may be touched once per statement.
            let mut counts: Vec<(&str, i64)> = Vec::new();
            for (id, _) in &returned {
                match counts.iter_mut().find(|(n, _)| *n == id.as_str()) {
                    Some((_, c)) => *c += 1,
                    None => counts.push((id.as_str(), 1)),
                }
            }
            for chunk in counts.chunks(ROWS_PER_STATEMENT) {
                let mut qb = sqlx::QueryBuilder::new(INSERT_BATCHES);
                qb.push_values(chunk, |mut b, (id, n)| {
                    b.push_bind(*id).push_bind(*n).push_bind(0_i64);
                });
                qb.push(INSERT_BATCHES_TAIL);
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            returned
        });
        // Each stored send to the first put that asked for it.
        let mut stored: Vec<Vec<String>> = vec![Vec::new(); puts.len()];
        for (id, device) in returned {
            if let Some(i) = puts
                .iter()
                .position(|p| p.id == id && p.rows.iter().any(|r| r.device_id == device))
            {
                stored[i].push(device);
            }
        }
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
