//! Building the application from its configuration, and running it until a shutdown signal,
//! then draining: `event: shutdown` to every stream, presence left, in-flight FCM finished,
//! all within `server.shutdown_grace_secs`.

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
use crate::broker::memory::MemoryBroker;
use crate::broker::redis::RedisBroker;
use crate::broker::Broker;
use crate::config::{BrokerKind, Config};
use crate::delivery::memory::MemoryLedger;
use crate::delivery::redis::RedisLedger;
use crate::delivery::{LedgerConfig, SharedLedger};
use crate::fcm::{FcmSender, FcmSetupError};
use crate::http::{routes, AppState};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::router::NotificationRouter;
use crate::store::{Store, StoreError};
use crate::streams::{Fallback, Hub, HubConfig};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fcm(#[from] FcmSetupError),
    #[error("broker: {0}")]
    Broker(String),
}

pub struct App {
    state: AppState,
    listener: TcpListener,
    fcm: Arc<FcmSender>,
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
        let metrics = Arc::new(Metrics::new());
        let store = Store::connect(&config.store.url).await?;
        let ledger_cfg = LedgerConfig {
            ack_timeout_ms: config.delivery.ack_timeout_ms,
            retention_ms: config.delivery.record_retention_secs * 1000,
            replay_window_ms: config.delivery.replay_window_secs * 1000,
            replay_capacity: config.delivery.replay_capacity,
            max_records: config.delivery.max_records_in_memory,
        };
        let (broker, ledger): (Arc<dyn Broker>, SharedLedger) = match config.broker.kind {
            BrokerKind::Memory => (
                Arc::new(MemoryBroker::new()),
                Arc::new(MemoryLedger::new(ledger_cfg)),
            ),
            BrokerKind::Redis => {
                let broker = RedisBroker::connect(&config.broker, node_id.clone(), metrics.clone())
                    .await
                    .map_err(|e| {
                        BuildError::Broker(format!(
                            "{e} (broker.redis_url = {})",
                            config.broker.redis_url
                        ))
                    })?;
                let clustered = config.broker.redis_url.contains("-cluster://");
                let ledger = RedisLedger::start(
                    broker.publisher(),
                    !clustered,
                    &config.broker.namespace,
                    ledger_cfg,
                    metrics.clone(),
                );
                (Arc::new(broker), Arc::new(ledger))
            }
        };
        let fcm = if config.fcm_enabled() {
            Arc::new(
                FcmSender::start(&config.fcm, store.clone(), ledger.clone(), metrics.clone())
                    .await?,
            )
        } else {
            tracing::warn!(
                "FCM is disabled (fcm.service_account is empty): notifications for offline users answer route \"none\""
            );
            Arc::new(FcmSender::disabled(metrics.clone()))
        };
        let (fallback_tx, fallback) = mpsc::unbounded_channel();
        let hub = Hub::new(
            HubConfig {
                node_id: node_id.clone(),
                max_per_user: config.sse.max_connections_per_user,
                queue_capacity: config.sse.queue_capacity,
                retry_ms: config.sse.retry_ms,
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
            fcm.clone(),
            metrics.clone(),
        ));
        let addr = config.listen_addr();
        let listener =
            crate::server::bind(addr).map_err(|source| BuildError::Bind { addr, source })?;
        let auth = Arc::new(Auth::new(&config.auth));
        let names: Vec<&str> = auth.producer_names().iter().map(String::as_str).collect();
        let limits = Arc::new(Limits::new(&config.limits, &names, &metrics));
        let state = AppState {
            config: Arc::new(config),
            auth,
            hub,
            router,
            broker,
            store,
            metrics,
            limits,
        };
        Ok(App {
            state,
            listener,
            fcm,
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
            fcm,
            fallback,
        } = self;
        let grace = Duration::from_secs(state.config.server.shutdown_grace_secs);
        let background = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            state.hub.clone(),
            Duration::from_secs(state.config.sse.heartbeat_secs),
            background.clone(),
        ));
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
        fcm.drain(deadline.saturating_duration_since(Instant::now()))
            .await;
        background.cancel();
        let _ = heartbeat.await;
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
