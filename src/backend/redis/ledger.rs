//! The multi-node ledger in Redis, so that every record, token and replay buffer outlives the
//! node that wrote it.
//!
//! - `{ns}:rec:{id}`: hash `u` (user), `c` (created, ms), `s` (status; `pending` with an
//!   `sse:*` field reads as `delivered`), `r` (route, when not
//!   `sse`), `p` (the
//!   notification, for a fallback sent by another node), `sse:<device>` / `fcm:<device>`
//!   (per-channel outcome), `x` (refused: a tombstone); expires after
//!   `delivery.record_retention_secs`.
//! - `{ns}:due` and `{ns}:claimed` (one hash tag, so the scripts that move tokens between them
//!   work on a Redis Cluster too): sorted sets of ids by deadline / by claim lease end.
//! - `{ns}:r:{user}`: stream of what the user's streams wrote, capped (`MAXLEN ~`) and expiring
//!   after the replay window.
//! - `{ns}:i:{producer}:{key}`: idempotency answers, 24 h.
//!
//! Updates nobody waits for (status, writes, releases) go through one writer task that sends
//! them in pipelines and retries a batch that failed (every command in it is idempotent, or
//! de-duplicated on read), so an outage of a few seconds delays them rather than losing them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::clients::Pipeline;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Expiration, SetOptions, Value};
use futures::future::FutureExt;
use tokio::sync::mpsc;

use super::unavailable;
use crate::backend::ledger::{
    after, sse_field, AckResult, Due, IdemBegin, Ledger, LedgerConfig, RawRecord, Status, Take,
    CLAIM_BATCH, CLAIM_LEASE_MS, IDEMPOTENCY_TTL_MS,
};
use crate::backend::BackendFuture;
use crate::metrics::{Metrics, Route};
use crate::notification::{Notification, SharedNotification};
use crate::time::unix_millis;

/// Raises a record's status (never lowers it) and/or sets one field; returns the status before,
/// or nil when the record does not exist (nothing is created then).
const UPDATE: &str = r#"
local cur = redis.call('HGET', KEYS[1], 's')
if not cur then return false end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end
if ARGV[1] ~= '' then
  local rank = {pending = 0, delivered = 1}
  if (rank[ARGV[1]] or 2) > (rank[cur] or 2) then redis.call('HSET', KEYS[1], 's', ARGV[1]) end
end
return cur
"#;

/// 1: taken from `due`; 2: a sweep holds it in `claimed`; 0: gone.
const TAKE: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 2 end
return 0
"#;

