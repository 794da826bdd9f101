//! Each user's streams on this node, split into [`SLICES`] maps by a hash of the user's name:
//! the heartbeat visits one map per tick instead of going through every user to pick out its
//! slice, which at many streams cost more than the pings themselves.

use std::sync::Arc;

use dashmap::DashMap;

use super::Stream;

/// How many maps the users are split into; a power of two.
pub(super) const SLICES: u32 = 16;

pub(super) type UserStreams = DashMap<Arc<str>, Vec<Arc<Stream>>>;

pub(super) struct Users {
    slices: Box<[UserStreams]>,
}

impl Users {
    pub(super) fn new() -> Users {
        Users {
            slices: (0..SLICES).map(|_| DashMap::new()).collect(),
        }
    }

    /// The map that holds `user`.
    pub(super) fn of(&self, user: &str) -> &UserStreams {
        &self.slices[slice_of(user)]
    }

    /// The `i`th map (modulo [`SLICES`]).
    pub(super) fn slice(&self, i: u32) -> &UserStreams {
        &self.slices[(i % SLICES) as usize]
    }

    /// Every user's entry, map after map.
    pub(super) fn iter(
        &self,
    ) -> impl Iterator<Item = dashmap::mapref::multiple::RefMulti<'_, Arc<str>, Vec<Arc<Stream>>>>
    {
        self.slices.iter().flat_map(|m| m.iter())
    }
}

/// FNV-1a of the name, folded to a slice: cheap for short names, and spread enough for the
/// heartbeat's purpose (about as many streams visited per tick).
fn slice_of(user: &str) -> usize {
    let hash = user.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    ((hash ^ (hash >> 32)) % u64::from(SLICES)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_spread_over_every_slice_about_evenly() {
        let mut counts = [0usize; SLICES as usize];
        for i in 0..16_000 {
            counts[slice_of(&format!("user-{i}"))] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(
            min >= Some(&800) && max <= Some(&1200),
            "uneven slices: {counts:?}"
        );
    }
}
