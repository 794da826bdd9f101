//! The subscriber connection's SSUBSCRIBE set. One task applies subscribe / unsubscribe
//! requests in the order the hub made them: it takes whatever has queued up, keeps each
//! channel's last wish, and sends the difference from what Redis has in a few pipelined
//! commands (grouped by hash slot on a cluster). After every reconnect it subscribes the whole
//! set again, so streams opened before an outage are routable once Redis is back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fred::prelude::*;
use futures::future::{join_all, FutureExt};
use tokio::sync::{mpsc, oneshot};

use super::unavailable;
use crate::backend::{BackendError, BackendFuture};
use crate::metrics::Metrics;

/// Most channels in one SSUBSCRIBE / SUNSUBSCRIBE.
const CHUNK: usize = 500;
/// Most requests applied in one round.
const MAX_ROUND: usize = 20_000;

enum Op {
    Subscribe(String, oneshot::Sender<Result<(), BackendError>>),
    Unsubscribe(String),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Subscriptions {
    ops: mpsc::UnboundedSender<Op>,
}

impl Subscriptions {
    pub fn start(client: Client, clustered: bool, metrics: Arc<Metrics>) -> Subscriptions {
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Worker {
            client,
            clustered,
            subscribed: HashSet::new(),
            metrics,
        };
        tokio::spawn(worker.run(rx));
        Subscriptions { ops: tx }
    }

    /// Resolves once Redis confirmed the subscription.
    pub fn subscribe(&self, channel: String) -> BackendFuture<()> {
        let (tx, rx) = oneshot::channel();
        let sent = self.ops.send(Op::Subscribe(channel, tx)).is_ok();
        async move {
            if !sent {
                return Err(BackendError::Unavailable(
                    "the broker is shutting down".into(),
                ));
            }
            rx.await.unwrap_or_else(|_| {
                Err(BackendError::Unavailable("subscription task ended".into()))
            })
        }
        .boxed()
    }

    pub fn unsubscribe(&self, channel: String) {
        let _ = self.ops.send(Op::Unsubscribe(channel));
    }

    /// Applies what is queued, then unsubscribes everything and quits.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Worker {
    client: Client,
    clustered: bool,
    /// What Redis has (as far as we know).
    subscribed: HashSet<String>,
    metrics: Arc<Metrics>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut reconnects = self.client.reconnect_rx();
        // Set while the whole set must be sent again (after a reconnect, until it succeeds).
        let mut resubscribe = false;
        let mut retry = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = retry.tick(), if resubscribe => {
                    resubscribe = !self.resubscribe_all().await;
                }
                op = rx.recv() => {
                    let Some(op) = op else { break };
                    let mut round = vec![op];
                    while round.len() < MAX_ROUND {
                        match rx.try_recv() {
                            Ok(op) => round.push(op),
                            Err(_) => break,
                        }
                    }
                    if let Some(done) = self.apply(round).await {
                        let all: Vec<String> = self.subscribed.drain().collect();
                        self.send("sunsubscribe", all).await;
                        let _ = self.client.quit().await;
                        let _ = done.send(());
                        break;
                    }
                }
                server = reconnects.recv() => {
                    if server.is_ok() {
                        tracing::info!(channels = self.subscribed.len(), "Redis reconnected: subscribing again");
                        resubscribe = !self.resubscribe_all().await;
                    }
                }
            }
        }
    }

    /// Sends the whole set again; false if some of it failed (to be retried).
    async fn resubscribe_all(&self) -> bool {
        let all: Vec<String> = self.subscribed.iter().cloned().collect();
        let failed = self.send("ssubscribe", all).await;
        if failed.is_empty() {
            return true;
        }
        tracing::warn!(
            channels = failed.len(),
            "re-subscription failed; retrying in 1 s"
        );
        false
    }

    /// Applies one round; returns the shutdown waiter if the round asked to stop.
    async fn apply(&mut self, round: Vec<Op>) -> Option<oneshot::Sender<()>> {
        let mut wish: HashMap<String, bool> = HashMap::new();
        let mut waiters: Vec<(String, oneshot::Sender<Result<(), BackendError>>)> = Vec::new();
        let mut shutdown = None;
        for op in round {
            match op {
                Op::Subscribe(c, w) => {
                    wish.insert(c.clone(), true);
                    waiters.push((c, w));
                }
                Op::Unsubscribe(c) => {
                    wish.insert(c, false);
                }
                Op::Shutdown(done) => shutdown = Some(done),
            }
        }
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for (channel, on) in wish {
            match (on, self.subscribed.contains(&channel)) {
                (true, false) => add.push(channel),
                (false, true) => remove.push(channel),
                _ => {}
            }
        }
        let (failed_add, _) = futures::join!(
            self.send("ssubscribe", add.clone()),
            self.send("sunsubscribe", remove.clone())
        );
        for c in remove {
            // Even if SUNSUBSCRIBE failed, the channel is not wanted: a reconnect drops it anyway.
            self.subscribed.remove(&c);
        }
        let failed: HashSet<&String> = failed_add.iter().collect();
        for c in &add {
            if !failed.contains(c) {
                self.subscribed.insert(c.clone());
            }
        }
        for (c, w) in waiters {
            let result = if failed.contains(&c) {
                self.metrics.broker_errors.inc();
                Err(BackendError::Unavailable(
                    "Redis did not confirm the subscription".into(),
                ))
            } else {
                Ok(())
            };
            let _ = w.send(result);
        }
        shutdown
    }

    /// Sends `command` for `channels` in pipelined chunks; returns the channels that failed.
    async fn send(&self, command: &'static str, channels: Vec<String>) -> Vec<String> {
        if channels.is_empty() {
            return Vec::new();
        }
        let chunks = self.chunks(channels);
        let results = join_all(chunks.iter().map(|chunk| {
            let client = &self.client;
            async move {
                let r = if command == "ssubscribe" {
                    client.ssubscribe(chunk.clone()).await
                } else {
                    client.sunsubscribe(chunk.clone()).await
                };
                r.map_err(unavailable)
            }
        }))
        .await;
        let mut failed = Vec::new();
        for (chunk, r) in chunks.into_iter().zip(results) {
            if let Err(e) = r {
                tracing::warn!(command, error = %e, channels = chunk.len(), "Redis subscription command failed");
                failed.extend(chunk);
            }
        }
        failed
    }

    /// On a cluster, one command may only name channels of one hash slot.
    fn chunks(&self, channels: Vec<String>) -> Vec<Vec<String>> {
        if !self.clustered {
            return channels.chunks(CHUNK).map(<[String]>::to_vec).collect();
        }
        let mut by_slot: HashMap<u16, Vec<String>> = HashMap::new();
        for c in channels {
            by_slot
                .entry(fred::util::redis_keyslot(c.as_bytes()))
                .or_default()
                .push(c);
        }
        by_slot
            .into_values()
            .flat_map(|v| v.chunks(CHUNK).map(<[String]>::to_vec).collect::<Vec<_>>())
            .collect()
    }
}