/// Moves tokens past their deadline to `claimed` with a lease, and renews the lease of claims
/// whose claimer did not finish in time; returns their ids.
const CLAIM: &str = r#"
local now = tonumber(ARGV[1])
local until_ = now + tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], until_, id)
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(stale) do
  redis.call('ZADD', KEYS[2], until_, id)
  ids[#ids + 1] = id
end
return ids
"#;

/// Fire-and-forget updates, applied in order by the writer task.
enum Op {
    Update {
        id: String,
        status: Option<Status>,
        field: Option<(String, String)>,
    },
    Written {
        n: SharedNotification,
        device: Option<String>,
        ack: bool,
    },
    Release(String),
    Forget(String),
    IdemFinish {
        scope: String,
        answer: Option<String>,
    },
}

#[derive(Clone)]
struct Keys {
    ns: String,
    due: String,
    claimed: String,
}

impl Keys {
    fn new(ns: &str) -> Keys {
        Keys {
            ns: ns.to_string(),
            due: format!("{{{ns}}}:due"),
            claimed: format!("{{{ns}}}:claimed"),
        }
    }
    fn record(&self, id: &str) -> String {
        format!("{}:rec:{id}", self.ns)
    }
    fn replay(&self, user: &str) -> String {
        format!("{}:r:{user}", self.ns)
    }
    fn idem(&self, scope: &str) -> String {
        format!("{}:i:{scope}", self.ns)
    }
}

pub struct RedisLedger {
    client: Client,
    /// One connection shared with the broker's publishes (a single Redis, not a cluster).
    ordered: bool,
    keys: Keys,
    cfg: LedgerConfig,
    ops: mpsc::UnboundedSender<Op>,
}

fn xadd() -> CustomCommand {
    CustomCommand::new_static("XADD", ClusterHash::FirstKey, false)
}

/// `EVAL script numkeys key...` in a pipeline (fred's pipelines have no `eval`), routed by the
/// first key.
async fn eval_in(
    p: &Pipeline<Client>,
    script: &'static str,
    keys: Vec<String>,
    args: Vec<String>,
) -> Result<(), Error> {
    let mut all: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
    all.push(script.into());
    all.push((keys.len() as i64).into());
    all.extend(keys.into_iter().map(Value::from));
    all.extend(args.into_iter().map(Value::from));
    p.custom::<(), _>(
        CustomCommand::new_static("EVAL", ClusterHash::Offset(2), false),
        all,
    )
    .await
}

impl RedisLedger {
    /// `client` is connected already: the broker's publisher (see [`super::connect`]);
    /// `ordered` when it is one connection to a single Redis.
    pub fn start(
        client: Client,
        ordered: bool,
        namespace: &str,
        cfg: LedgerConfig,
        metrics: Arc<Metrics>,
    ) -> RedisLedger {
        let keys = Keys::new(namespace);
        let (ops, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(
            client.clone(),
            keys.clone(),
            cfg.clone(),
            rx,
            metrics,
        ));
        RedisLedger {
            client,
            ordered,
            keys,
            cfg,
            ops,
        }
    }

    fn send(&self, op: Op) {
        let _ = self.ops.send(op);
    }
}

/// Applies fire-and-forget updates in pipelines of up to 512, retrying a failed batch.
async fn writer(
    client: Client,
    keys: Keys,
    cfg: LedgerConfig,
    mut rx: mpsc::UnboundedReceiver<Op>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        for attempt in 0u32.. {
            let p = client.pipeline();
            for op in &batch {
                if let Err(e) = queue(&p, &keys, &cfg, op).await {
                    tracing::error!(error = %e, "ledger: could not queue an update");
                }
            }
            let results: Vec<Result<Value, Error>> = p.try_all().await;
            let failed: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
            if failed.is_empty() {
                break;
            }
            // Only a lost connection is worth a retry; Redis refusing a command is final.
            let transient = failed.iter().any(|e| {
                matches!(
                    e.kind(),
                    ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled
                )
            });
            if !transient || attempt >= 20 {
                metrics.ledger_errors.inc_by(failed.len() as u64);
                tracing::error!(
                    failed = failed.len(),
                    error = %failed[0],
                    "ledger: Redis refused updates; records may be stale"
                );
                break;
            }
            if attempt == 0 {
                tracing::warn!(error = %failed[0], failed = failed.len(), "ledger: update batch failed; retrying");
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10) + 1))).await;
        }
        batch.clear();
    }
}

