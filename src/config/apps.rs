//! Several apps per instance: the top-level `[fcm]`, `[apns]` and `[webpush]` sections (and `push.private`)
//! are the default app; each `[[apps]]` entry adds one with its own credentials. A device
//! belongs to one app and is sent to only with that app's credentials.

use serde::Deserialize;

use super::{ApnsConfig, Config, FcmConfig, WebPushConfig};
use crate::ids::AppId;

/// One `[[apps]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub id: AppId,
    /// Its Firebase project; the sender's bounds (`max_in_flight`, backoff, timeouts) are the
    /// top-level `[fcm]` ones.
    #[serde(default)]
    pub fcm: Option<AppFcmConfig>,
    #[serde(default)]
    pub apns: Option<ApnsConfig>,
    /// Its VAPID identity; the request timeout and token lifetime are the top-level
    /// `[webpush]` ones.
    #[serde(default)]
    pub webpush: Option<AppWebPushConfig>,
    /// Its pushes carry only the notification id.
    #[serde(default)]
    pub private: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppFcmConfig {
    pub project_id: String,
    pub service_account: String,
    /// Default: the top-level `fcm.endpoint`.
    #[serde(default)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppWebPushConfig {
    pub vapid_private_key: String,
    pub subject: String,
}

/// One app's providers, resolved: what `push::start` builds.
#[derive(Debug, Clone)]
pub struct AppProviders {
    /// `None`: the default app.
    pub id: Option<AppId>,
    pub fcm: Option<FcmConfig>,
    pub apns: Option<ApnsConfig>,
    pub webpush: Option<WebPushConfig>,
    pub private: bool,
}

impl Config {
    /// The default app, then each `[[apps]]` entry, with only the providers they configure.
    pub fn apps(&self) -> Vec<AppProviders> {
        let default = AppProviders {
            id: None,
            fcm: self.fcm_enabled().then(|| self.fcm.clone()),
            apns: self.apns.enabled().then(|| self.apns.clone()),
            webpush: self.webpush_enabled().then(|| self.webpush.clone()),
            private: self.push.private,
        };
        let extra = self.extra_apps.iter().map(|app| AppProviders {
            id: Some(app.id.clone()),
            fcm: app.fcm.as_ref().map(|f| FcmConfig {
                project_id: f.project_id.clone(),
                service_account: f.service_account.clone(),
                endpoint: f
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| self.fcm.endpoint.clone()),
                ..self.fcm.clone()
            }),
            apns: app.apns.clone().filter(ApnsConfig::enabled),
            webpush: app.webpush.as_ref().map(|w| WebPushConfig {
                vapid_private_key: w.vapid_private_key.clone(),
                subject: w.subject.clone(),
                ..self.webpush.clone()
            }),
            private: app.private,
        });
        std::iter::once(default).chain(extra).collect()
    }

    /// Whether any app has a push provider.
    pub fn push_enabled(&self) -> bool {
        self.apps()
            .iter()
            .any(|a| a.fcm.is_some() || a.apns.is_some() || a.webpush.is_some())
    }

    pub(super) fn validate_apps(&self, errors: &mut Vec<String>) {
        self.apns.validate("apns", errors);
        let mut seen = std::collections::HashSet::new();
        for (i, app) in self.extra_apps.iter().enumerate() {
            let section = format!("apps[{i}] ({})", app.id);
            if !seen.insert(app.id.as_str()) {
                errors.push(format!("{section}: the id is used twice"));
            }
            if let Some(fcm) = &app.fcm {
                if fcm.project_id.is_empty() || fcm.service_account.trim().is_empty() {
                    errors.push(format!(
                        "{section}.fcm needs project_id and service_account"
                    ));
                } else if let Err(e) =
                    super::read_capped(std::path::Path::new(fcm.service_account.trim()))
                        .map_err(std::io::Error::other)
                        .and_then(yup_oauth2::parse_service_account_key)
                {
                    errors.push(format!(
                        "{section}.fcm.service_account: {:?} is not a readable service-account JSON key: {e}",
                        fcm.service_account.trim()
                    ));
                }
            }
            if let Some(apns) = &app.apns {
                apns.validate(&format!("{section}.apns"), errors);
            }
            if let Some(webpush) = &app.webpush {
                if webpush.vapid_private_key.trim().is_empty() {
                    errors.push(format!("{section}.webpush needs vapid_private_key"));
                } else {
                    let resolved = WebPushConfig {
                        vapid_private_key: webpush.vapid_private_key.clone(),
                        subject: webpush.subject.clone(),
                        ..self.webpush.clone()
                    };
                    resolved.validate(&format!("{section}.webpush"), errors);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<Config, String> {
        Config::from_layers(toml, Vec::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_top_level_sections_are_the_default_app_and_each_apps_entry_adds_one() {
        let cfg = load(
            "[push]\nprivate = true\n[[apps]]\nid = \"shop\"\nprivate = false\n[[apps]]\nid = \"news\"\n",
        )
        .unwrap();
        let apps = cfg.apps();
        let ids: Vec<Option<&str>> = apps.iter().map(|a| a.id.as_deref()).collect();
        assert_eq!(ids, [None, Some("shop"), Some("news")]);
        assert!(apps[0].private && !apps[1].private);
        // Nothing configured: no provider anywhere.
        assert!(apps.iter().all(|a| a.fcm.is_none() && a.apns.is_none()));
        assert!(!cfg.push_enabled());
    }

    #[test]
    fn broken_app_sections_are_refused_with_where_they_are() {
        let err = load("[apns]\nkey_path = \"/nonexistent/AuthKey.p8\"\n").unwrap_err();
        assert!(
            err.contains("apns.key_path") && err.contains("cannot read"),
            "{err}"
        );
        assert!(
            err.contains("apns.key_id") && err.contains("apns.topic"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.p8");
        std::fs::write(&key, "not a key").unwrap();
        let toml = format!(
            "[[apps]]\nid = \"shop\"\n[apps.apns]\nkey_path = {:?}\nkey_id = \"SHORT\"\nteam_id = \"TEAM123456\"\ntopic = \"com.example\"\n\
             [[apps]]\nid = \"shop\"\n[apps.fcm]\nproject_id = \"p\"\nservice_account = \"/nonexistent.json\"\n",
            key.display().to_string()
        );
        let err = load(&toml).unwrap_err();
        assert!(
            err.contains("apps[0] (shop).apns.key_path") && err.contains("PKCS#8"),
            "{err}"
        );
        assert!(err.contains("apps[0] (shop).apns.key_id"), "{err}");
        assert!(
            err.contains("apps[1] (shop): the id is used twice"),
            "{err}"
        );
        assert!(err.contains("apps[1] (shop).fcm.service_account"), "{err}");

        let err = load("[[apps]]\nid = \"a b\"\n").unwrap_err();
        assert!(err.contains("app must be"), "{err}");
    }
}
