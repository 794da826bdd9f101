//! Test harness: the real `switchboard` binary on port 0 in its own temp directory (own SQLite
//! database), fcm-mock over real HTTP with real OAuth, and typed helpers for each API call.
//! Set TEST_LOG=1 to see the router's log lines.
#![allow(dead_code)]

pub mod apns;
pub mod deploy;
pub mod mock_api;
pub mod services;
pub mod sse;
pub mod webpush;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use sse::SseStream;

pub const PRODUCER_KEY: &str = "test-producer-key";
pub const JWT_SECRET: &str = "test-jwt-secret";

/// fcm-mock, started in-process on its own port with a fresh service-account key.
pub struct Mock {
    handle: Option<fcm_mock::MockHandle>,
    api: mock_api::MockApi,
    pub key_path: PathBuf,
}

impl std::ops::Deref for Mock {
    type Target = mock_api::MockApi;
    fn deref(&self) -> &mock_api::MockApi {
        &self.api
    }
}

impl Mock {
    pub async fn start(dir: &std::path::Path) -> Mock {
        Mock::start_project(dir, "demo-project").await
    }

    /// A mock of Firebase project `project`, its key at `dir/<project>.json` (or
    /// `dir/service-account.json` for the default project).
    pub async fn start_project(dir: &std::path::Path, project: &str) -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let key = fcm_mock::generate_service_account(&url, project).unwrap();
        let key_path = if project == "demo-project" {
            dir.join("service-account.json")
        } else {
            dir.join(format!("{project}.json"))
        };
        std::fs::write(&key_path, &key).unwrap();
        let handle = fcm_mock::spawn(listener, &key).await.unwrap();
        Mock {
            handle: Some(handle),
            api: mock_api::MockApi::new("fcm-mock", url, reqwest::Client::new()),
            key_path,
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(h.shutdown());
            }
        }
    }
}

#[derive(Default)]
pub struct Options {
    /// Start fcm-mock and point the router's FCM at it.
    pub fcm: bool,
    /// Point the router's FCM at a mock shared with other nodes: (url, key path).
    pub shared_fcm: Option<(String, PathBuf)>,
    /// Extra SWITCHBOARD__* variables.
    pub env: Vec<(String, String)>,
    /// A `config.toml` for the router's directory (what only a file can say: `[[apps]]`).
    pub config_toml: Option<String>,
}