async fn queue(
    p: &Pipeline<Client>,
    keys: &Keys,
    cfg: &LedgerConfig,
    op: &Op,
) -> Result<(), Error> {
    match op {
        Op::Update { id, status, field } => {
            let (f, v) = field.clone().unwrap_or_default();
            let s = status.map(Status::as_str).unwrap_or("");
            eval_in(p, UPDATE, vec![keys.record(id)], vec![s.to_string(), f, v]).await
        }
        Op::Written { n, device, ack } => {
            // Without acks the write settles it: take the token (nobody else can own it
            // before its deadline, and the deadline sweep reads the record before sending).
            if !ack {
                p.zrem::<(), _, _>(&keys.due, n.id.clone()).await?;
            }
            // "Delivered" is a pending record with an sse:* field (see `record`): one HSET.
            // A notification that waited in a queue for half its record's life might find the
            // record gone: then only the script, which creates nothing, may touch it.
            let age_ms = unix_millis().saturating_sub(n.sent_at);
            if age_ms < cfg.retention_ms / 2 {
                p.hset::<(), _, _>(
                    keys.record(&n.id),
                    (sse_field(device.as_deref()), "delivered"),
                )
                .await?;
            } else {
                eval_in(
                    p,
                    UPDATE,
                    vec![keys.record(&n.id)],
                    vec![
                        String::new(),
                        sse_field(device.as_deref()),
                        "delivered".to_string(),
                    ],
                )
                .await?;
            }
            let key = keys.replay(&n.user_id);
            let args: Vec<Value> = vec![
                key.clone().into(),
                "MAXLEN".into(),
                "~".into(),
                (cfg.replay_capacity as i64).into(),
                "*".into(),
                "i".into(),
                n.id.clone().into(),
                "p".into(),
                Value::Bytes(n.json()),
            ];
            p.custom::<(), _>(xadd(), args).await?;
            p.pexpire::<(), _>(key, cfg.replay_window_ms as i64, None)
                .await
        }
        Op::Release(id) => p.zrem::<(), _, _>(&keys.claimed, id.clone()).await,
        Op::Forget(id) => {
            // A tombstone rather than DEL: if the refused request's own writes reach Redis
            // late (replayed by the client after a reconnect), the record stays refused.
            p.zrem::<(), _, _>(&keys.due, id.clone()).await?;
            p.hset::<(), _, _>(keys.record(id), ("x", 1)).await?;
            p.pexpire::<(), _>(keys.record(id), cfg.retention_ms as i64, None)
                .await
        }
        Op::IdemFinish { scope, answer } => match answer {
            Some(a) => {
                p.set::<(), _, _>(
                    keys.idem(scope),
                    a.clone(),
                    Some(Expiration::KEEPTTL),
                    Some(SetOptions::XX),
                    false,
                )
                .await
            }
            None => p.del::<(), _>(keys.idem(scope)).await,
        },
    }
}

