//! Readable presence records, for `GET /v1/presence/{user}` from any node. Routing does not
//! read them (SPUBLISH's answer routes); they say who is connected where, since when.
//!
//! Layout: a hash per user (`<ns>:p:<user>`, field `<node>/<stream>` → connection JSON) and a
//! liveness key per node (`<ns>:n:<node>`). Both expire after `presence_ttl_secs`; each node
//! refreshes its own in one batch every third of that, not per stream. A reader ignores (and
//! removes) the entries of nodes whose liveness key has expired, so a killed node's streams
//! vanish from presence within the TTL.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use futures::future::{join_all, BoxFuture, FutureExt};
use tokio::sync::{mpsc, oneshot};

use super::{unavailable, Names};
use crate::backend::{BackendError, BackendFuture, Connection};

const MAX_ROUND: usize = 10_000;
const REFRESH_CHUNK: usize = 1_000;

enum Op {
    Set {
        user: Arc<str>,
        field: String,
        value: String,
    },
    Del {
        user: Arc<str>,
        field: String,
    },
    Shutdown(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Presence {
    ops: mpsc::UnboundedSender<Op>,
    client: Client,
    names: Names,
    node_id: Arc<str>,
}

impl Presence {
    /// Marks this node alive and starts the writer.
    pub async fn start(
        client: Client,
        names: Names,
        node_id: Arc<str>,
        ttl: Duration,
    ) -> Result<Presence, BackendError> {
        let node_key = names.node_key(&node_id);
        let ttl_secs = ttl.as_secs().max(1) as i64;
        let _: () = client
            .set(&node_key, "1", Some(Expiration::EX(ttl_secs)), None, false)
            .await
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            client: client.clone(),
            names: names.clone(),
            node_key,
            ttl_secs,
            users: HashMap::new(),
        };
        tokio::spawn(writer.run(rx, ttl / 3));
        Ok(Presence {
            ops: tx,
            client,
            names,
            node_id,
        })
    }

    pub fn set(&self, user: &Arc<str>, stream_id: u64, connection: Option<Connection>) {
        let field = format!("{}/{stream_id}", self.node_id);
        let op = match connection {
            Some(c) => Op::Set {
                user: user.clone(),
                field,
                value: serde_json::to_string(&c).expect("serialising a connection cannot fail"),
            },
            None => Op::Del {
                user: user.clone(),
                field,
            },
        };
        let _ = self.ops.send(op);
    }

    /// Every live connection of `user`, on every node.
    pub fn read(&self, user: &str) -> BackendFuture<Vec<Connection>> {
        let key = self.names.presence_key(user);
        let client = self.client.clone();
        let names = self.names.clone();
        async move {
            let entries: HashMap<String, String> =
                client.hgetall(&key).await.map_err(unavailable)?;
            let mut connections: Vec<(String, Connection)> = entries
                .into_iter()
                .filter_map(|(field, v)| serde_json::from_str(&v).ok().map(|c| (field, c)))
                .collect();
            let nodes: HashSet<String> =
                connections.iter().map(|(_, c)| c.node_id.clone()).collect();
            let checks = join_all(nodes.iter().map(|n| {
                let client = &client;
                let key = names.node_key(n);
                async move {
                    (
                        n.clone(),
                        client.exists::<i64, _>(key).await.unwrap_or(1) > 0,
                    )
                }
            }))
            .await;
            let dead: HashSet<String> = checks
                .into_iter()
                .filter(|(_, alive)| !alive)
                .map(|(n, _)| n)
                .collect();
            if !dead.is_empty() {
                let stale: Vec<String> = connections
                    .iter()
                    .filter(|(_, c)| dead.contains(&c.node_id))
                    .map(|(f, _)| f.clone())
                    .collect();
                let _: Result<i64, _> = client.hdel(&key, stale).await;
                connections.retain(|(_, c)| !dead.contains(&c.node_id));
            }
            let mut out: Vec<Connection> = connections.into_iter().map(|(_, c)| c).collect();
            out.sort_by_key(|c| c.connected_at);
            Ok(out)
        }
        .boxed()
    }

    /// Writes what is queued, then withdraws this node.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Writer {
    client: Client,
    names: Names,
    node_key: String,
    ttl_secs: i64,
    /// This node's records per user: the keys it keeps alive, written again when Redis comes
    /// back (it may have restarted empty).
    users: HashMap<Arc<str>, HashMap<String, String>>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>, every: Duration) {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        let mut reconnects = self.client.reconnect_rx();
        loop {
            tokio::select! {
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
                        let _: Result<i64, _> = self.client.del(&self.node_key).await;
                        let _ = done.send(());
                        break;
                    }
                }
                server = reconnects.recv() => {
                    if server.is_ok() {
                        self.write_all().await;
                    }
                }
                _ = tick.tick() => self.refresh().await,
            }
        }
    }

    async fn apply(&mut self, round: Vec<Op>) -> Option<oneshot::Sender<()>> {
        let mut writes = Vec::with_capacity(round.len());
        let mut shutdown = None;
        for op in round {
            match op {
                Op::Set { user, field, value } => {
                    let key = self.names.presence_key(&user);
                    let fields = self.users.entry(user).or_default();
                    fields.insert(field.clone(), value.clone());
                    writes.push(self.write(key, vec![(field, value)]));
                }
                Op::Del { user, field } => {
                    if let Some(fields) = self.users.get_mut(&user) {
                        fields.remove(&field);
                        if fields.is_empty() {
                            self.users.remove(&user);
                        }
                    }
                    let key = self.names.presence_key(&user);
                    let client = self.client.clone();
                    writes.push(async move { client.hdel::<(), _, _>(&key, field).await }.boxed());
                }
                Op::Shutdown(done) => shutdown = Some(done),
            }
        }
        for r in join_all(writes).await {
            if let Err(e) = r {
                tracing::debug!(error = %e, "presence record not written");
            }
        }
        shutdown
    }

    fn write(
        &self,
        key: String,
        fields: Vec<(String, String)>,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let client = self.client.clone();
        let ttl = self.ttl_secs;
        async move {
            let _: () = client.hset(&key, fields).await?;
            client.expire::<(), _>(&key, ttl, None).await
        }
        .boxed()
    }

    async fn mark_alive(&self) -> bool {
        let ttl = Some(Expiration::EX(self.ttl_secs));
        match self
            .client
            .set::<(), _, _>(&self.node_key, "1", ttl, None, false)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "presence refresh failed");
                false
            }
        }
    }

    /// Keeps this node and its users' records alive: one batch per period, not per stream.
    async fn refresh(&self) {
        if !self.mark_alive().await {
            return;
        }
        let users: Vec<&Arc<str>> = self.users.keys().collect();
        for chunk in users.chunks(REFRESH_CHUNK) {
            join_all(chunk.iter().map(|u| {
                let key = self.names.presence_key(u);
                async move { self.client.expire::<(), _>(key, self.ttl_secs, None).await }
            }))
            .await;
        }
    }

    /// Writes every record of this node again.
    async fn write_all(&self) {
        if !self.mark_alive().await {
            return;
        }
        let users: Vec<_> = self.users.iter().collect();
        for chunk in users.chunks(REFRESH_CHUNK) {
            join_all(chunk.iter().map(|(u, fields)| {
                let values = fields.iter().map(|(f, v)| (f.clone(), v.clone())).collect();
                self.write(self.names.presence_key(u), values)
            }))
            .await;
        }
        tracing::info!(
            users = self.users.len(),
            "presence records written again after a reconnect"
        );
    }
}
