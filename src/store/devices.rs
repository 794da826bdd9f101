//! The device registry: which push tokens (FCM, APNs, Web Push subscriptions) reach a user
//! when no stream does, each for one app.
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
use crate::ids::AppId;

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

/// The push service that reaches a device; the name is the one clients register with, and the
/// metrics' label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Fcm,
    Apns,
    Webpush,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 3] =
        [ProviderKind::Fcm, ProviderKind::Apns, ProviderKind::Webpush];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Fcm => "fcm",
            ProviderKind::Apns => "apns",
            ProviderKind::Webpush => "webpush",
        }
    }

    /// A stored name back; rows written before providers existed have `fcm`.
    pub fn parse(s: &str) -> ProviderKind {
        match s {
            "apns" => ProviderKind::Apns,
            "webpush" => ProviderKind::Webpush,
            _ => ProviderKind::Fcm,
        }
    }
}

/// The app a stored row belongs to: '' is the default app.
pub fn app_from_column(s: &str) -> Option<AppId> {
    if s.is_empty() {
        None
    } else {
        AppId::try_from(s).ok()
    }
}

pub fn app_column(app: Option<&AppId>) -> &str {
    app.map_or("", |a| a.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub device_id: String,
    pub user_id: String,
    pub platform: Platform,
    pub provider: ProviderKind,
    /// The app it belongs to; absent for the default app.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub app: Option<AppId>,
    /// Never shown to clients: it is a credential for pushing to the device.
    #[serde(skip)]
    pub token: String,
    /// Unix ms.
    pub updated_at: i64,
}

/// What a client registers for one of its devices (parsed from the request by `push`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub provider: ProviderKind,
    /// What the provider addresses: an FCM token, an APNs device token, or a Web Push
    /// subscription's canonical JSON.
    pub token: String,
    pub platform: Platform,
    pub app: Option<AppId>,
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    user_id: String,
    device_id: String,
    token: String,
    platform: String,
    provider: String,
    app: String,
    updated_at: i64,
}

impl From<DeviceRow> for Device {
    fn from(r: DeviceRow) -> Device {
        Device {
            device_id: r.device_id,
            user_id: r.user_id,
            platform: Platform::parse(&r.platform),
            provider: ProviderKind::parse(&r.provider),
            app: app_from_column(&r.app),
            token: r.token,
            updated_at: r.updated_at,
        }
    }
}

const UPSERT: &str =
    "INSERT INTO devices (user_id, device_id, token, platform, provider, app, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (user_id, device_id) DO UPDATE SET token = excluded.token, \
     platform = excluded.platform, provider = excluded.provider, app = excluded.app, \
     updated_at = excluded.updated_at";
/// A token belongs to one app install: registering it elsewhere retires the older row.
const RETIRE_TOKEN: &str = "DELETE FROM devices WHERE token = $1 AND provider = $4 \
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
const BY_USER: &str = "SELECT user_id, device_id, token, platform, provider, app, updated_at \
     FROM devices WHERE user_id = $1 ORDER BY device_id";
const DELETE: &str = "DELETE FROM devices WHERE user_id = $1 AND device_id = $2";
/// Only registrations older than `$3`: a device that registered the token again after the
/// provider saw it gone is a new install.
const DELETE_TOKEN: &str = "DELETE FROM devices WHERE token = $1 AND provider = $2 \
     AND updated_at < $3 RETURNING user_id";

impl Store {
    /// Registers (or re-registers, replacing the token) a device of `user_id`; a new device
    /// past the user's cap is refused with [`StoreError::TooManyDevices`].
    pub async fn upsert_device(
        &self,
        user_id: &str,
        device_id: &str,
        reg: &Registration,
    ) -> Result<Device, StoreError> {
        let app = app_column(reg.app.as_ref());
        let now = crate::time::unix_millis() as i64;
        let lock = matches!(self.pool, Pool::Postgres(_)).then_some(LOCK_USER);
        let max = self.max_devices_per_user;
        let retired: Vec<(String,)> = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some(lock) = lock {
                sqlx::query(lock).bind(user_id).execute(&mut *tx).await?;
            }
            let retired = sqlx::query_as(RETIRE_TOKEN)
                .bind(&reg.token)
                .bind(user_id)
                .bind(device_id)
                .bind(reg.provider.as_str())
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
                .bind(&reg.token)
                .bind(reg.platform.as_str())
                .bind(reg.provider.as_str())
                .bind(app)
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
            platform: reg.platform,
            provider: reg.provider,
            app: reg.app.clone(),
            token: reg.token.clone(),
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

    /// Forgets a token its provider called gone (registered before `gone_at`, unix ms, when
    /// the provider said since when); returns how many rows had it.
    pub async fn delete_token(
        &self,
        provider: ProviderKind,
        token: &str,
        gone_at: Option<i64>,
    ) -> Result<u64, StoreError> {
        let users: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(DELETE_TOKEN)
            .bind(token)
            .bind(provider.as_str())
            .bind(gone_at.unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?);
        if let Some(cache) = &self.devices {
            cache.dropped(users.iter().map(|u| u.0.as_str()));
        }
        Ok(users.len() as u64)
    }
}
