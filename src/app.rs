//! Building the application from its configuration, and running it until a shutdown signal,
//! then draining: `event: shutdown` to every stream, presence left, in-flight FCM finished,
//! all within `server.shutdown_grace_secs`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::backend::{Backend, BackendError};
use crate::config::Config;
use crate::figures::Figures;
use crate::http::{routes, AppState};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::push::{self, Sender};
use crate::redact::{redact_secrets, redact_url};
use crate::router::NotificationRouter;
use crate::store::Store;
use crate::streams::{Fallback, Hub, HubConfig};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Already redacted: no password of `store.url` in it.
    #[error("{0}")]
    Store(String),
    #[error(transparent)]
    Push(#[from] push::SetupError),
    /// Already redacted: no password of `broker.redis_url` in it.
    #[error("broker: {0}")]
    Backend(#[from] BackendError),
    /// Already redacted.
    #[error("inbox: {0}")]
    Inbox(String),
}

/// A failure to reach the service at `url`, for the operator: the URL without its secrets,
/// and the error too should it quote them.
fn unreachable(key: &str, url: &str, e: impl std::fmt::Display) -> String {
    format!(
        "{} ({key} = {})",
        redact_secrets(&e.to_string(), url),
        redact_url(url)
    )
}

pub struct App {
    state: AppState,
    listener: TcpListener,
    push: Arc<Sender>,
    fallback: mpsc::UnboundedReceiver<Fallback>,
}

impl App {
    pub async fn build(config: Config) -> Result<App, BuildError> {
        let node_id: Arc<str> = if config.server.node_id.is_empty() {
            let id = crate::ids::new_id();
            format!("node-{}", &id[id.len() - 12..]).into()
        } else {
            config.server.node_id.as_str().into()
        };
        for key in config.dev_credentials() {
            tracing::warn!("{key} holds the embedded development credential: accepted on a loopback address only");
        }
        let metrics = Arc::new(Metrics::new());
        let store = Store::connect(&config.store.url)
            .await
            .map_err(|e| BuildError::Store(unreachable("store.url", &config.store.url, e)))?
            .limit_devices_per_user(config.devices.max_per_user);
        let Backend { broker, ledger } =
            Backend::connect(&config, node_id.clone(), metrics.clone()).await?;
        // Both answered to get here; each /readyz updates it from now on.
        metrics.ready.set(1);
        let push =
            Arc::new(push::start(&config, store.clone(), ledger.clone(), metrics.clone()).await?);
        let inbox = Arc::new(
            crate::inbox::open(&config, store.clone(), &metrics)
                .await
                .map_err(|e| {
                    BuildError::Inbox(redact_secrets(&e.to_string(), &config.broker.redis_url))
                })?,
        );
        let (fallback_tx, fallback) = mpsc::unbounded_channel();
        let hub = Hub::new(
            HubConfig {
                node_id: node_id.clone(),
                max_per_user: config.sse.max_connections_per_user,
                queue_capacity: config.sse.queue_capacity,
                retry_ms: config.sse.retry_ms,
                retry_jitter_ms: config.sse.retry_jitter_ms,
            },
            broker.clone(),
            ledger.clone(),
            metrics.clone(),
            fallback_tx,
        );
        let router = Arc::new(NotificationRouter::new(
            broker.clone(),
            ledger,
            store.clone(),
            push.clone(),
            inbox.clone(),
            metrics.clone(),
        ));
        let addr = config.listen_addr();
        let listener =
            crate::server::bind(addr).map_err(|source| BuildError::Bind { addr, source })?;
        let auth = Arc::new(Auth::new(&config.auth));
        let names: Vec<&str> = auth.producer_names().iter().map(String::as_str).collect();
        let limits = Arc::new(Limits::new(&config.limits, &names, &metrics));
        let mut vapid_public_keys = HashMap::new();
        for app in config.apps() {
            if let Some(webpush) = &app.webpush {
                let key = webpush.load_vapid_key().map_err(|e| {
                    push::SetupError::WebPush(push::webpush::WebPushSetupError::Key(e))
                })?;
                vapid_public_keys.insert(app.id, push::webpush::public_key(&key));
            }
        }
        let state = AppState {
            config: Arc::new(config),
            auth,
            hub,
            router,
            broker,
            store,
            inbox,
            metrics,
            limits,
            vapid_public_keys: Arc::new(vapid_public_keys),
        };
        Ok(App {
            state,
            listener,
            push,
            fallback,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains within the grace period.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        let App {
            state,
            listener,
            push,
            fallback,
        } = self;
        let grace = Duration::from_secs(state.config.server.shutdown_grace_secs);
        let background = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            state.hub.clone(),
            Duration::from_secs(state.config.sse.heartbeat_secs),
            background.clone(),
        ));
        let figures = tokio::spawn(publish_figures(state.clone(), background.clone()));
        let expiry = tokio::spawn(state.inbox.clone().run_expiry(background.clone()));
        let sweep_every =
            Duration::from_millis((state.config.delivery.ack_timeout_ms / 10).clamp(20, 1000));
        let deadlines = tokio::spawn(
            state
                .router
                .clone()
                .run_deadlines(sweep_every, background.clone()),
        );
        let fallback_stop = CancellationToken::new();
        let fallback_task = tokio::spawn(
            state
                .router
                .clone()
                .run_fallback(fallback, fallback_stop.clone()),
        );
        let graceful = GracefulShutdown::new();
        let stop_accepting = CancellationToken::new();
        tracing::info!(
            node_id = state.hub.node_id(),
            "switchboard listening on http://{}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        let server = crate::server::serve(
            listener,
            routes(state.clone()),
            state.clone(),
            stop_accepting.clone(),
            &graceful,
        );
        tokio::select! {
            _ = server => {}
            _ = shutdown => {}
        }
        stop_accepting.cancel();
        let deadline = Instant::now() + grace;
        tracing::info!(
            streams = state.hub.stream_count(),
            "shutting down: closing streams"
        );
        state.hub.shutdown_all();
        if tokio::time::timeout_at(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open at the end of the shutdown grace");
        }
        fallback_stop.cancel();
        let _ = tokio::time::timeout_at(deadline, fallback_task).await;
        let _ = tokio::time::timeout_at(deadline, state.broker.shutdown()).await;
        push.drain(deadline.saturating_duration_since(Instant::now()))
            .await;
        state.inbox.flush().await;
        background.cancel();
        let _ = heartbeat.await;
        let _ = expiry.await;
        let _ = figures.await;
        let _ = deadlines.await;
        state.store.close().await;
        tracing::info!("shutdown complete");
    }
}

async fn heartbeat(hub: Arc<Hub>, period: Duration, stop: CancellationToken) {
    let every = Hub::heartbeat_tick(period);
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => hub.heartbeat(),
        }
    }
}

/// This node's figures to every node's console (through the broker), once a second.
async fn publish_figures(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                let figures = Arc::new(Figures::capture(state.hub.node_id(), &state.metrics));
                if let Err(e) = state.broker.publish_figures(figures).await {
                    // The console shows the node missing; requests count broker errors.
                    tracing::debug!(error = %e, "could not publish this node's figures");
                }
            }
        }
    }
}
