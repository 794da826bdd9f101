//! The store writer for a SQLite file: a thread of its own holding its own connection, which
//! applies each batch of writes with no hand-off per statement.
//!
//! sqlx runs a SQLite connection on a worker thread and hands it every statement (and every
//! `BEGIN` and `COMMIT`) through a channel: a batch of the writer cost a round trip, a futex
//! wake and a context switch on both sides per statement, which is where the router's CPU
//! went when every notification is a push. Here a batch is one hand-off each way, and each
//! write is a few cached prepared statements run in place: one at a time, in order, so a
//! batch means what the same writes one after another would (no multi-row statements, no
//! care for two changes of one send in a batch).
//!
//! Same semantics and durability as `Store::write_batch` (WAL, `synchronous = NORMAL`; a
//! commit is in the WAL before any of its callers hears of it).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::handoff::{handoff, Receiver};
use super::inbox::INSERT_ONE as INBOX_INSERT;
use super::push_queue::{
    finished_one, CLAIM, COUNT_DOWN, DELETE, DELETE_BATCH, INSERT_BATCHES, INSERT_BATCHES_TAIL,
    INSERT_ROWS, RETRY,
};
use super::writer::{answer, Writes, LAZY_WRITE_DELAY, WRITE_BATCH};
use super::{Applied, Change, Finished, QueueRow, StoreError, Write, Written};

/// The statements, in SQLite's own numbered-parameter form (`?N`).
struct Sql {
    inbox_insert: String,
    inbox_trim: &'static str,
    put: String,
    batch: String,
    delete: String,
    count_down: String,
    delete_batch: String,
    retry: String,
    claim: String,
}

impl Sql {
    fn new() -> Sql {
        // `$N` (what sqlx takes for both dialects) is a *named* parameter to SQLite, numbered
        // by first appearance; `?N` keeps the number the statement gives it.
        let numbered = |s: &str| s.replace('$', "?");
        Sql {
            inbox_insert: format!("{} RETURNING seq", numbered(INBOX_INSERT)),
            inbox_trim: "DELETE FROM inbox WHERE user_id = ?1 AND seq <= ?2",
            put: format!(
                "{INSERT_ROWS}VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (notification_id, device_id) DO NOTHING"
            ),
            batch: format!("{INSERT_BATCHES}VALUES (?1, ?2, 0){INSERT_BATCHES_TAIL}"),
            delete: numbered(DELETE),
            count_down: numbered(COUNT_DOWN),
            delete_batch: numbered(DELETE_BATCH),
            retry: numbered(RETRY),
            claim: numbered(CLAIM),
        }
    }
}

/// Opens a connection of its own to the database at `path` (already migrated) and starts the
/// writer thread on it.
pub(super) fn spawn(path: &Path) -> Result<Writes, StoreError> {
    let conn = Connection::open(path).map_err(failed)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(failed)?;
    conn.pragma_update(None, "journal_mode", "wal")
        .map_err(failed)?;
    conn.pragma_update(None, "synchronous", "normal")
        .map_err(failed)?;
    conn.set_prepared_statement_cache_capacity(32);
    let (tx, rx) = handoff();
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, rx))
        .map_err(|e| StoreError::Batch(format!("cannot start the store writer: {e}")))?;
    Ok(Writes::Thread(tx))
}

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Batch(e.to_string())
}

/// Takes what waits (up to `WRITE_BATCH`), applies it in one transaction, answers each
/// caller; until every sender is gone. A batch of lazy writes only waits up to
/// `LAZY_WRITE_DELAY` for more, and no longer than the first write someone waits for.
fn run(mut conn: Connection, rx: Receiver) {
    let sql = Sql::new();
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while rx.next_batch(LAZY_WRITE_DELAY, &mut batch) {
        let (writes, replies): (Vec<Write>, Vec<_>) = batch.drain(..).unzip();
        answer(replies, apply(&mut conn, &sql, &writes));
    }
}

