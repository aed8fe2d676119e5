//! The raw topology model: what the files say, after syntax checks, with a [`Span`] on every
//! value a later check may need to point at (packed for prefixes and bindings, held a million
//! at a time: [`ValueSpans`]). Cross-references (does this service exist? do
//! prefixes overlap?) are the topology compiler's job, not this module's.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::community::{Community, LargeCommunity};
use crate::selector::Selector;
pub use crate::source::Located;
use crate::source::{SourceMap, Span};

/// Shortest IPv4 route announced unless `[settings] ipv4_announce_lengths` says otherwise.
pub const DEFAULT_IPV4_SHORTEST_ANNOUNCE: u8 = 8;
/// Longest IPv4 route announced by default (a /24 is the longest most networks accept).
pub const DEFAULT_IPV4_LONGEST_ANNOUNCE: u8 = 24;
/// Shortest IPv6 route announced by default.
pub const DEFAULT_IPV6_SHORTEST_ANNOUNCE: u8 = 16;
/// Longest IPv6 route announced by default (a /48 is the longest most networks accept).
pub const DEFAULT_IPV6_LONGEST_ANNOUNCE: u8 = 48;
/// G4 default: a plan may lose at most this share of the announced route×location pairs, and a
/// location is *hit* when it loses more than this share of its own pairs.
pub const DEFAULT_MAX_WITHDRAWN_PAIR_SHARE: f64 = 0.10;
/// G4 default: a plan may hit (see [`DEFAULT_MAX_WITHDRAWN_PAIR_SHARE`]) at most this share of
/// the announcing locations.
pub const DEFAULT_MAX_AFFECTED_LOCATION_SHARE: f64 = 0.25;
/// G4 default: a change that loses at most this many routes (anywhere), or that loses routes at
/// one location only, is well-scoped: the two shares above do not apply to it.
pub const DEFAULT_SMALL_CHANGE_ROUTES: u64 = 8;

/// Location lifecycle: only `live` locations announce routes; `test` locations announce only the
/// services that set `announce_at_test_locations`; `offline` and `draining` announce nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationState {
    Live,
    Offline,
    Test,
    Draining,
}

impl LocationState {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationState::Live => "live",
            LocationState::Offline => "offline",
            LocationState::Test => "test",
            LocationState::Draining => "draining",
        }
    }

    pub fn parse(text: &str) -> Option<LocationState> {
        Some(match text {
            "live" => LocationState::Live,
            "offline" => LocationState::Offline,
            "test" => LocationState::Test,
            "draining" => LocationState::Draining,
            _ => return None,
        })
    }
}

impl fmt::Display for LocationState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Service lifecycle: a `pending` service announces nothing (its bindings may exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    Active,
    Pending,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Pending => "pending",
        }
    }
}

/// How an onboarded prefix is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnounceMode {
    /// The prefix itself.
    Aggregate,
    /// Every more-specific of this length inside the prefix.
    Split(u8),
}

impl fmt::Display for AnnounceMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnnounceMode::Aggregate => formatter.write_str("aggregate"),
            AnnounceMode::Split(length) => write!(formatter, "split /{length}"),
        }
    }
}

/// What guard G5 does with a newly announced route that no VRP covers (RPKI *not found*), per
/// prefix: `rpki = "allow" | "warn" | "refuse"` (default [`NotFoundPolicy::Warn`]). An
/// RPKI-invalid route is refused whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotFoundPolicy {
    /// Not listed.
    Allow,
    /// Listed in the plan as a note (the default).
    #[default]
    Warn,
    /// Refused by G5 at the locations that would newly announce it.
    Refuse,
}

/// An RPKI Route Origin Authorisation for a prefix: who may originate it, down to which length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Roa {
    pub asn: u32,
    pub max_length: u8,
}

/// Inclusive announce-length limits for one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LengthLimits {
    pub shortest: u8,
    pub longest: u8,
}

