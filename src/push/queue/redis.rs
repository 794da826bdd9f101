//! The queue in Redis, shared by the nodes. Every key shares the namespace's hash tag (as the
//! ledger's deadline sets do), so that the scripts below run on a Redis Cluster too:
//!
//! - `{ns}:pq:due`: sorted set of sends (`<notification id>:<device id>`) by due time, or by
//!   lease end while claimed;
//! - `{ns}:pq:age`: the same sends by creation time (the oldest one's age);
//! - `{ns}:pq:e:<send>`: hash `u` user, `t` token, `p` platform, `v` provider, `ap` app (empty:
//!   the default app), `a` attempts, `c` created, `dl` deadline, `e` last error, `k` the claim
//!   holding it (empty: none);
//! - `{ns}:pq:b:<notification id>`: hash `n` the notification's JSON, `r` sends left, `a`
//!   sends accepted, `m:<device id>` one per queued send.

use std::sync::Arc;

use bytes::Bytes;
use fred::prelude::*;
use futures::future::FutureExt;

use super::{
    progress_of, Entry, Finished, NewSends, Progress, PushQueue, QueueError, QueueFuture,
    QueueStats,
};
use crate::config::BrokerConfig;
use crate::notification::Notification;
use crate::store::{app_column, app_from_column, Device, Platform, ProviderKind};
use crate::time::unix_millis;

/// A UUID's length: a send's name is `<notification id>:<device id>`.
const ID_LEN: usize = 36;

