//! apns-mock, started in-process (HTTP/2 with prior knowledge) with a fresh `.p8` key, and the
//! router configuration that points `[apns]` (or an app's) at it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::mock_api::MockApi;

pub struct ApnsMock {
    handle: Option<apns_mock::MockHandle>,
    api: MockApi,
    pub key_path: PathBuf,
    pub key_id: String,
    pub team_id: String,
}

impl std::ops::Deref for ApnsMock {
    type Target = MockApi;
    fn deref(&self) -> &MockApi {
        &self.api
    }
}

impl ApnsMock {
    /// A mock that delivers to `topics`, and accepts a new provider token on a connection
    /// `token_interval` after the last (Apple: 20 minutes).
    pub async fn start(dir: &Path, topics: &[&str], token_interval: Duration) -> ApnsMock {
        let key = apns_mock::generate_auth_key().unwrap();
        let team_id = apns_mock::random_apple_id();
        let key_path = dir.join(format!("AuthKey_{}.p8", key.key_id));
        std::fs::write(&key_path, &key.p8_pem).unwrap();
        let provider_key =
            apns_mock::ProviderKey::from_pem(&key.p8_pem, &key.key_id, &team_id).unwrap();
        let mut config =
            apns_mock::Config::new(provider_key, topics.iter().map(|t| t.to_string()).collect());
        config.token_update_interval = token_interval;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = apns_mock::spawn(listener, config).await.unwrap();
        // apns-mock speaks HTTP/2 only, its controls too.
        let http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        ApnsMock {
            api: MockApi::new("apns-mock", handle.url(), http),
            handle: Some(handle),
            key_path,
            key_id: key.key_id,
            team_id,
        }
    }

    /// `SWITCHBOARD__APNS__*` for the default app, with `topic`.
    pub fn env(&self, topic: &str) -> Vec<(String, String)> {
        [
            ("KEY_PATH", self.key_path.display().to_string()),
            ("KEY_ID", self.key_id.clone()),
            ("TEAM_ID", self.team_id.clone()),
            ("TOPIC", topic.to_string()),
            ("ENDPOINT", self.url.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("SWITCHBOARD__APNS__{k}"), v))
        .collect()
    }

    /// The body of an `[apns]` or `[apps.apns]` section, with `topic`.
    pub fn toml(&self, topic: &str) -> String {
        format!(
            "key_path = {:?}\nkey_id = {:?}\nteam_id = {:?}\ntopic = {topic:?}\nendpoint = {:?}\n",
            self.key_path.display().to_string(),
            self.key_id,
            self.team_id,
            self.url
        )
    }
}

impl Drop for ApnsMock {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(h.shutdown());
            }
        }
    }
}