/// Global settings, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub ipv4_announce_lengths: LengthLimits,
    pub ipv6_announce_lengths: LengthLimits,
    pub max_withdrawn_pair_share: f64,
    pub max_affected_location_share: f64,
    pub small_change_routes: u64,
    /// `[settings.onboarding]`: when present, a customer prefix (owner other than
    /// `operator_owner`) is advertised only with evidence signed by one of `evidence_keys`.
    pub onboarding: Option<OnboardingPolicy>,
}

/// Who the operator is and which public keys sign BYOIP evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingPolicy {
    /// The `owner` of the operator's own prefixes; every other owner is a customer.
    pub operator_owner: String,
    /// `ed25519:<64 hex digits>` public keys.
    pub evidence_keys: Vec<String>,
    /// Token digests (SHA-256, hex) of revoked onboardings: G6 refuses their evidence.
    pub revoked: Vec<String>,
    /// Where `[settings.onboarding]` was written.
    #[serde(skip)]
    pub span: Span,
}

/// A prefix's `[prefix.evidence]`, as written (checked by the topology compiler).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrefixEvidence {
    /// The longest announced route length the signed evidence vouches for (the ROA's
    /// max-length reaches it).
    pub longest_announced: u8,
    /// SHA-256 of the validation token, hex.
    pub token_sha256: String,
    /// The checks that passed: `rdns`, `irr`, `roa`.
    pub checks: Vec<String>,
    /// When the verification completed, seconds since the Unix epoch.
    pub verified_at: u64,
    /// The signing key's id (first 8 bytes of its SHA-256, hex).
    pub key: String,
    /// Ed25519 signature, hex.
    pub signature: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ipv4_announce_lengths: LengthLimits {
                shortest: DEFAULT_IPV4_SHORTEST_ANNOUNCE,
                longest: DEFAULT_IPV4_LONGEST_ANNOUNCE,
            },
            ipv6_announce_lengths: LengthLimits {
                shortest: DEFAULT_IPV6_SHORTEST_ANNOUNCE,
                longest: DEFAULT_IPV6_LONGEST_ANNOUNCE,
            },
            max_withdrawn_pair_share: DEFAULT_MAX_WITHDRAWN_PAIR_SHARE,
            max_affected_location_share: DEFAULT_MAX_AFFECTED_LOCATION_SHARE,
            small_change_routes: DEFAULT_SMALL_CHANGE_ROUTES,
            onboarding: None,
        }
    }
}

