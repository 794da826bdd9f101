//! Persistent state behind sqlx: the device registry, and on one node the durable push queue
//! and the users' inboxes. SQLite by default, PostgreSQL for several
//! nodes, chosen by the URL scheme; migrations per dialect under `migrations/`.
//!
//! A SQLite database belongs to one node, so its device lists are also cached in memory
//! (`devices::DeviceCache`): the FCM path reads them on every notification for an offline user.
//! A PostgreSQL database is shared by the nodes, each of which may change it: read every time.

mod devices;
mod handoff;
pub(crate) mod inbox;
mod push_queue;
mod sqlite_writer;
mod writer;

pub use devices::{app_column, app_from_column, Device, Platform, ProviderKind, Registration};
pub use inbox::InboxRow;
use push_queue::NewSends;
pub use push_queue::{Applied, Change, Finished, NewRow, NewSends as NewRows, QueueRow};
pub use writer::{Then, Write, Written, LAZY_WRITE_DELAY};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Registering one more device would pass `devices.max_per_user`.
    #[error("a user may register at most {0} devices")]
    TooManyDevices(usize),
    /// The writer's batch holding this write failed (each of its writes gets the error).
    #[error("store: {0}")]
    Batch(String),
    #[error("store: the writer stopped")]
    WriterStopped,
}

/// A connection pool of either dialect. Queries are written once (`$N` placeholders work in
/// both) and run on whichever pool this is.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// SQLite only.
    devices: Option<Arc<devices::DeviceCache>>,
    /// Most devices one user may register (`devices.max_per_user`).
    max_devices_per_user: usize,
    /// The writer (`writer`), for every store but its own.
    writes: Option<writer::Writes>,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool; the body is compiled once per dialect.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Whether a `sqlite:` URL names an in-memory database.
fn in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The file a `sqlite:` URL names.
fn options_filename(url: &str) -> Result<std::path::PathBuf, StoreError> {
    Ok(SqliteConnectOptions::from_str(url)?
        .get_filename()
        .to_path_buf())
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            let store = Store::without_writer(Pool::Postgres(pool), None);
            Ok(Store {
                writes: Some(writer::spawn(store.clone())),
                ..store
            })
        } else {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                // sqlx hands a statement's rows over from its SQLite thread through a channel
                // of this many: room for a whole multi-row RETURNING (the push queue's) spares
                // that thread a wait, and a wake-up, per 50 rows.
                .row_buffer_size(4096);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                // A ping per acquire is a round trip to the connection's thread; an in-process
                // database does not go away between two uses.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            let store = Store::without_writer(Pool::Sqlite(pool), Some(Arc::default()));
            // A file gets a writer thread on a connection of its own; an in-memory database
            // exists only behind the pool's connections, so its writes go through them.
            let writes = if in_memory(url) {
                writer::spawn(store.clone())
            } else {
                sqlite_writer::spawn(options_filename(url)?.as_path())?
            };
            Ok(Store {
                writes: Some(writes),
                ..store
            })
        }
    }

    /// A store that applies its writes itself (the writer's own).
    fn without_writer(pool: Pool, devices: Option<Arc<devices::DeviceCache>>) -> Store {
        Store {
            pool,
            devices,
            max_devices_per_user: usize::MAX,
            writes: None,
        }
    }

    /// Caps the devices of each user (unlimited until called).
    pub fn limit_devices_per_user(mut self, max: usize) -> Store {
        self.max_devices_per_user = max;
        self
    }

    /// Answers when the database does (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}
