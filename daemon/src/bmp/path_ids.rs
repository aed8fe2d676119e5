//! Which address families carry ADD-PATH path identifiers (RFC 7911) in the routes a router
//! monitors for one peer, per RIB kind, as the two OPENs of the peer's Peer Up negotiated them.
//!
//! Owns: [`PathIdFamilies`] and the negotiation rule. Must not touch: the wire of Route
//! Monitoring (`update.rs`), the per-connection record of peers (`codec.rs`).
//!
//! The rule. A Peer Up (RFC 7854 §4.10) carries the OPEN the router sent ("sent") and the one it
//! received from the peer ("received"). A route carries a path identifier when its sender
//! advertised ADD-PATH Send (or both) for its family and its receiver advertised Receive (or
//! both) (RFC 7911 §4–5):
//! - Adj-RIB-In, pre- and post-policy (RFC 7854): routes from the peer to the router, so the
//!   received OPEN's Send and the sent OPEN's Receive;
//! - Adj-RIB-Out, pre- and post-policy (RFC 8671): routes from the router to the peer, the
//!   reverse: the sent OPEN's Send and the received OPEN's Receive;
//! - Loc-RIB (RFC 9069 §5): there is no session; the router fabricates the OPEN (both copies
//!   the same) with the capabilities its Loc-RIB messages are encoded with, and ADD-PATH for a
//!   family means the family carries path identifiers whatever the Send/Receive value says.

use bgpkit_parser::models::capabilities::AddPathSendReceive;
use bgpkit_parser::models::{BgpMessage, CapabilityValue, ParamValue};

use super::codec::RibKind;
use super::update::Family;

/// The families carrying path identifiers in each RIB kind of one monitored peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathIdFamilies {
    pub adj_rib_in: Vec<Family>,
    pub adj_rib_out: Vec<Family>,
    pub loc_rib: Vec<Family>,
}

/// One OPEN's ADD-PATH capability: (family, may send, may receive).
fn add_path_capability(open: &BgpMessage) -> Vec<(Family, bool, bool)> {
    let BgpMessage::Open(open) = open else {
        return Vec::new();
    };
    let mut families = Vec::new();
    for parameter in &open.opt_params {
        let ParamValue::Capacities(capabilities) = &parameter.param_value else {
            continue;
        };
        for capability in capabilities {
            let CapabilityValue::AddPath(add_path) = &capability.value else {
                continue;
            };
            for entry in &add_path.address_families {
                let (send, receive) = match entry.send_receive {
                    AddPathSendReceive::Receive => (false, true),
                    AddPathSendReceive::Send => (true, false),
                    AddPathSendReceive::SendReceive => (true, true),
                };
                families.push(((entry.afi as u16, entry.safi as u8), send, receive));
            }
        }
    }
    families
}

impl PathIdFamilies {
    /// The rule above, from a Peer Up's two OPENs.
    pub fn from_opens(sent: &BgpMessage, received: &BgpMessage) -> PathIdFamilies {
        let sent = add_path_capability(sent);
        let received = add_path_capability(received);
        let directed = |sender: &[(Family, bool, bool)], receiver: &[(Family, bool, bool)]| {
            let mut families: Vec<Family> = sender
                .iter()
                .filter(|(family, send, _)| {
                    *send
                        && receiver
                            .iter()
                            .any(|(other, _, receive)| other == family && *receive)
                })
                .map(|(family, _, _)| *family)
                .collect();
            families.sort_unstable();
            families.dedup();
            families
        };
        let mut loc_rib: Vec<Family> = sent
            .iter()
            .chain(&received)
            .map(|(family, _, _)| *family)
            .collect();
        loc_rib.sort_unstable();
        loc_rib.dedup();
        PathIdFamilies {
            adj_rib_in: directed(&received, &sent),
            adj_rib_out: directed(&sent, &received),
            loc_rib,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.adj_rib_in.is_empty() && self.adj_rib_out.is_empty() && self.loc_rib.is_empty()
    }

    fn of(&self, rib: RibKind) -> &Vec<Family> {
        match rib {
            RibKind::AdjRibInPre | RibKind::AdjRibInPost => &self.adj_rib_in,
            RibKind::AdjRibOutPre | RibKind::AdjRibOutPost => &self.adj_rib_out,
            RibKind::LocRib => &self.loc_rib,
        }
    }

    /// Whether routes of `family` in `rib` carry path identifiers.
    pub fn carries(&self, rib: RibKind, family: Family) -> bool {
        self.of(rib).contains(&family)
    }

    /// The router sent `family` in `rib` without path identifiers although the OPENs
    /// negotiated them (some routers strip them from what they monitor): it is read without
    /// from now on, for this session.
    pub fn stripped(&mut self, rib: RibKind, family: Family) {
        let families = match rib {
            RibKind::AdjRibInPre | RibKind::AdjRibInPost => &mut self.adj_rib_in,
            RibKind::AdjRibOutPre | RibKind::AdjRibOutPost => &mut self.adj_rib_out,
            RibKind::LocRib => &mut self.loc_rib,
        };
        families.retain(|held| *held != family);
    }
}
