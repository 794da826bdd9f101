//! The per-user inbox's SQL side (one node). `inbox::sql` puts it behind the inbox's engine
//! trait; what the inbox keeps and for how long is documented there.

use super::{on_pool, Store, StoreError};

/// Rows per multi-row INSERT (SQLite allows 32 766 bound parameters; three per row).
const ROWS_PER_STATEMENT: usize = 300;

/// One notification to keep: its user, id and client JSON.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub user_id: String,
    pub id: String,
    pub payload: String,
}

impl Store {
    /// Stores `rows` in one transaction, then keeps at most `max_per_user` of each user
    /// touched (the newest).
    pub async fn inbox_append(
        &self,
        rows: &[InboxRow],
        max_per_user: usize,
    ) -> Result<(), StoreError> {
        let mut users: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let keep = i64::try_from(max_per_user).unwrap_or(i64::MAX);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut qb = sqlx::QueryBuilder::new("INSERT INTO inbox (user_id, id, payload) ");
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(r.user_id.as_str())
                        .push_bind(r.id.as_str())
                        .push_bind(r.payload.as_str());
                });
                qb.push(" ON CONFLICT (user_id, id) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            // An index seek per user: the row `keep` places below the newest, and all older.
            for user in users {
                sqlx::query(
                    "DELETE FROM inbox WHERE user_id = $1 AND id <= \
                     (SELECT id FROM inbox WHERE user_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
                )
                .bind(user)
                .bind(keep)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

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