impl Options {
    pub fn with_fcm() -> Options {
        Options {
            fcm: true,
            ..Options::default()
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Options {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn envs(mut self, pairs: Vec<(String, String)>) -> Options {
        self.env.extend(pairs);
        self
    }

    pub fn config_toml(mut self, toml: String) -> Options {
        self.config_toml = Some(toml);
        self
    }
}

pub struct TestApp {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub mock: Option<Mock>,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mock = if opts.fcm {
            Some(Mock::start(dir.path()).await)
        } else {
            None
        };
        if let Some(toml) = &opts.config_toml {
            std::fs::write(dir.path().join("config.toml"), toml).unwrap();
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("serve")
            .current_dir(dir.path())
            .env("SWITCHBOARD__SERVER__LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECS", "5")
            .env("SWITCHBOARD__AUTH__JWT_SECRET", JWT_SECRET)
            .env(
                "SWITCHBOARD__AUTH__PRODUCER_KEYS",
                format!("[{PRODUCER_KEY}]"),
            )
            .env(
                "SWITCHBOARD__STORE__URL",
                format!("sqlite://{}/switchboard.db?mode=rwc", dir.path().display()),
            )
            .env("SWITCHBOARD__FCM__BACKOFF_BASE_MS", "50")
            .env("SWITCHBOARD__FCM__BACKOFF_MAX_MS", "3000")
            .env("SWITCHBOARD__FCM__MAX_ATTEMPTS", "3")
            .env("RUST_LOG", "info,switchboard=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let fcm = mock.as_ref().map(|m| (m.url.clone(), m.key_path.clone()));
        if let Some((url, key_path)) = fcm.or(opts.shared_fcm.clone()) {
            cmd.env("SWITCHBOARD__FCM__SERVICE_ACCOUNT", key_path)
                .env("SWITCHBOARD__FCM__ENDPOINT", url);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the switchboard binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut addr_tx = Some(addr_tx);
            let echo = std::env::var_os("TEST_LOG").is_some();
            while let Ok(Some(line)) = lines.next_line().await {
                if echo {
                    eprintln!("[switchboard] {line}");
                }
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                sink.lock().push(line);
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(20), addr_rx).await {
            Ok(Ok(a)) => a,
            _ => panic!(
                "switchboard did not start; its log:\n{}",
                logs.lock().join("\n")
            ),
        };
        TestApp {
            child,
            addr,
            dir,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            mock,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn mock(&self) -> &Mock {
        self.mock
            .as_ref()
            .expect("this test app runs without fcm-mock")
    }

    /// A client token for `user`, signed with the router's secret.
    pub fn token(&self, user: &str) -> String {
        token_with(user, 3600, None)
    }

    pub async fn producer(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(PRODUCER_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn notify(&self, body: Value) -> (StatusCode, Value) {
        self.producer(reqwest::Method::POST, "/v1/notify", Some(body))
            .await
    }

    /// `POST /v1/ack` as `user`.
    pub async fn ack(&self, user: &str, ids: &[&str]) -> StatusCode {
        self.http
            .post(self.url("/v1/ack"))
            .bearer_auth(self.token(user))
            .json(&json!({ "ids": ids }))
            .send()
            .await
            .map(|r| r.status())
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// `GET /v1/notifications/{id}`.
    pub async fn status(&self, id: &str) -> (StatusCode, Value) {
        self.producer(
            reqwest::Method::GET,
            &format!("/v1/notifications/{id}"),
            None,
        )
        .await
    }

    /// Polls the notification's status until it is `want`; returns the last record seen.
    pub async fn wait_status(&self, id: &str, want: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, v) = self.status(id).await;
            if v["status"] == want || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn presence(&self, user: &str) -> Value {
        let (status, v) = self
            .producer(reqwest::Method::GET, &format!("/v1/presence/{user}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    pub async fn register_device(&self, user: &str, device: &str, fcm_token: &str) -> Value {
        self.register(
            user,
            device,
            json!({"fcm_token": fcm_token, "platform": "android"}),
        )
        .await
    }

    /// `PUT /v1/devices/{device}` with any registration form; it must answer 200.
    pub async fn register(&self, user: &str, device: &str, body: Value) -> Value {
        let resp = self
            .http
            .put(self.url(&format!("/v1/devices/{device}")))
            .bearer_auth(self.token(user))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{body}");
        resp.json().await.unwrap()
    }

    /// Opens `/v1/events` for `user` with extra query (e.g. "device_id=d1&topics=a") and waits
    /// for the `retry:` preamble, so the stream is registered when this returns.
    pub async fn stream(&self, user: &str, query: &str) -> SseStream {
        let url = self.url(&format!("/v1/events?{query}"));
        SseStream::open(&url, &self.token(user)).await
    }

    /// `GET path` with `user`'s client token: the answer's JSON.
    pub async fn client_json(&self, user: &str, path: &str) -> Value {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap();
        resp.json().await.unwrap()
    }

    /// The whole `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one metric line, e.g. `switchboard_sse_disconnects_total{reason="replaced"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {series} in\n{text}"))
    }

    /// Polls a metric until it reaches `at_least`.
    pub async fn wait_metric(&self, series: &str, at_least: f64, within: Duration) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let v = self.metric(series).await;
            if v >= at_least || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the router is running")
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// SIGKILL: the process dies without any shutdown work.
    pub async fn sigkill(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait().await;
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("the router is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the router did not exit in time")
            .unwrap()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.logs.lock().iter().any(|l| l.contains(needle))
    }
}

/// A client token signed with the test secret.
pub fn token_with(user: &str, ttl_secs: u64, topics: Option<Vec<String>>) -> String {
    let auth = switchboard::auth::Auth::new(&switchboard::config::AuthConfig {
        jwt_secret: JWT_SECRET.into(),
        ..Default::default()
    });
    auth.mint(&user.parse().expect("a valid user id"), ttl_secs, topics)
}

/// Polls `check` until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
