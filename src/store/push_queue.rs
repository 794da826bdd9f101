//! The durable push queue's SQL side (one node: SQLite, or PostgreSQL when it is the device
//! store of a single node). `push::queue::sql` puts it behind the `PushQueue` trait; the
//! semantics (claims, leases, batches) are documented there.

use std::collections::{HashMap, HashSet};

use super::inbox::keep_in_inbox;
use super::{on_pool, InboxRow, Store, StoreError, Write, Written};

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

/// Rows per multi-row statement: at most 13 parameters each, well under SQLite's 32 766.
const ROWS_PER_STATEMENT: usize = 1000;
pub(super) const INSERT_ROWS: &str =
    "INSERT INTO push_queue (notification_id, device_id, user_id, token, \
     platform, provider, app, attempts, due_at, created_at, deadline_at, claim, payload) ";
pub(super) const INSERT_ROWS_TAIL: &str = " ON CONFLICT (notification_id, device_id) DO NOTHING \
     RETURNING notification_id, device_id";
pub(super) const INSERT_BATCHES: &str =
    "INSERT INTO push_batches (notification_id, remaining, accepted) ";
pub(super) const INSERT_BATCHES_TAIL: &str = " ON CONFLICT (notification_id) \
     DO UPDATE SET remaining = push_batches.remaining + excluded.remaining";
pub(super) const CLAIM: &str = "UPDATE push_queue SET claim = $1, due_at = $2 \
     WHERE (notification_id, device_id) IN (SELECT notification_id, device_id FROM push_queue \
     WHERE due_at <= $3 ORDER BY due_at LIMIT $4) \
     RETURNING notification_id, device_id, user_id, token, platform, provider, app, attempts, \
     created_at, deadline_at, last_error, payload";
// The multi-row forms take their rows from a `WITH v(...) AS (VALUES ...)`: SQLite looks a
// row-value `IN` up in the primary key when its right side is a subquery, not a bare VALUES.
const DELETE_MANY_HEAD: &str = "WITH v(id, dev, claim) AS (";
const DELETE_MANY_TAIL: &str = ") DELETE FROM push_queue \
     WHERE (notification_id, device_id, claim) IN (SELECT id, dev, claim FROM v) \
     RETURNING notification_id, device_id";
const COUNT_DOWN_MANY_HEAD: &str = "WITH v(id, n, acc) AS (";
const COUNT_DOWN_MANY_TAIL: &str = ") UPDATE push_batches \
     SET remaining = push_batches.remaining - v.n, accepted = push_batches.accepted + v.acc \
     FROM v WHERE push_batches.notification_id = v.id \
     RETURNING notification_id, remaining, accepted";
const DELETE_BATCHES: &str = "DELETE FROM push_batches WHERE notification_id IN ";
const RETRY_MANY_HEAD: &str = "WITH v(id, dev, claim, due_at, attempts, error) AS (";
const RETRY_MANY_TAIL: &str = ") UPDATE push_queue \
     SET due_at = v.due_at, attempts = v.attempts, last_error = v.error, claim = NULL \
     FROM v WHERE push_queue.notification_id = v.id AND push_queue.device_id = v.dev \
     AND push_queue.claim = v.claim RETURNING notification_id, device_id";
// One change at a time: only for a batch that changes one send twice (see `write_batch`).
pub(super) const DELETE: &str =
    "DELETE FROM push_queue WHERE notification_id = $1 AND device_id = $2 AND claim = $3";
pub(super) const COUNT_DOWN: &str = "UPDATE push_batches SET remaining = remaining - 1, \
     accepted = accepted + $2 WHERE notification_id = $1 RETURNING remaining, accepted";
pub(super) const DELETE_BATCH: &str = "DELETE FROM push_batches WHERE notification_id = $1";
pub(super) const RETRY: &str =
    "UPDATE push_queue SET due_at = $4, attempts = $5, last_error = $6, \
     claim = NULL WHERE notification_id = $1 AND device_id = $2 AND claim = $3";
