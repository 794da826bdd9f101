//! What the provider mocks (fcm-mock, apns-mock, webpush-mock) share over HTTP under
//! `/_mock/`: the messages they recorded, their fault and latency controls, their counters.
//! Each mock's harness derefs to one of these.

use std::time::{Duration, Instant};

use serde_json::Value;

pub struct MockApi {
    /// For failure messages.
    name: &'static str,
    pub url: String,
    pub http: reqwest::Client,
}

impl MockApi {
    pub fn new(name: &'static str, url: String, http: reqwest::Client) -> MockApi {
        MockApi { name, url, http }
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
            "{} /_mock/{path}: {}",
            self.name,
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
