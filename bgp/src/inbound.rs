//! Inbound route accounting: everything a peer announces is parsed and counted, nothing is
//! imported (RFC 8212 spirit: no policy, no RIB-In use). Also the per-family maximum-prefix
//! limit whose breach ends the session with Cease / Maximum Number of Prefixes Reached
//! (RFC 4486 §4).
//!
//! Owns: the set of prefixes each peer currently announces (compact keys, so an edge router's
//! full table costs ~16-40 octets per prefix) and the counters derived from it.
//! Must not touch: attributes (not stored), sessions, timers. The sets hash with FxHash
//! (`rustc-hash`), as the Adj-RIB-Out's maps do.

use ipnet::IpNet;
use rustc_hash::FxHashSet;

use crate::codec::{Family, Update};

/// Counters for one family of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FamilyCounters {
    /// Prefixes the peer currently announces.
    pub current: u64,
    /// Announcements received (including re-announcements).
    pub announced: u64,
    /// Withdrawals received (including treat-as-withdraw, RFC 7606 §2).
    pub withdrawn: u64,
    /// UPDATEs handled as treat-as-withdraw.
    pub treat_as_withdraw_updates: u64,
    /// End-of-RIB markers received (RFC 4724 §2).
    pub end_of_rib: u64,
}

/// Per-family prefix limits (RFC 4486 §4). `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaxPrefixes {
    /// Limit for IPv4 unicast.
    pub ipv4_unicast: Option<u32>,
    /// Limit for IPv6 unicast.
    pub ipv6_unicast: Option<u32>,
}

impl MaxPrefixes {
    /// The limit for `family`.
    #[must_use]
    pub fn limit(&self, family: Family) -> Option<u32> {
        match family {
            Family::Ipv4Unicast => self.ipv4_unicast,
            Family::Ipv6Unicast => self.ipv6_unicast,
        }
    }
}

/// What one UPDATE changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateSummary {
    /// Announced prefixes (IPv4, IPv6).
    pub announced: [u64; 2],
    /// Withdrawn prefixes (IPv4, IPv6), treat-as-withdraw included.
    pub withdrawn: [u64; 2],
    /// The UPDATE was handled as treat-as-withdraw (RFC 7606 §2).
    pub treat_as_withdraw: bool,
    /// The UPDATE was an End-of-RIB marker for this family (RFC 4724 §2).
    pub end_of_rib: Option<Family>,
}

/// Prefixes a peer announces, and counters.
#[derive(Debug, Default)]
pub struct InboundRoutes {
    ipv4: FxHashSet<u64>,
    ipv6: FxHashSet<(u128, u8)>,
    counters: [FamilyCounters; 2],
}

const fn index(family: Family) -> usize {
    match family {
        Family::Ipv4Unicast => 0,
        Family::Ipv6Unicast => 1,
    }
}

impl InboundRoutes {
    /// Counters of `family`.
    #[must_use]
    pub fn counters(&self, family: Family) -> FamilyCounters {
        self.counters[index(family)]
    }

    /// Forgets all prefixes (session down; counters of totals are kept, `current` resets).
    pub fn clear(&mut self) {
        self.ipv4 = FxHashSet::default();
        self.ipv6 = FxHashSet::default();
        for counters in &mut self.counters {
            counters.current = 0;
        }
    }

    fn insert(&mut self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(net) => self
                .ipv4
                .insert((u64::from(u32::from(net.network())) << 8) | u64::from(net.prefix_len())),
            IpNet::V6(net) => self
                .ipv6
                .insert((u128::from(net.network()), net.prefix_len())),
        }
    }

    fn remove(&mut self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(net) => self.ipv4.remove(
                &((u64::from(u32::from(net.network())) << 8) | u64::from(net.prefix_len())),
            ),
            IpNet::V6(net) => self
                .ipv6
                .remove(&(u128::from(net.network()), net.prefix_len())),
        }
    }

    /// Applies a decoded UPDATE: withdrawals, then announcements (or, under RFC 7606
    /// treat-as-withdraw, announcements as withdrawals).
    pub fn apply(&mut self, update: &Update) -> UpdateSummary {
        let mut summary = UpdateSummary {
            treat_as_withdraw: update.error_handling.treat_as_withdraw,
            end_of_rib: update.end_of_rib,
            ..UpdateSummary::default()
        };
        if let Some(family) = update.end_of_rib {
            self.counters[index(family)].end_of_rib += 1;
        }
        for prefix in &update.withdrawn {
            let family = index(Family::of(prefix));
            summary.withdrawn[family] += 1;
            if self.remove(prefix) {
                self.counters[family].current = self.counters[family].current.saturating_sub(1);
            }
        }
        for prefix in &update.announced {
            let family = index(Family::of(prefix));
            if summary.treat_as_withdraw {
                summary.withdrawn[family] += 1;
                if self.remove(prefix) {
                    self.counters[family].current = self.counters[family].current.saturating_sub(1);
                }
            } else {
                summary.announced[family] += 1;
                if self.insert(prefix) {
                    self.counters[family].current += 1;
                }
            }
        }
        for family in Family::ALL {
            let slot = index(family);
            self.counters[slot].announced += summary.announced[slot];
            self.counters[slot].withdrawn += summary.withdrawn[slot];
            if summary.treat_as_withdraw {
                self.counters[slot].treat_as_withdraw_updates +=
                    u64::from(summary.announced[slot] + summary.withdrawn[slot] > 0);
            }
        }
        summary
    }

    /// The first family whose current prefix count exceeds its limit (RFC 4486 §4).
    #[must_use]
    pub fn exceeded(&self, limits: &MaxPrefixes) -> Option<(Family, u32)> {
        Family::ALL.into_iter().find_map(|family| {
            limits.limit(family).and_then(|limit| {
                (self.counters[index(family)].current > u64::from(limit)).then_some((family, limit))
            })
        })
    }
}