const PUT: &str = r#"
local pre, nid, claim, due, created, deadline, payload, user =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local b = pre .. 'b:' .. nid
local added = {}
for i = 9, #ARGV, 5 do
  local member = nid .. ':' .. ARGV[i]
  local key = pre .. 'e:' .. member
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'u', user, 't', ARGV[i + 1], 'p', ARGV[i + 2], 'v', ARGV[i + 3],
      'ap', ARGV[i + 4], 'a', 0, 'c', created, 'dl', deadline, 'k', claim)
    redis.call('ZADD', KEYS[1], due, member)
    redis.call('ZADD', KEYS[2], created, member)
    redis.call('HSET', b, 'm:' .. ARGV[i], 1)
    added[#added + 1] = ARGV[i]
  end
end
if #added > 0 then
  redis.call('HSET', b, 'n', payload)
  redis.call('HINCRBY', b, 'r', #added)
end
return added
"#;

const CLAIM: &str = r#"
local pre, now, lease_end, limit, claim = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, m in ipairs(members) do
  local key = pre .. 'e:' .. m
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', KEYS[1], lease_end, m)
    redis.call('HSET', key, 'k', claim)
    local f = redis.call('HMGET', key, 'u', 't', 'p', 'a', 'c', 'dl', 'e', 'v', 'ap')
    local payload = redis.call('HGET', pre .. 'b:' .. string.sub(m, 1, 36), 'n')
    out[#out + 1] = {m, f[1] or '', f[2] or '', f[3] or '', f[4] or '0', f[5] or '0',
      f[6] or '0', f[7] or '', payload or '', f[8] or '', f[9] or ''}
  else
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZREM', KEYS[2], m)
  end
end
return out
"#;

/// -1: another claim holds it; 0: done; 1: the last, none accepted; 2: the last, some accepted.
const FINISH: &str = r#"
local pre, m, claim, accepted = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local key = pre .. 'e:' .. m
if redis.call('HGET', key, 'k') ~= claim then return -1 end
redis.call('DEL', key)
redis.call('ZREM', KEYS[1], m)
redis.call('ZREM', KEYS[2], m)
local b = pre .. 'b:' .. string.sub(m, 1, 36)
redis.call('HDEL', b, 'm:' .. string.sub(m, 38))
local acc = redis.call('HINCRBY', b, 'a', accepted)
if redis.call('HINCRBY', b, 'r', -1) > 0 then return 0 end
redis.call('DEL', b)
if acc > 0 then return 2 end
return 1
"#;

const RETRY: &str = r#"
local pre, m, claim, due, attempts, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key = pre .. 'e:' .. m
if redis.call('HGET', key, 'k') ~= claim then return 0 end
redis.call('HSET', key, 'a', attempts, 'e', err, 'k', '')
redis.call('ZADD', KEYS[1], due, m)
return 1
"#;

/// Flat triples (attempts, due, claimed 0/1) of one notification's queued sends.
const PROGRESS: &str = r#"
local pre, nid = ARGV[1], ARGV[2]
local out = {}
for _, f in ipairs(redis.call('HKEYS', pre .. 'b:' .. nid)) do
  if string.sub(f, 1, 2) == 'm:' then
    local m = nid .. ':' .. string.sub(f, 3)
    local v = redis.call('HMGET', pre .. 'e:' .. m, 'a', 'k')
    local due = redis.call('ZSCORE', KEYS[1], m)
    if due then
      local claimed = 0
      if v[2] and v[2] ~= '' then claimed = 1 end
      out[#out + 1] = tonumber(v[1] or '0')
      out[#out + 1] = tonumber(due)
      out[#out + 1] = claimed
    end
  end
end
return out
"#;

pub struct RedisQueue {
    client: Client,
    /// `{ns}:pq:`
    prefix: String,
    due: String,
    age: String,
}

fn failed(e: impl std::fmt::Display) -> QueueError {
    QueueError(e.to_string())
}

impl RedisQueue {
    pub async fn connect(cfg: &BrokerConfig) -> Result<RedisQueue, QueueError> {
        let client = crate::backend::redis::client(cfg).map_err(failed)?;
        client.init().await.map_err(failed)?;
        let prefix = format!("{{{}}}:pq:", cfg.namespace);
        Ok(RedisQueue {
            client,
            due: format!("{prefix}due"),
            age: format!("{prefix}age"),
            prefix,
        })
    }

    fn keys(&self) -> Vec<String> {
        vec![self.due.clone(), self.age.clone()]
    }
}

fn member(entry: &Entry) -> String {
    format!("{}:{}", entry.notification.id, entry.device.device_id)
}

/// One claimed row back into an entry; `None` when it is unreadable.
fn entry(row: Vec<String>, claim: &Arc<str>) -> Option<Entry> {
    let [m, user, token, platform, attempts, created, deadline, error, payload, provider, app]: [String; 11] =
        row.try_into().ok()?;
    if m.len() <= ID_LEN {
        return None;
    }
    let device_id = m[ID_LEN + 1..].to_string();
    let n = match Notification::from_json(Bytes::from(payload)) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(send = %m, error = %e, "push queue: unreadable payload");
            return None;
        }
    };
    Some(Entry {
        notification: Arc::new(n),
        device: Device {
            device_id,
            user_id: user,
            platform: Platform::parse(&platform),
            provider: ProviderKind::parse(&provider),
            app: app_from_column(&app),
            token,
            updated_at: 0,
        },
        attempts: attempts.parse().unwrap_or(0),
        created_ms: created.parse().unwrap_or(0),
        deadline_ms: deadline.parse().unwrap_or(0),
        last_error: (!error.is_empty()).then_some(error),
        claim: claim.clone(),
    })
}

impl PushQueue for RedisQueue {
    fn put(&self, sends: NewSends<'_>) -> QueueFuture<Vec<String>> {
        let client = self.client.clone();
        let keys = self.keys();
        let n = sends.notification;
        let mut args: Vec<String> = vec![
            self.prefix.clone(),
            n.id.clone(),
            sends.claim.unwrap_or("").to_string(),
            sends.due_ms.to_string(),
            unix_millis().to_string(),
            sends.deadline_ms.to_string(),
            String::from_utf8_lossy(&n.json()).into_owned(),
            n.user_id.clone(),
        ];
        for d in sends.devices {
            args.extend([
                d.device_id.clone(),
                d.token.clone(),
                d.platform.as_str().to_string(),
                d.provider.as_str().to_string(),
                app_column(d.app.as_ref()).to_string(),
            ]);
        }
        async move {
            let stored: Vec<String> = client.eval(PUT, keys, args).await.map_err(failed)?;
            Ok(stored)
        }
        .boxed()
    }

    fn claim(&self, claim: Arc<str>, limit: usize, lease_end_ms: u64) -> QueueFuture<Vec<Entry>> {
        let client = self.client.clone();
        let keys = self.keys();
        let args = vec![
            self.prefix.clone(),
            unix_millis().to_string(),
            lease_end_ms.to_string(),
            limit.to_string(),
            claim.to_string(),
        ];
        async move {
            let rows: Vec<Vec<String>> = client.eval(CLAIM, keys, args).await.map_err(failed)?;
            Ok(rows.into_iter().filter_map(|r| entry(r, &claim)).collect())
        }
        .boxed()
    }

    fn finish(&self, entry: &Entry, accepted: bool) -> QueueFuture<Finished> {
        let client = self.client.clone();
        let keys = self.keys();
        let args = vec![
            self.prefix.clone(),
            member(entry),
            entry.claim.to_string(),
            u8::from(accepted).to_string(),
        ];
        async move {
            let r: i64 = client.eval(FINISH, keys, args).await.map_err(failed)?;
            Ok(match r {
                -1 => Finished::Lost,
                0 => Finished::Done,
                2 => Finished::Last { accepted: true },
                _ => Finished::Last { accepted: false },
            })
        }
        .boxed()
    }

    fn retry(&self, entry: &Entry, due_ms: u64, error: &str) -> QueueFuture<bool> {
        let client = self.client.clone();
        let keys = self.keys();
        let args = vec![
            self.prefix.clone(),
            member(entry),
            entry.claim.to_string(),
            due_ms.to_string(),
            (entry.attempts + 1).to_string(),
            error.to_string(),
        ];
        async move {
            let r: i64 = client.eval(RETRY, keys, args).await.map_err(failed)?;
            Ok(r == 1)
        }
        .boxed()
    }

    fn stats(&self) -> QueueFuture<QueueStats> {
        let client = self.client.clone();
        let (due, age) = (self.due.clone(), self.age.clone());
        async move {
            let depth: u64 = client.zcard(&due).await.map_err(failed)?;
            let oldest: Vec<(String, f64)> = client
                .zrange(&age, 0, 0, None, false, None, true)
                .await
                .map_err(failed)?;
            Ok(QueueStats {
                depth,
                oldest_ms: oldest.first().map(|(_, score)| *score as u64),
            })
        }
        .boxed()
    }

    fn progress(&self, id: &str) -> QueueFuture<Option<Progress>> {
        let client = self.client.clone();
        let keys = vec![self.due.clone()];
        let args = vec![self.prefix.clone(), id.to_string()];
        async move {
            let flat: Vec<i64> = client.eval(PROGRESS, keys, args).await.map_err(failed)?;
            Ok(progress_of(flat.chunks_exact(3).map(|c| {
                (
                    u32::try_from(c[0]).unwrap_or(0),
                    c[1].max(0) as u64,
                    c[2] == 1,
                )
            })))
        }
        .boxed()
    }

    fn recover(&self) -> QueueFuture<u64> {
        // Other nodes may hold claims: each ends with its lease.
        async { Ok(0) }.boxed()
    }
}