impl Settings {
    /// The limits for the family of `network`.
    pub fn limits_for(&self, network: &IpNet) -> LengthLimits {
        match network {
            IpNet::V4(_) => self.ipv4_announce_lengths,
            IpNet::V6(_) => self.ipv6_announce_lengths,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawLocation {
    pub name: Located<String>,
    pub region: Located<String>,
    pub metro: Located<String>,
    pub country: Located<String>,
    pub tags: Vec<Located<String>>,
    pub state: Located<LocationState>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawService {
    pub name: Located<String>,
    pub lifecycle: Located<Lifecycle>,
    pub topology: Located<Selector>,
    pub announce_at_test_locations: bool,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
    pub med: Option<u32>,
    pub as_path_prepend: u8,
    /// `[service.health]`, defaults filled in.
    pub health: Option<Located<crate::health::HealthSpec>>,
    /// Addresses the daemon binds on a local interface while the service is announced here.
    pub local_addresses: Vec<Located<IpNet>>,
}

/// One `[[prefix]]` as written. Held for every prefix from the parse until the compile takes it,
/// beside the texts, so it is kept small (80 bytes; a test holds it there): its owner is a
/// [`NameId`] and its values' positions one [`ValueSpans`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawPrefix {
    /// As written (host bits may be set; the compiler reports that).
    pub cidr: IpNet,
    pub origin_asn: u32,
    /// In [`RawTopology::names`] (the parse keeps one copy of each name).
    pub owner: NameId,
    pub advertise: bool,
    pub announce: AnnounceMode,
    pub roa: Option<Roa>,
    /// `rpki = "…"`: G5's policy for the prefix's routes when no VRP covers them.
    pub rpki: NotFoundPolicy,
    /// `irr_token`, `rdns_token` and `[prefix.evidence]`, boxed together: few prefixes carry
    /// any (customer prefixes being onboarded), and unboxed they would be a third of every raw
    /// prefix's size, held for every prefix while a large topology is parsed.
    pub ownership: Option<Box<RawOwnership>>,
    /// Where `cidr`, `origin_asn`, `announce` (the cidr's when not written) and `roa` (the
    /// cidr's when absent) were written.
    pub spans: ValueSpans<4>,
}

/// An owner or service name of a raw topology: its index in [`RawTopology::names`]. A million
/// prefixes of a few owners hold 4 bytes each instead of a shared pointer's 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameId(pub u32);

/// The owner and service names of a raw topology, each once.
#[derive(Debug, Clone, Default)]
pub struct Names {
    list: Vec<std::sync::Arc<str>>,
    index: std::collections::HashMap<std::sync::Arc<str>, NameId>,
}

impl Names {
    /// The id of `name`, added if new.
    pub fn intern(&mut self, name: &str) -> NameId {
        if let Some(id) = self.index.get(name) {
            return *id;
        }
        let shared: std::sync::Arc<str> = std::sync::Arc::from(name);
        let id = NameId(u32::try_from(self.list.len()).unwrap_or(u32::MAX));
        self.list.push(std::sync::Arc::clone(&shared));
        self.index.insert(shared, id);
        id
    }

    /// The name of `id` (empty for an id of another topology).
    pub fn get(&self, id: NameId) -> &std::sync::Arc<str> {
        static NONE: std::sync::OnceLock<std::sync::Arc<str>> = std::sync::OnceLock::new();
        self.list
            .get(id.0 as usize)
            .unwrap_or_else(|| NONE.get_or_init(|| std::sync::Arc::from("")))
    }

    /// How many names there are (every id is below).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Where `N` values of one table were written, in one source: each value's start, and its
/// length up to 65,535 bytes (a longer value's span is cut there; a position is its start).
/// 28 bytes for a prefix's four values instead of 48 as four [`Span`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSpans<const N: usize> {
    source: u32,
    starts: [u32; N],
    lengths: [u16; N],
}

impl<const N: usize> ValueSpans<N> {
    /// The spans of `spans`, all in the source of the first (`source` of the others is not
    /// kept).
    pub fn new(spans: [Span; N]) -> Self {
        ValueSpans {
            source: spans.first().map_or(0, |span| span.source),
            starts: spans.map(|span| span.start),
            lengths: spans.map(Span::packed_length),
        }
    }

    /// The span of value `index` (an empty span at 0 past `N`).
    pub fn get(&self, index: usize) -> Span {
        Span::unpacked(
            self.source,
            self.starts.get(index).copied().unwrap_or(0),
            self.lengths.get(index).copied().unwrap_or(0),
        )
    }

    /// The source every value is in.
    pub fn source(&self) -> u32 {
        self.source
    }
}

/// A raw prefix's proofs of ownership and intent ([`RawPrefix::ownership`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawOwnership {
    pub irr_token: Option<String>,
    pub rdns_token: Option<String>,
    /// `[prefix.evidence]`, at its table.
    pub evidence: Option<Located<PrefixEvidence>>,
}

impl RawOwnership {
    /// The boxed proofs, or `None` when there are none (what most prefixes hold).
    pub fn boxed(
        irr_token: Option<String>,
        rdns_token: Option<String>,
        evidence: Option<Located<PrefixEvidence>>,
    ) -> Option<Box<RawOwnership>> {
        (irr_token.is_some() || rdns_token.is_some() || evidence.is_some()).then(|| {
            Box::new(RawOwnership {
                irr_token,
                rdns_token,
                evidence,
            })
        })
    }
}

impl RawPrefix {
    /// Where `cidr` was written.
    pub fn cidr_span(&self) -> Span {
        self.spans.get(0)
    }

    /// Where `origin_asn` was written.
    pub fn origin_asn_span(&self) -> Span {
        self.spans.get(1)
    }

    /// Where `announce` was written (the cidr's span when it was not).
    pub fn announce_span(&self) -> Span {
        self.spans.get(2)
    }

    /// Where `roa` was written, if it was.
    pub fn roa_span(&self) -> Option<Span> {
        self.roa.map(|_| self.spans.get(3))
    }

    /// `irr_token`, if the prefix has one.
    pub fn irr_token(&self) -> Option<&str> {
        self.ownership.as_ref()?.irr_token.as_deref()
    }

    /// `rdns_token`, if the prefix has one.
    pub fn rdns_token(&self) -> Option<&str> {
        self.ownership.as_ref()?.rdns_token.as_deref()
    }

    /// `[prefix.evidence]`, at its table, if the prefix has one.
    pub fn evidence(&self) -> Option<&Located<PrefixEvidence>> {
        self.ownership.as_ref()?.evidence.as_ref()
    }
}

/// One `[[binding]]` as written (40 bytes: see [`RawPrefix`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawBinding {
    /// As written (host bits may be set; the compiler reports that).
    pub cidr: IpNet,
    /// In [`RawTopology::names`].
    pub service: NameId,
    /// Where `cidr` and `service` were written.
    pub spans: ValueSpans<2>,
}

impl RawBinding {
    /// Where `cidr` was written.
    pub fn cidr_span(&self) -> Span {
        self.spans.get(0)
    }

