//! The device registry: which FCM tokens reach a user when no stream does.
//!
//! A user has at most `devices.max_per_user` devices, checked inside the registering
//! transaction, so the cap is exact with any number of nodes and concurrent registrations:
//! on PostgreSQL the transaction first takes an advisory lock keyed by the user (registrations
//! of one user run one at a time, and each counts what the previous one committed); on SQLite
//! the transaction's first statement is a write, so it holds the database's single write lock
//! before it counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::{on_pool, Pool, Store, StoreError};

/// Most users whose device lists a node caches; past it the cache starts over.
const CACHE_USERS: usize = 200_000;

/// Each user's device list (empty ones too: users who never registered a device), as the
/// database last returned it. Every write to the devices table drops the lists it touches.
/// `epoch` counts those writes: a list read from the database is cached only if no write
/// happened meanwhile, or it could put back what a concurrent write just dropped.
#[derive(Default)]
pub(super) struct DeviceCache {
    users: DashMap<String, Arc<[Device]>, foldhash::fast::RandomState>,
    epoch: AtomicU64,
}

impl DeviceCache {
    fn get(&self, user_id: &str) -> Option<Arc<[Device]>> {
        self.users.get(user_id).map(|d| d.clone())
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches what was read from the database at `epoch`, unless a write came since.
    fn fill(&self, user_id: &str, devices: &[Device], epoch: u64) {
        if self.users.len() >= CACHE_USERS {
            self.users.clear();
        }
        // Checked under the entry's lock, which `dropped` also takes after counting its write.
        let entry = self.users.entry(user_id.to_string());
        if self.epoch() == epoch {
            entry.insert(devices.into());
        }
    }

    /// A write changed these users' devices (after it committed).
    fn dropped<'a>(&self, users: impl IntoIterator<Item = &'a str>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for user in users {
            self.users.remove(user);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Android,
    Web,
    Ios,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Android => "android",
            Platform::Web => "web",
            Platform::Ios => "ios",
        }
    }

    pub fn parse(s: &str) -> Platform {
        match s {
            "web" => Platform::Web,
            "ios" => Platform::Ios,
            _ => Platform::Android,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub device_id: String,
    pub user_id: String,
    pub platform: Platform,
    /// Never shown to clients: it is a credential for pushing to the device.
    #[serde(skip)]
    pub token: String,
    /// Unix ms.
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    user_id: String,
    device_id: String,
    fcm_token: String,
    platform: String,
    updated_at: i64,
}

impl From<DeviceRow> for Device {
    fn from(r: DeviceRow) -> Device {
        Device {
            device_id: r.device_id,
            user_id: r.user_id,
            platform: Platform::parse(&r.platform),
            token: r.fcm_token,
            updated_at: r.updated_at,
        }
    }
}

const UPSERT: &str = "INSERT INTO devices (user_id, device_id, fcm_token, platform, updated_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (user_id, device_id) DO UPDATE SET fcm_token = excluded.fcm_token, \
     platform = excluded.platform, updated_at = excluded.updated_at";
/// A token belongs to one app install: registering it elsewhere retires the older row.
const RETIRE_TOKEN: &str = "DELETE FROM devices WHERE fcm_token = $1 \
     AND NOT (user_id = $2 AND device_id = $3) RETURNING user_id";
/// PostgreSQL: serialises the registrations of one user until the transaction ends. The
/// two-key form keeps these locks apart from single-key ones (sqlx's migration lock); the first
/// key says "Switchboard devices", the second is the user's hash (a collision only makes two
/// users wait for each other).
const LOCK_USER: &str = "SELECT pg_advisory_xact_lock(1399087972, hashtext($1))";
/// The user's devices, and whether `$2` is one of them.
const COUNT: &str =
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN device_id = $2 THEN 1 ELSE 0 END), 0) \
     FROM devices WHERE user_id = $1";
const BY_USER: &str = "SELECT user_id, device_id, fcm_token, platform, updated_at FROM devices \
     WHERE user_id = $1 ORDER BY device_id";
const DELETE: &str = "DELETE FROM devices WHERE user_id = $1 AND device_id = $2";
const DELETE_TOKEN: &str = "DELETE FROM devices WHERE fcm_token = $1 RETURNING user_id";

impl Store {
    /// Registers (or re-registers, replacing the token) a device of `user_id`; a new device
    /// past the user's cap is refused with [`StoreError::TooManyDevices`].
    pub async fn upsert_device(
        &self,
        user_id: &str,
        device_id: &str,
        fcm_token: &str,
        platform: Platform,
    ) -> Result<Device, StoreError> {
        let now = crate::time::unix_millis() as i64;
        let lock = matches!(self.pool, Pool::Postgres(_)).then_some(LOCK_USER);
        let max = self.max_devices_per_user;
        let retired: Vec<(String,)> = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some(lock) = lock {
                sqlx::query(lock).bind(user_id).execute(&mut *tx).await?;
            }
            let retired = sqlx::query_as(RETIRE_TOKEN)
                .bind(fcm_token)
                .bind(user_id)
                .bind(device_id)
                .fetch_all(&mut *tx)
                .await?;
            let (count, known): (i64, i64) = sqlx::query_as(COUNT)
                .bind(user_id)
                .bind(device_id)
                .fetch_one(&mut *tx)
                .await?;
            if known == 0 && usize::try_from(count).unwrap_or(usize::MAX) >= max {
                // Dropping the transaction rolls back the retired token too.
                return Err(StoreError::TooManyDevices(max));
            }
            sqlx::query(UPSERT)
                .bind(user_id)
                .bind(device_id)
                .bind(fcm_token)
                .bind(platform.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            retired
        });
        if let Some(cache) = &self.devices {
            cache.dropped(retired.iter().map(|r| r.0.as_str()).chain([user_id]));
        }
        Ok(Device {
            device_id: device_id.to_string(),
            user_id: user_id.to_string(),
            platform,
            token: fcm_token.to_string(),
            updated_at: now,
        })
    }

    /// Removes one device of `user_id`; false if there was none.
    pub async fn delete_device(&self, user_id: &str, device_id: &str) -> Result<bool, StoreError> {
        let affected = on_pool!(self, pool => sqlx::query(DELETE)
            .bind(user_id)
            .bind(device_id)
            .execute(pool)
            .await?
            .rows_affected());
        if let Some(cache) = &self.devices {
            cache.dropped([user_id]);
        }
        Ok(affected > 0)
    }

    /// The user's devices, by device id.
    pub async fn devices_for_user(&self, user_id: &str) -> Result<Vec<Device>, StoreError> {
        let epoch = match &self.devices {
            Some(cache) => match cache.get(user_id) {
                Some(devices) => return Ok(devices.to_vec()),
                None => cache.epoch(),
            },
            None => 0,
        };
        let rows: Vec<DeviceRow> = on_pool!(self, pool => sqlx::query_as(BY_USER)
            .bind(user_id)
            .fetch_all(pool)
            .await?);
        let devices: Vec<Device> = rows.into_iter().map(Device::from).collect();
        if let Some(cache) = &self.devices {
            cache.fill(user_id, &devices, epoch);
        }
        Ok(devices)
    }

    /// Forgets a token FCM called UNREGISTERED; returns how many rows had it.
    pub async fn delete_token(&self, fcm_token: &str) -> Result<u64, StoreError> {
        let users: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(DELETE_TOKEN)
            .bind(fcm_token)
            .fetch_all(pool)
            .await?);
        if let Some(cache) = &self.devices {
            cache.dropped(users.iter().map(|u| u.0.as_str()));
        }
        Ok(users.len() as u64)
    }
}
