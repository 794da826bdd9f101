//! The multi-node ledger in Redis, so that every record, token and replay buffer outlives the
//! node that wrote it. Its keys are laid out in `keys.rs`; the updates nobody waits for go
//! through the writer task of `writer.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::{Expiration, SetOptions, Value};
use futures::future::FutureExt;
use tokio::sync::mpsc;

use super::keys::{Keys, CLAIM, TAKE, UPDATE};
use super::unavailable;
use super::writer::{writer, Op};
use crate::backend::ledger::{
    after, AckResult, Due, IdemBegin, Ledger, LedgerConfig, Owner, Take, CLAIM_BATCH,
    CLAIM_LEASE_MS, IDEMPOTENCY_TTL_MS,
};
use crate::backend::record::{Delivery, DeliveryChannel, RawRecord, Route, Status};
use crate::backend::BackendFuture;
use crate::metrics::{Label, Metrics};
use crate::notification::{Notification, SharedNotification};
use crate::time::unix_millis;

pub struct RedisLedger {
    client: Client,
    /// One connection shared with the broker's publishes (a single Redis, not a cluster).
    ordered: bool,
    keys: Keys,
    cfg: LedgerConfig,
    ops: mpsc::UnboundedSender<Op>,
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

    /// The record of `id`; with `caller` (a producer's name), only if that producer created it.
    fn read(&self, id: &str, caller: Option<String>) -> BackendFuture<Option<RawRecord>> {
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
            // Another producer's record, or one without an owner, reads as unknown to a
            // producer.
            if let Some(caller) = &caller {
                if h.contains_key("x") || h.get("o") != Some(caller) {
                    return Ok(None);
                }
            }
            let mut deliveries: Vec<Delivery> = h
                .iter()
                .filter_map(|(k, v)| Delivery::parse(k, v))
                .collect();
            deliveries.sort_by(|a, b| {
                (a.channel.as_str(), &a.device).cmp(&(b.channel.as_str(), &b.device))
            });
            let status = if status == Status::Pending
                && deliveries.iter().any(|d| d.channel == DeliveryChannel::Sse)
            {
                Status::Delivered
            } else {
                status
            };
            Ok(Some(RawRecord {
                id,
                user_id: h.remove("u").unwrap_or_default(),
                created_at: h.get("c").and_then(|c| c.parse().ok()).unwrap_or(0),
                route: h.remove("r").map_or(Some(Route::Sse), |r| Route::parse(&r)),
                status,
                deliveries,
            }))
        }
        .boxed()
    }
}

impl Ledger for RedisLedger {
    fn begin(&self, n: &SharedNotification, owner: Owner<'_>) -> BackendFuture<()> {
        let client = self.client.clone();
        let key = self.keys.record(&n.id);
        let due = self.keys.due.clone();
        let id = n.id.clone();
        let fields: Vec<(String, Value)> = vec![
            ("u".into(), n.user_id.clone().into()),
            ("o".into(), owner.name.into()),
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

    fn set_delivery(&self, id: &str, delivery: Delivery) {
        self.send(Op::Update {
            id: id.to_string(),
            status: None,
            field: Some((delivery.field(), delivery.value())),
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

    fn record(&self, id: &str, caller: Owner<'_>) -> BackendFuture<Option<RawRecord>> {
        self.read(id, Some(caller.name.to_string()))
    }

    fn operator_record(&self, id: &str) -> BackendFuture<Option<RawRecord>> {
        self.read(id, None)
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
    fn stream_ids_start_with_their_time() {
        assert_eq!(stream_id_ms("1700000000000-3"), 1_700_000_000_000);
    }
}
