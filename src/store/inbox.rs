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
/// `$keep` (`i64`) of each user touched (the newest): one multi-row statement each, whatever
/// the number of users. A macro because the transaction's dialect is only known inside
/// `on_pool!` (the store writer's batch, `Store::write_batch`).
macro_rules! keep_in_inbox {
    ($tx:ident, $rows:expr, $keep:expr) => {{
        let rows: &[$crate::store::InboxRow] = $rows;
        for chunk in rows.chunks($crate::store::inbox::ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::new($crate::store::inbox::INSERT);
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.user_id.as_str())
                    .push_bind(r.id.as_str())
                    .push_bind(r.payload.as_str());
            });
            qb.push($crate::store::inbox::INSERT_TAIL);
            qb.build().execute(&mut *$tx).await?;
        }
        let mut users: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        for chunk in users.chunks($crate::store::inbox::ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::new($crate::store::inbox::TRIM_HEAD);
            let mut list = qb.separated(", ");
            for user in chunk {
                list.push_bind(*user);
            }
            qb.push($crate::store::inbox::TRIM_MIDDLE);
            qb.push_bind($keep);
            qb.push(")");
            qb.build().execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use keep_in_inbox;

pub(crate) const INSERT: &str = "INSERT INTO inbox (user_id, id, payload) ";
pub(crate) const INSERT_TAIL: &str = " ON CONFLICT (user_id, id) DO NOTHING";
// Every row of the users touched past their newest `keep`: the ranks come from the
// (user_id, id) primary key, in one statement for all of them.
pub(crate) const TRIM_HEAD: &str = "DELETE FROM inbox WHERE (user_id, id) IN (SELECT user_id, id \
     FROM (SELECT user_id, id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY id DESC) AS pos \
     FROM inbox WHERE user_id IN (";
pub(crate) const TRIM_MIDDLE: &str = ")) ranked WHERE pos > ";

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