    /// Where `service` was written.
    pub fn service_span(&self) -> Span {
        self.spans.get(1)
    }
}

/// Every file of a topology combined, in file order then declaration order.
#[derive(Debug, Clone, Default)]
pub struct RawTopology {
    pub sources: SourceMap,
    pub settings: Settings,
    /// Where `[settings]` was written, if anywhere.
    pub settings_span: Option<Span>,
    pub locations: Vec<RawLocation>,
    pub services: Vec<RawService>,
    pub prefixes: Vec<RawPrefix>,
    pub bindings: Vec<RawBinding>,
    /// The owners of `prefixes` and the services of `bindings`.
    pub names: Names,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large topology's parse holds one raw prefix per `[[prefix]]` and one raw binding per
    /// `[[binding]]` at once, beside the texts: their sizes are the parse's peak.
    #[test]
    fn the_raw_records_stay_small() {
        let prefix = std::mem::size_of::<RawPrefix>();
        let binding = std::mem::size_of::<RawBinding>();
        assert!(prefix <= 80, "RawPrefix: {prefix} bytes");
        assert!(binding <= 40, "RawBinding: {binding} bytes");
    }
}

#[cfg(test)]
mod value_span_tests {
    use super::*;

    #[test]
    fn value_spans_give_back_each_span_and_cut_only_long_lengths() {
        let spans = ValueSpans::new([
            Span::new(3, 10..20),
            Span::new(3, 5..6),
            Span::new(3, 100..70_000),
            Span::new(3, 7..7),
        ]);
        assert_eq!(spans.get(0), Span::new(3, 10..20));
        assert_eq!(spans.get(1), Span::new(3, 5..6));
        assert_eq!(
            spans.get(2),
            Span::new(3, 100..65_635),
            "cut at 65,535 bytes"
        );
        assert_eq!(spans.get(3), Span::new(3, 7..7));
        assert_eq!(spans.get(4), Span::new(3, 0..0));
        assert_eq!(spans.source(), 3);
    }

    #[test]
    fn names_are_kept_once_each() {
        let mut names = Names::default();
        let web = names.intern("web");
        assert_eq!(names.intern("dns"), NameId(1));
        assert_eq!(names.intern("web"), web);
        assert_eq!(&**names.get(web), "web");
        assert_eq!(names.len(), 2);
        assert_eq!(&**names.get(NameId(7)), "");
    }
}