impl Ledger for RedisLedger {
    fn begin(&self, n: &SharedNotification) -> BackendFuture<()> {
        let client = self.client.clone();
        let key = self.keys.record(&n.id);
        let due = self.keys.due.clone();
        let id = n.id.clone();
        let fields: Vec<(String, Value)> = vec![
            ("u".into(), n.user_id.clone().into()),
            ("c".into(), (n.sent_at as i64).into()),
            ("s".into(), Status::Pending.as_str().into()),
            ("p".into(), Value::Bytes(n.json())),
        ];
        let retention = self.cfg.retention_ms as i64;
        let deadline = (unix_millis() + self.cfg.ack_timeout_ms) as f64;
        async move {
            let p = client.pipeline();
            let queued: Result<(), Error> = async {
                p.hset::<(), _, _>(&key, fields).await?;
                p.pexpire::<(), _>(&key, retention, None).await?;
                p.zadd::<(), _, _>(&due, None, None, false, false, (deadline, id))
                    .await
            }
            .await;
            queued.map_err(unavailable)?;
            let _: Vec<Value> = p.all().await.map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn ordered_with_publish(&self) -> bool {
        self.ordered
    }

    fn forget(&self, id: &str) {
        self.send(Op::Forget(id.to_string()));
    }

    fn routed(&self, id: &str, route: Route) {
        // A record without a route is an `sse` one (see `record`): the common case costs no
        // write.
        if route == Route::Sse {
            return;
        }
        self.send(Op::Update {
            id: id.to_string(),
            status: None,
            field: Some(("r".into(), route.as_str().into())),
        });
    }

    fn take(&self, id: &str) -> BackendFuture<Take> {
        let client = self.client.clone();
        let keys = vec![self.keys.due.clone(), self.keys.claimed.clone()];
        let id = id.to_string();
        async move {
            let r: i64 = client
                .eval(TAKE, keys, vec![id])
                .await
                .map_err(unavailable)?;
            Ok(match r {
                1 => Take::Taken,
                2 => Take::Claimed,
                _ => Take::Gone,
            })
        }
        .boxed()
    }

    fn set_status(&self, id: &str, status: Status) {
        self.send(Op::Update {
            id: id.to_string(),
            status: Some(status),
            field: None,
        });
    }

    fn set_delivery(&self, id: &str, field: String, value: String) {
        self.send(Op::Update {
            id: id.to_string(),
            status: None,
            field: Some((field, value)),
        });
    }

    fn written(&self, n: &SharedNotification, device: Option<&str>, ack: bool) {
        self.send(Op::Written {
            n: n.clone(),
            device: device.map(str::to_string),
            ack,
        });
    }

    fn replay(&self, user: &str, last_id: &str) -> BackendFuture<Option<Vec<SharedNotification>>> {
        let client = self.client.clone();
        let keys = self.keys.clone();
        let key = self.keys.replay(user);
        let last_id = last_id.to_string();
        let oldest = unix_millis().saturating_sub(self.cfg.replay_window_ms);
        async move {
            let entries: Vec<(String, HashMap<String, Bytes>)> = client
                .xrange_values(&key, "-", "+", None)
                .await
                .map_err(unavailable)?;
            let entries: Vec<(String, Bytes)> = entries
                .into_iter()
                .filter(|(sid, _)| stream_id_ms(sid) >= oldest)
                .filter_map(|(_, mut f)| {
                    let id = String::from_utf8(f.remove("i")?.to_vec()).ok()?;
                    Some((id, f.remove("p")?))
                })
                .collect();
            let Some(missed) = after(entries, &last_id) else {
                return Ok(None);
            };
            if missed.is_empty() {
                return Ok(Some(Vec::new()));
            }
            let p = client.pipeline();
            for (id, _) in &missed {
                p.hmget::<(), _, _>(keys.record(id), vec!["s", "x"])
                    .await
                    .map_err(unavailable)?;
            }
            let statuses: Vec<(Option<String>, Option<String>)> =
                p.all().await.map_err(unavailable)?;
            let out = missed
                .into_iter()
                .zip(statuses)
                .filter(|(_, (s, refused))| {
                    refused.is_none()
                        && s.as_deref()
                            .and_then(Status::parse)
                            .is_some_and(|s| !s.is_final())
                })
                .filter_map(|((_, payload), _)| Notification::from_json(payload).ok().map(Arc::new))
                .collect();
            Ok(Some(out))
        }
        .boxed()
    }

    fn claim_due(&self) -> BackendFuture<Vec<Due>> {
        let client = self.client.clone();
        let keys = self.keys.clone();
        async move {
            let ids: Vec<String> = client
                .eval(
                    CLAIM,
                    vec![keys.due.clone(), keys.claimed.clone()],
                    vec![
                        unix_millis() as i64,
                        CLAIM_LEASE_MS as i64,
                        CLAIM_BATCH as i64,
                    ],
                )
                .await
                .map_err(unavailable)?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let p = client.pipeline();
            for id in &ids {
                p.hmget::<(), _, _>(keys.record(id), vec!["s", "p", "x"])
                    .await
                    .map_err(unavailable)?;
            }
            let rows: Vec<(Option<String>, Option<Bytes>, Option<String>)> =
                p.all().await.map_err(unavailable)?;
            Ok(ids
                .into_iter()
                .zip(rows)
                .map(|(id, (s, payload, refused))| {
                    let s = s.filter(|_| refused.is_none());
                    let record = s
                        .as_deref()
                        .and_then(Status::parse)
                        .zip(payload.and_then(|p| Notification::from_json(p).ok()));
                    Due {
                        id,
                        record: record.map(|(s, n)| (s, Arc::new(n))),
                    }
                })
                .collect())
        }
        .boxed()
    }

    fn release(&self, id: &str) {
        self.send(Op::Release(id.to_string()));
    }

    fn ack(&self, user: &str, id: &str) -> BackendFuture<AckResult> {
        let client = self.client.clone();
        let keys = self.keys.clone();
        let user = user.to_string();
        let id = id.to_string();
        async move {
            let owner: Option<String> = client
                .hget(keys.record(&id), "u")
                .await
                .map_err(unavailable)?;
            match owner {
                None => return Ok(AckResult::Unknown),
                Some(o) if o != user => return Ok(AckResult::Foreign),
                Some(_) => {}
            }
            let taken: i64 = client
                .eval(
                    TAKE,
                    vec![keys.due.clone(), keys.claimed.clone()],
                    vec![id.clone()],
                )
                .await
                .map_err(unavailable)?;
            if taken == 2 {
                return Ok(AckResult::Late);
            }
            let before: Option<String> = client
                .eval(
                    UPDATE,
                    vec![keys.record(&id)],
                    vec![Status::Acked.as_str(), "", ""],
                )
                .await
                .map_err(unavailable)?;
            Ok(match before.as_deref().and_then(Status::parse) {
                Some(s) if s.is_fcm() => AckResult::Late,
                _ => AckResult::Acked,
            })
        }
        .boxed()
    }

    fn record(&self, id: &str) -> BackendFuture<Option<RawRecord>> {
        let client = self.client.clone();
        let key = self.keys.record(id);
        let id = id.to_string();
        async move {
            let h: HashMap<String, Bytes> = client.hgetall(&key).await.map_err(unavailable)?;
            let mut h: HashMap<String, String> = h
                .into_iter()
                .filter(|(k, _)| k != "p")
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            let Some(status) = h.get("s").and_then(|s| Status::parse(s)) else {
                return Ok(None);
            };
            if h.contains_key("x") {
                return Ok(None);
            }
            let mut deliveries: Vec<(String, String)> = h
                .iter()
                .filter(|(k, _)| k.starts_with("sse:") || k.starts_with("fcm:"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            deliveries.sort();
            let status = if status == Status::Pending
                && deliveries.iter().any(|(k, _)| k.starts_with("sse:"))
            {
                Status::Delivered
            } else {
                status
            };
            Ok(Some(RawRecord {
                id,
                user_id: h.remove("u").unwrap_or_default(),
                created_at: h.get("c").and_then(|c| c.parse().ok()).unwrap_or(0),
                route: Some(h.remove("r").unwrap_or_else(|| Route::Sse.as_str().into())),
                status,
                deliveries,
            }))
        }
        .boxed()
    }

    fn idem_begin(&self, scope: &str) -> BackendFuture<IdemBegin> {
        let client = self.client.clone();
        let key = self.keys.idem(scope);
        async move {
            let set: Option<String> = client
                .set(
                    &key,
                    "",
                    Some(Expiration::PX(IDEMPOTENCY_TTL_MS as i64)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .map_err(unavailable)?;
            if set.is_some() {
                return Ok(IdemBegin::New);
            }
            let answer: Option<String> = client.get(&key).await.map_err(unavailable)?;
            Ok(match answer {
                Some(a) if !a.is_empty() => IdemBegin::Answer(a),
                // Empty: in flight. Missing: it failed and was freed just now.
                Some(_) => IdemBegin::InFlight,
                None => IdemBegin::InFlight,
            })
        }
        .boxed()
    }

    fn idem_finish(&self, scope: &str, answer: Option<String>) {
        self.send(Op::IdemFinish {
            scope: scope.to_string(),
            answer,
        });
    }
}

/// The millisecond part of a Redis stream entry id (`<ms>-<seq>`).
fn stream_id_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_share_a_hash_tag_for_tokens() {
        let k = Keys::new("sb");
        assert_eq!(k.due, "{sb}:due");
        assert_eq!(k.claimed, "{sb}:claimed");
        assert_eq!(k.record("n1"), "sb:rec:n1");
        assert_eq!(k.replay("u1"), "sb:r:u1");
        assert_eq!(stream_id_ms("1700000000000-3"), 1_700_000_000_000);
    }
}
