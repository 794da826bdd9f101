//! The inbox in Redis, shared by the nodes: one sorted set per user, `{ns}:ib:<user>`, whose
//! members are `<id><JSON>` at score 0, so that they sort by id (lexicographic order) and a
//! cursor is a `BYLEX` bound. An append trims the set to `inbox.max_per_user` and to retention,
//! and sets the key to expire a retention after its newest member, so an idle inbox goes away
//! by itself.
//!
//! Every write ends with a `PUBLISH` on `{ns}:ib` of the heads it moved (`<user> <id>` lines):
//! each node advances the heads it remembers, so `If-None-Match` stays right on every node
//! without a read. After a reconnect of the listening connection the node forgets every head
//! (it may have missed some).

use std::sync::Arc;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use futures::future::FutureExt;

use super::versions::Versions;
use super::{InboxEngine, InboxError, InboxFuture};
use crate::config::BrokerConfig;
use crate::ids::{NotificationId, UserId};
use crate::store::InboxRow;

/// A notification id's length: a member is `<id><JSON>`.
const ID_LEN: usize = 36;

/// Adds the members (ARGV[4..]), trims to ids not below ARGV[1] and to the newest ARGV[2],
/// and expires the set ARGV[3] ms from now.
const APPEND: &str = r#"
for i = 4, #ARGV do redis.call('ZADD', KEYS[1], 0, ARGV[i]) end
redis.call('ZREMRANGEBYLEX', KEYS[1], '-', '(' .. ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"#;

pub struct RedisInbox {
    client: Client,
    /// `<ns>:ib:`
    prefix: String,
    /// `<ns>:ib`: where writes announce the heads they moved.
    channel: String,
    max_per_user: usize,
    retention_ms: u64,
}

fn failed(e: impl std::fmt::Display) -> InboxError {
    InboxError(e.to_string())
}

fn zrange() -> CustomCommand {
    CustomCommand::new_static("ZRANGE", ClusterHash::FirstKey, false)
}

/// The `(id, JSON)` of a member.
fn split(member: String) -> Option<(String, String)> {
    if member.len() <= ID_LEN || !member.is_char_boundary(ID_LEN) {
        return None;
    }
    let json = member[ID_LEN..].to_string();
    let mut id = member;
    id.truncate(ID_LEN);
    Some((id, json))
}

impl RedisInbox {
    pub async fn connect(
        cfg: &BrokerConfig,
        max_per_user: usize,
        retention_secs: u64,
        versions: Arc<Versions>,
    ) -> Result<RedisInbox, InboxError> {
        let client = crate::backend::redis::client(cfg).map_err(failed)?;
        client.init().await.map_err(failed)?;
        let channel = format!("{}:ib", cfg.namespace);
        let listener = crate::backend::redis::client(cfg).map_err(failed)?;
        listener.init().await.map_err(failed)?;
        listener.subscribe(channel.as_str()).await.map_err(failed)?;
        tokio::spawn(listen(listener, channel.clone(), versions));
        Ok(RedisInbox {
            client,
            prefix: format!("{}:ib:", cfg.namespace),
            channel,
            max_per_user,
            retention_ms: retention_secs.saturating_mul(1000),
        })
    }

    fn key(&self, user: &str) -> String {
        format!("{}{user}", self.prefix)
    }
}

/// Applies the other nodes' (and this node's) announced heads; forgets them all after a
/// reconnect, and subscribes again.
async fn listen(client: Client, channel: String, versions: Arc<Versions>) {
    let mut messages = client.message_rx();
    let mut reconnects = client.reconnect_rx();
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(m) => {
                    if let Some(text) = m.value.as_str() {
                        for line in text.lines() {
                            if let Some((user, id)) = line.split_once(' ') {
                                versions.advance(user, id);
                            }
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => versions.clear(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            server = reconnects.recv() => match server {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    versions.clear();
                    if let Err(e) = client.subscribe(channel.as_str()).await {
                        tracing::warn!(error = %e, "inbox: cannot listen for other nodes' appends");
                    }
                    // Appends announced while this node was subscribing are lost too.
                    versions.clear();
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

impl InboxEngine for RedisInbox {
    fn append(&self, rows: Vec<InboxRow>, since: String, _lazy: bool) -> InboxFuture<()> {
        let client = self.client.clone();
        let mut by_user: Vec<(String, Vec<String>)> = Vec::new();
        let mut announce = String::new();
        for r in rows {
            announce.push_str(&format!("{} {}\n", r.user_id, r.id));
            let member = format!("{}{}", r.id, r.payload);
            match by_user.iter_mut().find(|(u, _)| *u == r.user_id) {
                Some((_, members)) => members.push(member),
                None => by_user.push((r.user_id, vec![member])),
            }
        }
        let calls: Vec<(String, Vec<String>)> = by_user
            .into_iter()
            .map(|(user, members)| {
                let mut args = vec![
                    since.clone(),
                    self.max_per_user.to_string(),
                    self.retention_ms.to_string(),
                ];
                args.extend(members);
                (self.key(&user), args)
            })
            .collect();
        let channel = self.channel.clone();
        async move {
            let p = client.pipeline();
            for (key, args) in calls {
                let mut all: Vec<Value> = Vec::with_capacity(3 + args.len());
                all.push(APPEND.into());
                all.push(1_i64.into());
                all.push(key.into());
                all.extend(args.into_iter().map(Value::from));
                p.custom::<(), _>(
                    CustomCommand::new_static("EVAL", ClusterHash::Offset(2), false),
                    all,
                )
                .await
                .map_err(failed)?;
            }
            let _: Vec<Value> = p.all().await.map_err(failed)?;
            let _: i64 = client.publish(channel, announce).await.map_err(failed)?;
            Ok(())
        }
        .boxed()
    }

    fn page(
        &self,
        user: &UserId,
        after: Option<&str>,
        since: &str,
        limit: usize,
    ) -> InboxFuture<Vec<(String, String)>> {
        let client = self.client.clone();
        let key = self.key(user);
        // '~' sorts after every character of an id and after the JSON's '{': "(<id>~"
        // excludes that id's member and keeps every later id.
        let min = match after {
            Some(a) if a > since => format!("({a}~"),
            _ => format!("[{since}"),
        };
        let newest = after.is_none();
        async move {
            let args: Vec<Value> = if newest {
                vec![
                    key.into(),
                    "+".into(),
                    min.into(),
                    "BYLEX".into(),
                    "REV".into(),
                    "LIMIT".into(),
                    0_i64.into(),
                    (limit as i64).into(),
                ]
            } else {
                vec![
                    key.into(),
                    min.into(),
                    "+".into(),
                    "BYLEX".into(),
                    "LIMIT".into(),
                    0_i64.into(),
                    (limit as i64).into(),
                ]
            };
            let members: Vec<String> = client.custom(zrange(), args).await.map_err(failed)?;
            let mut rows: Vec<(String, String)> = members.into_iter().filter_map(split).collect();
            if newest {
                rows.reverse();
            }
            Ok(rows)
        }
        .boxed()
    }

    fn get(&self, user: &UserId, id: &NotificationId, since: &str) -> InboxFuture<Option<String>> {
        let client = self.client.clone();
        let key = self.key(user);
        let id = id.to_string();
        let kept = id.as_str() >= since;
        async move {
            if !kept {
                return Ok(None);
            }
            let args: Vec<Value> = vec![
                key.into(),
                format!("[{id}").into(),
                format!("({id}~").into(),
                "BYLEX".into(),
            ];
            let members: Vec<String> = client.custom(zrange(), args).await.map_err(failed)?;
            Ok(members
                .into_iter()
                .filter_map(split)
                .find(|(i, _)| *i == id)
                .map(|(_, json)| json))
        }
        .boxed()
    }

    fn head(&self, user: &UserId) -> InboxFuture<Option<String>> {
        let client = self.client.clone();
        let key = self.key(user);
        async move {
            let args: Vec<Value> = vec![
                key.into(),
                "+".into(),
                "-".into(),
                "BYLEX".into(),
                "REV".into(),
                "LIMIT".into(),
                0_i64.into(),
                1_i64.into(),
            ];
            let members: Vec<String> = client.custom(zrange(), args).await.map_err(failed)?;
            Ok(members.into_iter().next().and_then(split).map(|(id, _)| id))
        }
        .boxed()
    }

    fn expire(&self, _since: String) -> InboxFuture<u64> {
        // Appends trim, and an idle inbox's key expires.
        async { Ok(0) }.boxed()
    }
}
