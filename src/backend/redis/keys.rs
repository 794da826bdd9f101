//! The Redis ledger's keys, and the Lua scripts that change them atomically.
//!
//! - `{ns}:rec:{id}`: hash `u` (user), `o` (the creating producer's key name: only that
//!   producer may read the record), `c` (created, ms), `s` (status; `pending` with an
//!   `sse:*` field reads as `delivered`), `r` (route, when not `sse`), `p` (the notification,
//!   for a fallback sent by another node), `sse:<device>` / `fcm:<device>` (per-channel
//!   outcome), `x` (refused: a tombstone); expires after `delivery.record_retention_secs`.
//! - `{ns}:due` and `{ns}:claimed` (one hash tag, so the scripts that move tokens between them
//!   work on a Redis Cluster too): sorted sets of ids by deadline / by claim lease end.
//! - `{ns}:r:{user}`: stream of what the user's streams wrote, capped (`MAXLEN ~`) and expiring
//!   after the replay window.
//! - `{ns}:i:{producer}:{key}`: idempotency answers, 24 h.

#[derive(Clone)]
pub(super) struct Keys {
    ns: String,
    pub(super) due: String,
    pub(super) claimed: String,
}

impl Keys {
    pub(super) fn new(ns: &str) -> Keys {
        Keys {
            ns: ns.to_string(),
            due: format!("{{{ns}}}:due"),
            claimed: format!("{{{ns}}}:claimed"),
        }
    }
    pub(super) fn record(&self, id: &str) -> String {
        format!("{}:rec:{id}", self.ns)
    }
    pub(super) fn replay(&self, user: &str) -> String {
        format!("{}:r:{user}", self.ns)
    }
    pub(super) fn idem(&self, scope: &str) -> String {
        format!("{}:i:{scope}", self.ns)
    }
}

/// Raises a record's status (never lowers it) and/or sets one field; returns the status before,
/// or nil when the record does not exist (nothing is created then).
pub(super) const UPDATE: &str = r#"
local cur = redis.call('HGET', KEYS[1], 's')
if not cur then return false end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end
if ARGV[1] ~= '' then
  local rank = {pending = 0, delivered = 1, fcm_retrying = 1}
  if (rank[ARGV[1]] or 2) > (rank[cur] or 2) then redis.call('HSET', KEYS[1], 's', ARGV[1]) end
end
return cur
"#;

/// 1: taken from `due`; 2: a sweep holds it in `claimed`; 0: gone.
pub(super) const TAKE: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 2 end
return 0
"#;

/// Moves tokens past their deadline to `claimed` with a lease, and renews the lease of claims
/// whose claimer did not finish in time; returns their ids.
pub(super) const CLAIM: &str = r#"
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
    }
}
