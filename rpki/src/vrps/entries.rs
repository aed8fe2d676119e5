//! [`Entries`]: the (ASN, max-length) pairs of one VRP prefix, without a heap allocation for the
//! common case of a single pair (most prefixes have one ROA): a `Vec` of one pair costs a
//! 32-byte allocation plus the allocator's header, more than the rest of a trie node.
//!
//! Owns: the pairs' storage. Must not touch: what a pair means (`vrps.rs`).

/// The pairs of one prefix, each at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entries {
    One((u32, u8)),
    Many(Vec<(u32, u8)>),
}

impl Default for Entries {
    fn default() -> Entries {
        Entries::Many(Vec::new())
    }
}

impl Entries {
    pub(super) fn as_slice(&self) -> &[(u32, u8)] {
        match self {
            Entries::One(entry) => std::slice::from_ref(entry),
            Entries::Many(entries) => entries,
        }
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, (u32, u8)> {
        self.as_slice().iter()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Adds `entry`; false when it was there already.
    pub(super) fn insert(&mut self, entry: (u32, u8)) -> bool {
        if self.as_slice().contains(&entry) {
            return false;
        }
        match self {
            Entries::Many(entries) if entries.is_empty() => *self = Entries::One(entry),
            Entries::Many(entries) => entries.push(entry),
            Entries::One(first) => *self = Entries::Many(vec![*first, entry]),
        }
        true
    }

    /// Removes `entry`; false when it was not there.
    pub(super) fn remove(&mut self, entry: (u32, u8)) -> bool {
        match self {
            Entries::One(held) if *held == entry => {
                *self = Entries::default();
                true
            }
            Entries::One(_) => false,
            Entries::Many(entries) => {
                let Some(position) = entries.iter().position(|held| *held == entry) else {
                    return false;
                };
                entries.swap_remove(position);
                if let [last] = entries.as_slice() {
                    *self = Entries::One(*last);
                }
                true
            }
        }
    }
}
