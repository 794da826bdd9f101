//! The device registry: which FCM tokens reach a user when no stream does.

use serde::{Deserialize, Serialize};

use super::{on_pool, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Android,
    Web,
    Ios,
}

impl Platform {
    fn as_str(self) -> &'static str {
        match self {
            Platform::Android => "android",
            Platform::Web => "web",
            Platform::Ios => "ios",
        }
    }

    fn parse(s: &str) -> Platform {
        match s {
            "web" => Platform::Web,
            "ios" => Platform::Ios,
            _ => Platform::Android,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub device_id: String,
    pub user_id: String,
    pub platform: Platform,
    /// Never shown to clients: it is a credential for pushing to the device.
    #[serde(skip)]
    pub fcm_token: String,
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
            fcm_token: r.fcm_token,
            updated_at: r.updated_at,
        }
    }
}

const UPSERT: &str = "INSERT INTO devices (user_id, device_id, fcm_token, platform, updated_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (user_id, device_id) DO UPDATE SET fcm_token = excluded.fcm_token, \
     platform = excluded.platform, updated_at = excluded.updated_at";
/// A token belongs to one app install: registering it elsewhere retires the older row.
const RETIRE_TOKEN: &str =
    "DELETE FROM devices WHERE fcm_token = $1 AND NOT (user_id = $2 AND device_id = $3)";
const BY_USER: &str = "SELECT user_id, device_id, fcm_token, platform, updated_at FROM devices \
     WHERE user_id = $1 ORDER BY device_id";
const DELETE: &str = "DELETE FROM devices WHERE user_id = $1 AND device_id = $2";
const DELETE_TOKEN: &str = "DELETE FROM devices WHERE fcm_token = $1";

impl Store {
    /// Registers (or re-registers, replacing the token) a device of `user_id`.
    pub async fn upsert_device(
        &self,
        user_id: &str,
        device_id: &str,
        fcm_token: &str,
        platform: Platform,
    ) -> Result<Device, StoreError> {
        let now = crate::time::unix_millis() as i64;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(RETIRE_TOKEN)
                .bind(fcm_token)
                .bind(user_id)
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(UPSERT)
                .bind(user_id)
                .bind(device_id)
                .bind(fcm_token)
                .bind(platform.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(Device {
            device_id: device_id.to_string(),
            user_id: user_id.to_string(),
            platform,
            fcm_token: fcm_token.to_string(),
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
        Ok(affected > 0)
    }

    pub async fn devices_for_user(&self, user_id: &str) -> Result<Vec<Device>, StoreError> {
        let rows: Vec<DeviceRow> = on_pool!(self, pool => sqlx::query_as(BY_USER)
            .bind(user_id)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(Device::from).collect())
    }

    /// Forgets a token FCM called UNREGISTERED; returns how many rows had it.
    pub async fn delete_token(&self, fcm_token: &str) -> Result<u64, StoreError> {
        let affected = on_pool!(self, pool => sqlx::query(DELETE_TOKEN)
            .bind(fcm_token)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(affected)
    }
}
