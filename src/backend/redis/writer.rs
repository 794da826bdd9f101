//! The Redis ledger's updates that nobody waits for (status, writes, releases): one task sends
//! them in pipelines and retries a batch that failed (every command in it is idempotent, or
//! de-duplicated on read), so an outage of a few seconds delays them rather than losing them.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::Pipeline;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand, Expiration, SetOptions, Value};
use tokio::sync::mpsc;

use super::keys::{Keys, UPDATE};
use crate::backend::ledger::LedgerConfig;
use crate::backend::record::{field, DeliveryChannel, Status};
use crate::metrics::Metrics;
use crate::notification::SharedNotification;
use crate::time::unix_millis;

/// Fire-and-forget updates, applied in order by the writer task.
pub(super) enum Op {
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

/// Applies fire-and-forget updates in pipelines of up to 512, retrying a failed batch.
pub(super) async fn writer(
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
            let sse = field(DeliveryChannel::Sse, device.as_deref().unwrap_or(""));
            let age_ms = unix_millis().saturating_sub(n.sent_at);
            if age_ms < cfg.retention_ms / 2 {
                p.hset::<(), _, _>(keys.record(&n.id), (sse, Status::Delivered.as_str()))
                    .await?;
            } else {
                eval_in(
                    p,
                    UPDATE,
                    vec![keys.record(&n.id)],
                    vec![String::new(), sse, Status::Delivered.as_str().to_string()],
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
