//! apns-mock, started in-process (HTTP/2 with prior knowledge) with a fresh `.p8` key, and the
//! router configuration that points `[apns]` (or an app's) at it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct ApnsMock {
    handle: Option<apns_mock::MockHandle>,
    pub url: String,
    pub key_path: PathBuf,
    pub key_id: String,
    pub team_id: String,
    http: reqwest::Client,
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
        ApnsMock {
            url: handle.url(),
            handle: Some(handle),
            key_path,
            key_id: key.key_id,
            team_id,
            http: reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap(),
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

    pub async fn messages(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/_mock/messages", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until at least `n` messages were recorded.
    pub async fn wait_messages(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let m = self.messages().await;
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn control(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}/_mock/{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "apns-mock /_mock/{path}: {}",
            r.status()
        );
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_mock/stats", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
