//! Each user's inbox head (the newest id kept), as this node last learnt it: what lets
//! `If-None-Match` be answered without reading the inbox. This node's appends advance it when
//! they are stored; other nodes' appends arrive through the engine's change feed (Redis
//! pub/sub), and a feed that may have missed some clears it all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

/// Most users whose head is kept: past it, a head is read and not remembered.
const MAX_USERS: usize = 1 << 20;

/// A user's newest id; `None`: the inbox is empty.
pub type Head = Option<Arc<str>>;

enum Slot {
    /// A read of the head is under way; only the read that put this token may fill it.
    Reading(u64),
    Known(Head),
}

/// What [`Versions::get`] found.
pub enum Lookup {
    Known(Head),
    /// Read the head from the engine, then [`Versions::fill`] with this token.
    Miss(u64),
}

#[derive(Default)]
pub struct Versions {
    heads: DashMap<String, Slot, foldhash::fast::RandomState>,
    tokens: AtomicU64,
}

impl Versions {
    pub fn get(&self, user: &str) -> Lookup {
        if let Some(slot) = self.heads.get(user) {
            if let Slot::Known(head) = &*slot {
                return Lookup::Known(head.clone());
            }
        }
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        if self.heads.len() < MAX_USERS {
            self.heads.insert(user.to_string(), Slot::Reading(token));
        }
        Lookup::Miss(token)
    }

    /// Remembers the head that the read of `token` found, unless an append came in between
    /// (then the next request reads again).
    pub fn fill(&self, user: &str, token: u64, head: Head) {
        if let Some(mut slot) = self.heads.get_mut(user) {
            if matches!(*slot, Slot::Reading(t) if t == token) {
                *slot = Slot::Known(head);
            }
        }
    }

    /// `id` is now in `user`'s inbox. Users nobody asked about here are not remembered.
    pub fn advance(&self, user: &str, id: &str) {
        let forget = match self.heads.get_mut(user) {
            None => return,
            Some(mut slot) => match &mut *slot {
                Slot::Known(head) => {
                    if head.as_deref().is_none_or(|h| h < id) {
                        *head = Some(id.into());
                    }
                    false
                }
                Slot::Reading(_) => true,
            },
        };
        if forget {
            self.heads.remove(user);
        }
    }

    /// Forgets every head (the change feed may have missed appends).
    pub fn clear(&self) {
        self.heads.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_an_append_is_not_remembered() {
        let v = Versions::default();
        let Lookup::Miss(token) = v.get("u") else {
            panic!("nothing known yet")
        };
        v.advance("u", "b");
        v.fill("u", token, Some("a".into()));
        assert!(matches!(v.get("u"), Lookup::Miss(_)));
    }

    #[test]
    fn a_known_head_only_moves_forward() {
        let v = Versions::default();
        let Lookup::Miss(token) = v.get("u") else {
            panic!("nothing known yet")
        };
        v.fill("u", token, Some("b".into()));
        v.advance("u", "a");
        assert!(matches!(v.get("u"), Lookup::Known(Some(h)) if &*h == "b"));
        v.advance("u", "c");
        assert!(matches!(v.get("u"), Lookup::Known(Some(h)) if &*h == "c"));
        v.clear();
        assert!(matches!(v.get("u"), Lookup::Miss(_)));
    }
}
