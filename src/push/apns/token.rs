//! The provider token: an ES256 JWT (`kid` = key id, `iss` = team id, `iat`) signed with the
//! team's `.p8` key. APNs refuses one older than an hour and answers
//! `TooManyProviderTokenUpdates` when a connection changes tokens more often than every 20
//! minutes, so one token serves every send for `apns.token_refresh_secs`; a token APNs calls
//! expired (`ExpiredProviderToken`, a clock skew) is replaced once, by whichever send sees it
//! first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

struct Signed {
    jwt: Arc<str>,
    at: Instant,
}

pub struct ProviderTokens {
    key: EncodingKey,
    header: Header,
    team_id: String,
    refresh: Duration,
    current: RwLock<Option<Signed>>,
    signed: Counter,
}

impl ProviderTokens {
    pub fn new(
        key: EncodingKey,
        key_id: &str,
        team_id: &str,
        refresh: Duration,
        signed: Counter,
    ) -> ProviderTokens {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key_id.to_string());
        ProviderTokens {
            key,
            header,
            team_id: team_id.to_string(),
            refresh,
            current: RwLock::new(None),
            signed,
        }
    }

    /// The token to send with: the current one while it is younger than the refresh interval.
    pub fn current(&self) -> Result<Arc<str>, jsonwebtoken::errors::Error> {
        if let Some(s) = self.current.read().as_ref().filter(|s| self.fresh(s)) {
            return Ok(s.jwt.clone());
        }
        let mut current = self.current.write();
        // Another send may have signed one while this one waited for the lock.
        if let Some(s) = current.as_ref().filter(|s| self.fresh(s)) {
            return Ok(s.jwt.clone());
        }
        self.sign_into(&mut current)
    }

    /// APNs called `used` expired: a new token, unless another send already replaced it.
    pub fn renew(&self, used: &Arc<str>) -> Result<Arc<str>, jsonwebtoken::errors::Error> {
        let mut current = self.current.write();
        if let Some(s) = current.as_ref().filter(|s| !Arc::ptr_eq(&s.jwt, used)) {
            return Ok(s.jwt.clone());
        }
        self.sign_into(&mut current)
    }

    fn fresh(&self, s: &Signed) -> bool {
        s.at.elapsed() < self.refresh
    }

    fn sign_into(
        &self,
        slot: &mut Option<Signed>,
    ) -> Result<Arc<str>, jsonwebtoken::errors::Error> {
        let claims = Claims {
            iss: &self.team_id,
            iat: crate::time::unix_millis() / 1000,
        };
        let jwt: Arc<str> = jsonwebtoken::encode(&self.header, &claims, &self.key)?.into();
        self.signed.inc();
        *slot = Some(Signed {
            jwt: jwt.clone(),
            at: Instant::now(),
        });
        Ok(jwt)
    }
}