const STATS: &str = "SELECT COUNT(*), MIN(created_at) FROM push_queue";
const PROGRESS: &str = "SELECT attempts, due_at, claim FROM push_queue WHERE notification_id = $1";
const RECOVER: &str = "UPDATE push_queue SET claim = NULL, due_at = $1 WHERE claim IS NOT NULL";

/// The ends of a batch, sorted out before they are applied.
struct Ends<'a> {
    /// (notification, device, claim, accepted).
    finishes: Vec<(&'a str, &'a str, &'a str, bool)>,
    /// (notification, device, claim, due_at, attempts, error).
    retries: Vec<(&'a str, &'a str, &'a str, i64, i64, &'a str)>,
}

impl<'a> Ends<'a> {
    /// `None` when two changes touch one send: their order matters then, and the multi-row
    /// statements (which report sends, not changes) cannot tell them apart.
    fn of(changes: &[&'a Change]) -> Option<Ends<'a>> {
        let mut seen = HashSet::with_capacity(changes.len());
        let mut ends = Ends {
            finishes: Vec::new(),
            retries: Vec::new(),
        };
        for c in changes {
            let (id, device_id) = match c {
                Change::Finish {
                    id,
                    device_id,
                    claim,
                    accepted,
                } => {
                    ends.finishes.push((id, device_id, claim, *accepted));
                    (id, device_id)
                }
                Change::Retry {
                    id,
                    device_id,
                    claim,
                    due_at,
                    attempts,
                    error,
                } => {
                    ends.retries
                        .push((id, device_id, claim, *due_at, *attempts, error));
                    (id, device_id)
                }
            };
            if !seen.insert((id.as_str(), device_id.as_str())) {
                return None;
            }
        }
        Some(ends)
    }
}

/// Each finish's answer, from the sends the batch removed and what its count-down left of
/// their notifications' batches ((remaining, accepted) by notification).
fn finished(
    finishes: &[(&str, &str, &str, bool)],
    removed: &HashSet<(String, String)>,
    left: &HashMap<String, (i64, i64)>,
) -> Vec<Finished> {
    let mut out = vec![Finished::Lost; finishes.len()];
    // The batch's last removed send of a notification is the one that may end it.
    let mut last_seen = HashSet::new();
    for (i, (id, device_id, _, accepted)) in finishes.iter().enumerate().rev() {
        if !removed.contains(&(id.to_string(), device_id.to_string())) {
            continue;
        }
        out[i] = match left.get(*id) {
            Some((remaining, _)) if *remaining > 0 => Finished::Done,
            Some((_, n)) if last_seen.insert(*id) => Finished::Last { accepted: *n > 0 },
            Some(_) => Finished::Done,
            // No batch row (it cannot be told how many remain): each ends it, as one would.
            None => Finished::Last {
                accepted: *accepted,
            },
        };
    }
    out
}

/// How removing one send ended, from what its batch's count-down returned (remaining,
/// accepted), if the batch had a row.
pub(super) fn finished_one(left: Option<(i64, i64)>, accepted: bool) -> Finished {
    match left {
        Some((remaining, _)) if remaining > 0 => Finished::Done,
        Some((_, n)) => Finished::Last { accepted: n > 0 },
        // No batch row (it cannot be told how many remain): each ends it, as one would.
        None => Finished::Last { accepted },
    }
}

/// Sends removed and their notifications' acceptances, by notification, in first-seen order.
fn count_downs<'a>(
    finishes: &[(&'a str, &str, &str, bool)],
    removed: &HashSet<(String, String)>,
) -> Vec<(&'a str, i64, i64)> {
    let mut counts: Vec<(&str, i64, i64)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (id, device_id, _, accepted) in finishes {
        if !removed.contains(&(id.to_string(), device_id.to_string())) {
            continue;
        }
        let i = *at.entry(id).or_insert_with(|| {
            counts.push((id, 0, 0));
            counts.len() - 1
        });
        counts[i].1 += 1;
        counts[i].2 += i64::from(*accepted);
    }
    counts
}

impl Store {
    /// Applies `writes` in one transaction, each statement for many of them (each statement is
    /// a round trip to the database; for SQLite, to sqlx's worker thread): the inbox rows, the
    /// puts, then the ends and retries, then the claims. One answer per write, in order. The
    /// store's writer (`store::writer`) is its caller.
    ///
    /// A put stores a notification's sends, each due at its `due_at` and, with a `claim`, held
    /// by it until then; a send already queued (or put twice in `writes`) is kept as it first
    /// was, and the answer names the sends stored now. A change to a send no longer held by
    /// its claim changes nothing (`Finished::Lost`, `Retried(false)`).
    pub async fn write_batch(&self, writes: &[Write]) -> Result<Vec<Written>, StoreError> {
        let puts: Vec<&NewSends> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Put(p) => Some(p),
                _ => None,
            })
            .collect();
        let changes: Vec<&Change> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Change(c) => Some(c),
                _ => None,
            })
            .collect();
        let kept: Vec<InboxRow> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Keep { rows, .. } => Some(rows.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect();
        let keep = writes
            .iter()
            .filter_map(|w| match w {
                Write::Keep { max_per_user, .. } => Some(*max_per_user),
                _ => None,
            })
            .min()
            .map_or(i64::MAX, |m| i64::try_from(m).unwrap_or(i64::MAX));
        let ends = Ends::of(&changes);
        let (returned, applied, claimed) = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;

            // The inbox rows first: a push may carry only the id, which the app looks up there.
            keep_in_inbox!(tx, &kept, keep);

            // The puts: their rows, then one count per notification in push_batches (a row of
            // it may be touched once per statement).
            let mut returned: Vec<(String, String)> = Vec::new();
            let rows: Vec<(&NewSends, &NewRow)> = puts
                .iter()
                .flat_map(|p| p.rows.iter().map(move |r| (*p, r)))
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
            let mut counts: Vec<(&str, i64)> = Vec::new();
            let mut at: HashMap<&str, usize> = HashMap::new();
            for (id, _) in &returned {
                let i = *at.entry(id.as_str()).or_insert_with(|| {
                    counts.push((id.as_str(), 0));
                    counts.len() - 1
                });
                counts[i].1 += 1;
            }
            for chunk in counts.chunks(ROWS_PER_STATEMENT) {
                let mut qb = sqlx::QueryBuilder::new(INSERT_BATCHES);
                qb.push_values(chunk, |mut b, (id, n)| {
                    b.push_bind(*id).push_bind(*n).push_bind(0_i64);
                });
                qb.push(INSERT_BATCHES_TAIL);
                qb.build().execute(&mut *tx).await?;
            }

            // The ends and retries.
            let mut applied: Vec<Applied> = Vec::with_capacity(changes.len());
            if let Some(ends) = &ends {
                let mut removed: HashSet<(String, String)> = HashSet::new();
                for chunk in ends.finishes.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::new(DELETE_MANY_HEAD);
                    qb.push_values(chunk, |mut b, (id, dev, claim, _)| {
                        b.push_bind(*id).push_bind(*dev).push_bind(*claim);
                    });
                    qb.push(DELETE_MANY_TAIL);
                    let got: Vec<(String, String)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    removed.extend(got);
                }
                let downs = count_downs(&ends.finishes, &removed);
                let mut left: HashMap<String, (i64, i64)> = HashMap::new();
                for chunk in downs.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::new(COUNT_DOWN_MANY_HEAD);
                    qb.push_values(chunk, |mut b, (id, n, accepted)| {
                        b.push_bind(*id).push_bind(*n).push_bind(*accepted);
                    });
                    qb.push(COUNT_DOWN_MANY_TAIL);
                    let got: Vec<(String, i64, i64)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    left.extend(got.into_iter().map(|(id, r, a)| (id, (r, a))));
                }
                let ended: Vec<&str> = left
                    .iter()
                    .filter(|(_, (remaining, _))| *remaining <= 0)
                    .map(|(id, _)| id.as_str())
                    .collect();
                for chunk in ended.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::new(DELETE_BATCHES);
                    qb.push_tuples(chunk.iter().map(|id| [*id]), |mut b, [id]| {
                        b.push_bind(id);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                let mut retried: HashSet<(String, String)> = HashSet::new();
                for chunk in ends.retries.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::new(RETRY_MANY_HEAD);
                    qb.push_values(chunk, |mut b, (id, dev, claim, due_at, attempts, error)| {
                        b.push_bind(*id)
                            .push_bind(*dev)
                            .push_bind(*claim)
                            .push_bind(*due_at)
                            .push_bind(*attempts)
                            .push_bind(*error);
                    });
                    qb.push(RETRY_MANY_TAIL);
                    let got: Vec<(String, String)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    retried.extend(got);
                }
                let mut finished = finished(&ends.finishes, &removed, &left).into_iter();
                for c in &changes {
                    applied.push(match c {
                        Change::Finish { .. } => {
                            Applied::Finished(finished.next().unwrap_or(Finished::Lost))
                        }
                        Change::Retry { id, device_id, .. } => Applied::Retried(
                            retried.contains(&(id.clone(), device_id.clone())),
                        ),
                    });
                }
            } else {
                for c in &changes {
                    let one = match c {
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
                                let finished = finished_one(left, *accepted);
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
                    applied.push(one);
                }
            }

            // The claims (a sweep's; seldom more than one per batch).
            let mut claimed: Vec<Vec<QueueRow>> = Vec::new();
            for w in writes {
                if let Write::Claim { claim, now, lease_end, limit } = w {
                    let rows: Vec<QueueRow> = sqlx::query_as(CLAIM)
                        .bind(claim)
                        .bind(lease_end)
                        .bind(now)
                        .bind(*limit as i64)
                        .fetch_all(&mut *tx)
                        .await?;
                    claimed.push(rows);
                }
            }
            tx.commit().await?;
            (returned, applied, claimed)
        });

        // Each stored send to the first put that asked for it.
        let mut first: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, p) in puts.iter().enumerate() {
            for r in &p.rows {
                first
                    .entry((p.id.as_str(), r.device_id.as_str()))
                    .or_insert(i);
            }
        }
        let mut stored: Vec<Vec<String>> = vec![Vec::new(); puts.len()];
        for (id, device) in returned {
            if let Some(&i) = first.get(&(id.as_str(), device.as_str())) {
                stored[i].push(device);
            }
        }
        let mut stored = stored.into_iter();
        let mut applied = applied.into_iter();
        let mut claimed = claimed.into_iter();
        Ok(writes
            .iter()
            .map(|w| match w {
                Write::Put(_) => Written::Stored(stored.next().unwrap_or_default()),
                Write::Change(_) => {
                    Written::Applied(applied.next().unwrap_or(Applied::Retried(false)))
                }
                Write::Claim { .. } => Written::Claimed(claimed.next().unwrap_or_default()),
                Write::Keep { .. } => Written::Kept,
            })
            .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sends(keys: &[(&str, &str)]) -> HashSet<(String, String)> {
        keys.iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect()
    }

    #[test]
    fn only_the_last_removed_send_of_an_ended_batch_ends_its_notification() {
        let finishes = [
            ("n1", "a", "k", true),
            ("n1", "b", "k", false),
            ("n2", "a", "k", false),
            ("n3", "a", "k", false),
            ("n1", "c", "k", false),
            ("n4", "a", "k", true),
        ];
        let removed = sends(&[("n1", "a"), ("n1", "b"), ("n2", "a"), ("n4", "a")]);
        let left = HashMap::from([("n1".to_string(), (0, 1)), ("n2".to_string(), (2, 0))]);
        assert_eq!(
            finished(&finishes, &removed, &left),
            [
                Finished::Done,
                Finished::Last { accepted: true },
                Finished::Done,
                Finished::Lost,
                Finished::Lost,
                Finished::Last { accepted: true },
            ]
        );
        assert_eq!(
            count_downs(&finishes, &removed),
            [("n1", 2, 1), ("n2", 1, 0), ("n4", 1, 1)]
        );
    }
}