/// The writes in one transaction, each after the one before it; one answer per write.
fn apply(conn: &mut Connection, sql: &Sql, writes: &[Write]) -> rusqlite::Result<Vec<Written>> {
    // IMMEDIATE: the write lock is taken at the start, never upgraded mid-transaction (an
    // upgrade that another writer blocks fails at once instead of waiting).
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        out.push(match w {
            Write::Keep {
                rows, max_per_user, ..
            } => {
                // Each insert answers its row's seq: only a user whose newest seq is past the
                // bound has rows to drop, those at or below newest - bound.
                let mut insert = tx.prepare_cached(&sql.inbox_insert)?;
                let mut newest: Vec<(&str, i64)> = Vec::with_capacity(rows.len());
                for r in rows {
                    let seq: Option<i64> = insert
                        .query_row(params![r.user_id, r.id, r.payload], |row| row.get(0))
                        .optional()?;
                    if let Some(seq) = seq {
                        newest.push((r.user_id.as_str(), seq));
                    }
                }
                let keep = i64::try_from(*max_per_user).unwrap_or(i64::MAX);
                newest.sort_unstable_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
                newest.dedup_by(|later, first| later.0 == first.0);
                let mut trim = tx.prepare_cached(sql.inbox_trim)?;
                for (user, seq) in newest {
                    if seq > keep {
                        trim.execute(params![user, seq - keep])?;
                    }
                }
                Written::Kept
            }
            Write::Put(p) => {
                let mut insert = tx.prepare_cached(&sql.put)?;
                let mut stored = Vec::new();
                for r in &p.rows {
                    let n = insert.execute(params![
                        p.id,
                        r.device_id,
                        r.user_id,
                        r.token,
                        r.platform,
                        r.provider,
                        r.app,
                        p.due_at,
                        p.created_at,
                        p.deadline_at,
                        p.claim,
                        p.payload
                    ])?;
                    if n > 0 {
                        stored.push(r.device_id.clone());
                    }
                }
                if !stored.is_empty() {
                    let count = i64::try_from(stored.len()).unwrap_or(i64::MAX);
                    tx.prepare_cached(&sql.batch)?
                        .execute(params![p.id, count])?;
                }
                Written::Stored(stored)
            }
            Write::Change(Change::Finish {
                id,
                device_id,
                claim,
                accepted,
            }) => {
                let removed = tx
                    .prepare_cached(&sql.delete)?
                    .execute(params![id, device_id, claim])?;
                let finished = if removed == 0 {
                    Finished::Lost
                } else {
                    let left: Option<(i64, i64)> = tx
                        .prepare_cached(&sql.count_down)?
                        .query_row(params![id, i64::from(*accepted)], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()?;
                    let finished = finished_one(left, *accepted);
                    if matches!(finished, Finished::Last { .. }) {
                        tx.prepare_cached(&sql.delete_batch)?.execute(params![id])?;
                    }
                    finished
                };
                Written::Applied(Applied::Finished(finished))
            }
            Write::Change(Change::Retry {
                id,
                device_id,
                claim,
                due_at,
                attempts,
                error,
            }) => {
                let n = tx
                    .prepare_cached(&sql.retry)?
                    .execute(params![id, device_id, claim, due_at, attempts, error])?;
                Written::Applied(Applied::Retried(n > 0))
            }
            Write::Claim {
                claim,
                now,
                lease_end,
                limit,
            } => {
                let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
                let mut stmt = tx.prepare_cached(&sql.claim)?;
                let rows = stmt
                    .query_map(params![claim, lease_end, now, limit], queue_row)?
                    .collect::<rusqlite::Result<Vec<QueueRow>>>()?;
                Written::Claimed(rows)
            }
        });
    }
    tx.commit()?;
    Ok(out)
}

/// A row of `CLAIM`'s `RETURNING`, in its column order.
fn queue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    Ok(QueueRow {
        notification_id: r.get(0)?,
        device_id: r.get(1)?,
        user_id: r.get(2)?,
        token: r.get(3)?,
        platform: r.get(4)?,
        provider: r.get(5)?,
        app: r.get(6)?,
        attempts: r.get(7)?,
        created_at: r.get(8)?,
        deadline_at: r.get(9)?,
        last_error: r.get(10)?,
        payload: r.get(11)?,
    })
}
