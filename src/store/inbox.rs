//! The per-user inbox's SQL side (one node). `inbox::sql` puts it behind the inbox's engine
//! trait; what the inbox keeps and for how long is documented there.

use super::{on_pool, Store, StoreError};

/// Rows per multi-row INSERT (SQLite allows 32 766 bound parameters; three per row).
pub(crate) const ROWS_PER_STATEMENT: usize = 300;

/// One notification to keep: its user, id and client JSON.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub user_id: String,
    pub id: String,
    pub payload: String,
}

/// Stores `$rows` (`&[InboxRow]`) within the open transaction `$tx`, then keeps at most
/// `$keep` (`i64`) of each user touched (the newest). A macro because the transaction's
/// dialect is only known inside `on_pool!` (the store writer's batch, `Store::write_batch`).
macro_rules! keep_in_inbox {
    ($tx:ident, $rows:expr, $keep:expr) => {{
        let rows: &[$crate::store::InboxRow] = $rows;
        for chunk in rows.chunks($crate::store::inbox::ROWS_PER_STATEMENT) {
            let places = $crate::store::inbox::places(chunk);
            let mut qb = sqlx::QueryBuilder::new($crate::store::inbox::INSERT_MANY_HEAD);
            qb.push_values(chunk.iter().zip(places), |mut b, (r, place)| {
                b.push_bind(r.user_id.as_str())
                    .push_bind(r.id.as_str())
                    .push_bind(r.payload.as_str())
                    .push_bind(place);
            });
            qb.push($crate::store::inbox::INSERT_MANY_TAIL);
            qb.build().execute(&mut *$tx).await?;
        }
        let mut users: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        for user in users {
            sqlx::query($crate::store::inbox::TRIM)
                .bind(user)
                .bind($keep)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(crate) use keep_in_inbox;

/// Each row's place among the rows of its user in `rows` (1, 2...): added to the user's
/// largest `seq` so far, it numbers a batch's rows in order.
pub(crate) fn places(rows: &[InboxRow]) -> Vec<i64> {
    let mut seen: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    rows.iter()
        .map(|r| {
            let n = seen.entry(r.user_id.as_str()).or_insert(0);
            *n += 1;
            *n
        })
        .collect()
}

// Rows numbered after the user's largest `seq` (one probe of `inbox_seq`): the CTE names the
// columns of `VALUES` in both dialects, and SQLite needs the `WHERE` to read `ON CONFLICT` as
// the upsert's. The subquery sees the table as it was before the statement.
pub(crate) const INSERT_MANY_HEAD: &str = "WITH v (user_id, id, payload, place) AS (";
pub(crate) const INSERT_MANY_TAIL: &str = ") INSERT INTO inbox (user_id, id, payload, seq) \
     SELECT v.user_id, v.id, v.payload, \
     COALESCE((SELECT MAX(i.seq) FROM inbox i WHERE i.user_id = v.user_id), 0) + v.place \
     FROM v WHERE true ON CONFLICT (user_id, id) DO NOTHING";
/// One row, numbered after its user's largest `seq` ($1 user, $2 id, $3 payload).
pub(crate) const INSERT_ONE: &str = "INSERT INTO inbox (user_id, id, payload, seq) \
     SELECT $1, $2, $3, COALESCE((SELECT MAX(seq) FROM inbox WHERE user_id = $1), 0) + 1 \
     WHERE true ON CONFLICT (user_id, id) DO NOTHING";
/// Every row of user $1 but the newest $2: an index range from the user's oldest row, so a
/// trim costs what it deletes (usually one row) plus one probe.
pub(crate) const TRIM: &str = "DELETE FROM inbox WHERE user_id = $1 \
     AND seq <= (SELECT MAX(seq) FROM inbox WHERE user_id = $1) - $2";

impl Store {
    /// Up to `limit` notifications of `user` with ids above `after` and not below `since`:
    /// the oldest of them with `after`, the newest without; oldest first either way.
    pub async fn inbox_page(
        &self,
        user: &str,
        after: Option<&str>,
        since: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(String, String)> = match after {
            Some(after) => on_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT id, payload FROM inbox WHERE user_id = $1 AND id > $2 AND id >= $3 \
                     ORDER BY id LIMIT $4",
                )
                .bind(user)
                .bind(after)
                .bind(since)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }),
            None => {
                let mut newest: Vec<(String, String)> = on_pool!(self, pool => {
                    sqlx::query_as(
                        "SELECT id, payload FROM inbox WHERE user_id = $1 AND id >= $2 \
                         ORDER BY id DESC LIMIT $3",
                    )
                    .bind(user)
                    .bind(since)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                });
                newest.reverse();
                newest
            }
        };
        Ok(rows)
    }

    /// One notification of `user`, if kept and not below `since`.
    pub async fn inbox_get(
        &self,
        user: &str,
        id: &str,
        since: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT payload FROM inbox WHERE user_id = $1 AND id = $2 AND id >= $3")
                .bind(user)
                .bind(id)
                .bind(since)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(p,)| p))
    }

    /// The newest id kept for `user`.
    pub async fn inbox_head(&self, user: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id FROM inbox WHERE user_id = $1 ORDER BY id DESC LIMIT 1")
                .bind(user)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(id,)| id))
    }

    /// Deletes every notification with an id below `before`; returns how many.
    pub async fn inbox_expire(&self, before: &str) -> Result<u64, StoreError> {
        let done = on_pool!(self, pool => {
            sqlx::query("DELETE FROM inbox WHERE id < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done)
    }
}
