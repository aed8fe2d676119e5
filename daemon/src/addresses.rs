//! Local service addresses: binds a service's `local_addresses` on one interface (`lo` or a
//! dummy interface) through rtnetlink, so that the host answers on an anycast address exactly
//! while it announces the covering route.
//!
//! Owns: the netlink socket that adds, lists and deletes interface addresses, the ownership
//! marker on the addresses it adds, and [`reconcile_plan`] (pure: what to bind and unbind).
//!
//! Must not touch: addresses it did not make (an operator's, the kernel's `127.0.0.1` and
//! `::1`), routes, links, or BGP. When to bind and unbind relative to announcing and withdrawing
//! (bind before announce, withdraw before unbind) is the engine's decision, not this module's.
//!
//! ## The ownership marker
//!
//! Every address added here carries the address protocol `IFA_PROTO` = [`ADDRESS_PROTOCOL`]
//! (116, ASCII `t`; the kernel uses 0 to 3 for its own addresses; Linux 6.1 or later). It is
//! the only thing [`AddressBinder::owned`] and [`AddressBinder::unbind`] trust: an address
//! without it is never removed, even if it equals a configured service address. It works the
//! same for IPv4 and IPv6 and survives a daemon crash, so a restarted daemon finds the stale
//! bindings of its previous run ([`AddressBinder::reconcile`]). iproute2 6.2 or later shows it
//! (`proto 116`); Debian 12's `ip` (6.1) does not, hence the IPv4 label below, and
//! `address_binder owned IFACE` (daemon/examples) lists exactly our addresses.
//! A kernel older than 6.1 silently drops the attribute; [`AddressBinder::bind`] reads every
//! new address back, and if the marker is missing it removes the address it just made and
//! fails with [`AddressError::MarkerUnsupported`] rather than leave an address it could not
//! recognise again.
//!
//! IPv4 addresses also get the label `<interface>:topo` (when it fits in the kernel's 15
//! bytes), purely for people reading `ip address`; the label is not trusted, since anyone can
//! set one. IPv6 addresses get `IFA_F_NODAD`, so they are usable at once instead of staying
//! tentative during duplicate address detection (on `lo` there is no DAD anyway; on a dummy
//! interface there would be).
//!
//! On a loopback interface, Linux answers for every address inside the prefix of an address,
//! so binding `192.0.2.0/24` on `lo` would make the whole /24 local to this host; only host
//! prefixes (`/32`, `/128`) are accepted there.
//!
//! The binder works in the network namespace of the process and needs `CAP_NET_ADMIN` for
//! `bind` and `unbind` (listing needs no privilege).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::stream::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use rtnetlink::packet_route::link::LinkFlags;

/// `IFA_PROTO` of every address topologyd adds: its ownership marker.
pub const ADDRESS_PROTOCOL: u8 = 116;

/// Suffix of the IPv4 label (`lo:topo`), for people reading `ip address`; never trusted.
pub const LABEL_SUFFIX: &str = ":topo";

/// Longest interface address label the kernel accepts (`IFNAMSIZ - 1`).
const MAX_LABEL_LENGTH: usize = 15;

/// What [`AddressBinder::bind`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    /// The address was added, with the marker.
    Bound,
    /// The address was already there with the marker (bound earlier by topologyd).
    AlreadyBound,
    /// The address is already on the interface without the marker (or with another prefix
    /// length): it is usable, but it is not ours, so it was left as it is and will never be
    /// unbound by topologyd.
    Foreign {
        /// The address as it is on the interface.
        existing: IpNet,
    },
}

impl BindOutcome {
    /// A short name for logs and JSON: `bound`, `already_bound` or `foreign`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BindOutcome::Bound => "bound",
            BindOutcome::AlreadyBound => "already_bound",
            BindOutcome::Foreign { .. } => "foreign",
        }
    }
}

/// What [`AddressBinder::unbind`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnbindOutcome {
    /// The address carried the marker and was removed.
    Unbound,
    /// The address was not on the interface.
    Absent,
    /// The address is on the interface without the marker: not ours, left as it is.
    Foreign,
}

impl UnbindOutcome {
    /// A short name for logs and JSON: `unbound`, `absent` or `foreign`.
    pub fn as_str(&self) -> &'static str {
        match self {
            UnbindOutcome::Unbound => "unbound",
            UnbindOutcome::Absent => "absent",
            UnbindOutcome::Foreign => "foreign",
        }
    }
}

/// A failure to manage the addresses of an interface, naming the interface and the address.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// No netlink socket could be opened.
    #[error("cannot open a netlink socket to manage the addresses of {interface}: {source}")]
    Connect {
        /// The interface.
        interface: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The interface does not exist in this network namespace.
    #[error(
        "interface {interface} does not exist in this network namespace; create it first \
         (e.g. `ip link add {interface} type dummy && ip link set {interface} up`) or set \
         [health] address_interface to an existing interface such as \"lo\""
    )]
    NoSuchInterface {
        /// The interface.
        interface: String,
    },
    /// A netlink request failed.
    #[error("{operation} on {interface}: {source}")]
    Netlink {
        /// What was being done, naming the address if there is one.
        operation: String,
        /// The interface.
        interface: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// The kernel refused a change for lack of privilege.
    #[error(
        "{operation} on {interface}: permission denied; topologyd needs CAP_NET_ADMIN to bind \
         service addresses (run it as root, or give the service AmbientCapabilities=CAP_NET_ADMIN)"
    )]
    PermissionDenied {
        /// What was being done, naming the address.
        operation: String,
        /// The interface.
        interface: String,
    },
    /// A prefix wider than a host address on a loopback interface.
    #[error(
        "refusing to bind {address} on loopback interface {interface}: a loopback address makes \
         its whole prefix local to this host; bind a host address (/32 or /128) instead"
    )]
    NotHostOnLoopback {
        /// The interface.
        interface: String,
        /// The address asked for.
        address: IpNet,
    },
    /// The kernel dropped the ownership marker (older than Linux 6.1).
    #[error(
        "the kernel did not keep the ownership marker (IFA_PROTO {ADDRESS_PROTOCOL}) on {address} \
         on {interface}, so topologyd could not tell it from an address it did not make; the \
         address was removed again. Binding service addresses needs Linux 6.1 or later"
    )]
    MarkerUnsupported {
        /// The interface.
        interface: String,
        /// The address.
        address: IpNet,
    },
}

/// One address of the interface, as listed by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InterfaceAddress {
    network: IpNet,
    ours: bool,
}

/// Binds, lists and unbinds addresses on one interface of the current network namespace.
/// Owns a netlink connection task, aborted when the binder is dropped.
#[derive(Debug)]
pub struct AddressBinder {
    interface: String,
    index: u32,
    loopback: bool,
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl AddressBinder {
    /// Opens a netlink connection (spawned on the current tokio runtime) and resolves
    /// `interface`; fails with [`AddressError::NoSuchInterface`] if it does not exist.
    pub async fn new(interface: &str) -> Result<AddressBinder, AddressError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| AddressError::Connect {
                interface: interface.to_string(),
                source,
            })?;
        let connection = tokio::spawn(connection);
        let link = handle
            .link()
            .get()
            .match_name(interface.to_string())
            .execute()
            .try_next()
            .await;
        let link = match link {
            Ok(Some(link)) => link,
            Ok(None) => {
                connection.abort();
                return Err(AddressError::NoSuchInterface {
                    interface: interface.to_string(),
                });
            }
            Err(source) => {
                connection.abort();
                return Err(if errno(&source).is_some_and(|code| code == libc::ENODEV) {
                    AddressError::NoSuchInterface {
                        interface: interface.to_string(),
                    }
                } else {
                    AddressError::Netlink {
                        operation: "looking up the interface".to_string(),
                        interface: interface.to_string(),
                        source,
                    }
                });
            }
        };
        Ok(AddressBinder {
            interface: interface.to_string(),
            index: link.header.index,
            loopback: link.header.flags.contains(LinkFlags::Loopback),
            handle,
            connection,
        })
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Every address currently on the interface, ours or not.
    pub async fn bound(&self) -> Result<BTreeSet<IpNet>, AddressError> {
        self.networks(|_| true).await
    }

    /// The addresses on the interface that carry the marker: the ones topologyd bound, in
    /// this run or an earlier one.
    pub async fn owned(&self) -> Result<BTreeSet<IpNet>, AddressError> {
        self.networks(|address| address.ours).await
    }

    /// The addresses on the interface that `keep` keeps.
    async fn networks(
        &self,
        keep: impl Fn(&InterfaceAddress) -> bool,
    ) -> Result<BTreeSet<IpNet>, AddressError> {
        Ok(self
            .addresses()
            .await?
            .into_iter()
            .filter(keep)
            .map(|address| address.network)
            .collect())
    }

    /// Adds `address` with the marker. Idempotent: an address already there is not an error
    /// (see [`BindOutcome`]); one without the marker stays foreign.
    pub async fn bind(&self, address: IpNet) -> Result<BindOutcome, AddressError> {
        if self.loopback && address.prefix_len() != address.max_prefix_len() {
            return Err(AddressError::NotHostOnLoopback {
                interface: self.interface.clone(),
                address,
            });
        }
        let operation = format!("binding {address}");
        let mut request =
            self.handle
                .address()
                .add(self.index, address.addr(), address.prefix_len());
        mark(request.message_mut(), &self.interface, address);
        match request.execute().await {
            Ok(()) => {}
            Err(source) if errno(&source) == Some(libc::EEXIST) => {
                return self.existing_outcome(address).await;
            }
            Err(source) => return Err(self.request_error(operation, source)),
        }
        let listed = self.addresses().await?;
        if listed
            .iter()
            .any(|listed| listed.network == address && listed.ours)
        {
            return Ok(BindOutcome::Bound);
        }
        // The address went in without the marker: take it out again, we made it.
        self.delete(address).await?;
        Err(AddressError::MarkerUnsupported {
            interface: self.interface.clone(),
            address,
        })
    }

    /// Removes `address` if it carries the marker. Idempotent: an absent address is not an
    /// error, and an address without the marker is left alone (see [`UnbindOutcome`]).
    pub async fn unbind(&self, address: IpNet) -> Result<UnbindOutcome, AddressError> {
        let listed = self.addresses().await?;
        match listed.iter().find(|listed| listed.network == address) {
            None => Ok(UnbindOutcome::Absent),
            Some(listed) if !listed.ours => Ok(UnbindOutcome::Foreign),
            Some(_) => self.delete(address).await,
        }
    }

    /// Brings the marked addresses to `desired`: binds what is missing, unbinds stale
    /// addresses of an earlier run. Returns what was bound and what was unbound. Run it before
    /// anything is announced (at startup), since it unbinds without asking the engine.
    pub async fn reconcile(
        &self,
        desired: &BTreeSet<IpNet>,
    ) -> Result<(Vec<(IpNet, BindOutcome)>, Vec<IpNet>), AddressError> {
        let (to_bind, to_unbind) = reconcile_plan(&self.owned().await?, desired);
        let mut unbound = Vec::new();
        for address in to_unbind {
            if self.unbind(address).await? == UnbindOutcome::Unbound {
                unbound.push(address);
            }
        }
        let mut bound = Vec::new();
        for address in to_bind {
            bound.push((address, self.bind(address).await?));
        }
        Ok((bound, unbound))
    }

    async fn existing_outcome(&self, address: IpNet) -> Result<BindOutcome, AddressError> {
        let listed = self.addresses().await?;
        if let Some(exact) = listed.iter().find(|listed| listed.network == address) {
            return Ok(if exact.ours {
                BindOutcome::AlreadyBound
            } else {
                BindOutcome::Foreign { existing: address }
            });
        }
        // IPv6 keys an address by itself alone, so another prefix length also conflicts.
        match listed
            .iter()
            .find(|listed| listed.network.addr() == address.addr())
        {
            Some(other) => Ok(BindOutcome::Foreign {
                existing: other.network,
            }),
            // Gone between the two requests: an operator is changing the interface too.
            None => Err(AddressError::Netlink {
                operation: format!("binding {address} (the kernel reported it as present)"),
                interface: self.interface.clone(),
                source: rtnetlink::Error::RequestFailed,
            }),
        }
    }

    async fn delete(&self, address: IpNet) -> Result<UnbindOutcome, AddressError> {
        let message = match address.addr() {
            IpAddr::V4(ip) => rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new()
                .index(self.index)
                .address(ip, address.prefix_len())
                .build(),
            IpAddr::V6(ip) => rtnetlink::AddressMessageBuilder::<Ipv6Addr>::new()
                .index(self.index)
                .address(ip, address.prefix_len())
                .build(),
        };
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(UnbindOutcome::Unbound),
            Err(source) if errno(&source) == Some(libc::EADDRNOTAVAIL) => Ok(UnbindOutcome::Absent),
            Err(source) => Err(self.request_error(format!("unbinding {address}"), source)),
        }
    }

    async fn addresses(&self) -> Result<Vec<InterfaceAddress>, AddressError> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .execute()
            .try_collect()
            .await
            .map_err(|source| self.request_error("listing the addresses".to_string(), source))?;
        Ok(messages.iter().filter_map(interface_address).collect())
    }

    fn request_error(&self, operation: String, source: rtnetlink::Error) -> AddressError {
        match errno(&source) {
            Some(libc::EPERM | libc::EACCES) => AddressError::PermissionDenied {
                operation,
                interface: self.interface.clone(),
            },
            _ => AddressError::Netlink {
                operation,
                interface: self.interface.clone(),
                source,
            },
        }
    }
}

impl Drop for AddressBinder {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// What to bind and what to unbind so that the marked addresses become `desired`:
/// `(desired − current_owned, current_owned − desired)`, each in address order.
pub fn reconcile_plan(
    current_owned: &BTreeSet<IpNet>,
    desired: &BTreeSet<IpNet>,
) -> (Vec<IpNet>, Vec<IpNet>) {
    (
        desired.difference(current_owned).copied().collect(),
        current_owned.difference(desired).copied().collect(),
    )
}

/// Adds the marker (and, for people, the IPv4 label; for IPv6, no DAD) to a new address.
fn mark(message: &mut AddressMessage, interface: &str, address: IpNet) {
    message
        .attributes
        .push(AddressAttribute::Protocol(AddressProtocol::from(
            ADDRESS_PROTOCOL,
        )));
    match address {
        IpNet::V4(_) => {
            let label = format!("{interface}{LABEL_SUFFIX}");
            if label.len() <= MAX_LABEL_LENGTH {
                message.attributes.push(AddressAttribute::Label(label));
            }
        }
        IpNet::V6(_) => {
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
}

/// The address and marker of one listed address; `None` for multicast and anycast entries.
fn interface_address(message: &AddressMessage) -> Option<InterfaceAddress> {
    let mut local = None;
    let mut address = None;
    let mut ours = false;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Protocol(protocol) => {
                ours = u8::from(*protocol) == ADDRESS_PROTOCOL;
            }
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point
    // links, and the only one present for IPv6 on other links.
    let ip = local.or(address)?;
    let network = IpNet::new(ip, message.header.prefix_len).ok()?;
    Some(InterfaceAddress { network, ours })
}

/// The errno of a netlink error reply (positive, as in `libc`).
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(message.raw_code().abs()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addresses: &[&str]) -> BTreeSet<IpNet> {
        addresses
            .iter()
            .map(|address| address.parse().expect("test address"))
            .collect()
    }

    fn list(addresses: &[&str]) -> Vec<IpNet> {
        set(addresses).into_iter().collect()
    }

    #[test]
    fn reconcile_plan_from_nothing_binds_everything() {
        let desired = set(&["192.0.2.53/32", "2001:db8::53/128"]);
        assert_eq!(
            reconcile_plan(&BTreeSet::new(), &desired),
            (list(&["192.0.2.53/32", "2001:db8::53/128"]), vec![])
        );
    }

    #[test]
    fn reconcile_plan_to_nothing_unbinds_every_owned_address() {
        let owned = set(&["192.0.2.53/32", "2001:db8::53/128"]);
        assert_eq!(
            reconcile_plan(&owned, &BTreeSet::new()),
            (vec![], list(&["192.0.2.53/32", "2001:db8::53/128"]))
        );
    }

    #[test]
    fn reconcile_plan_keeps_what_is_both_owned_and_desired() {
        let owned = set(&["192.0.2.53/32", "192.0.2.54/32"]);
        let desired = set(&["192.0.2.54/32", "192.0.2.55/32"]);
        assert_eq!(
            reconcile_plan(&owned, &desired),
            (list(&["192.0.2.55/32"]), list(&["192.0.2.53/32"]))
        );
    }

    #[test]
    fn reconcile_plan_of_equal_sets_is_empty() {
        let both = set(&["192.0.2.53/32", "2001:db8::53/128"]);
        assert_eq!(reconcile_plan(&both, &both), (vec![], vec![]));
    }

    #[test]
    fn reconcile_plan_treats_another_prefix_length_as_another_address() {
        let owned = set(&["192.0.2.53/24"]);
        let desired = set(&["192.0.2.53/32"]);
        assert_eq!(
            reconcile_plan(&owned, &desired),
            (list(&["192.0.2.53/32"]), list(&["192.0.2.53/24"]))
        );
    }

    #[test]
    fn marked_ipv4_addresses_carry_the_protocol_and_a_label_that_fits() {
        let mut message = AddressMessage::default();
        mark(
            &mut message,
            "lo",
            "192.0.2.53/32".parse().expect("address"),
        );
        assert!(
            message
                .attributes
                .contains(&AddressAttribute::Protocol(AddressProtocol::from(
                    ADDRESS_PROTOCOL
                )))
        );
        assert!(
            message
                .attributes
                .contains(&AddressAttribute::Label("lo:topo".to_string()))
        );

        let mut long = AddressMessage::default();
        mark(
            &mut long,
            "a-long-ifname12",
            "192.0.2.53/32".parse().expect("address"),
        );
        assert!(
            !long
                .attributes
                .iter()
                .any(|attribute| matches!(attribute, AddressAttribute::Label(_)))
        );
    }

    #[test]
    fn marked_ipv6_addresses_skip_duplicate_address_detection() {
        let mut message = AddressMessage::default();
        mark(
            &mut message,
            "lo",
            "2001:db8::53/128".parse().expect("address"),
        );
        assert!(message.header.flags.contains(AddressHeaderFlags::Nodad));
        assert!(
            message
                .attributes
                .contains(&AddressAttribute::Flags(AddressFlags::Nodad))
        );
    }

    #[test]
    fn listed_addresses_are_ours_only_with_our_protocol() {
        let mut ours = AddressMessage::default();
        ours.header.prefix_len = 32;
        ours.attributes = vec![
            AddressAttribute::Address("192.0.2.53".parse().expect("ip")),
            AddressAttribute::Local("192.0.2.53".parse().expect("ip")),
            AddressAttribute::Protocol(AddressProtocol::from(ADDRESS_PROTOCOL)),
        ];
        assert_eq!(
            interface_address(&ours),
            Some(InterfaceAddress {
                network: "192.0.2.53/32".parse().expect("network"),
                ours: true
            })
        );
        let mut kernel = AddressMessage::default();
        kernel.header.prefix_len = 128;
        kernel.attributes = vec![
            AddressAttribute::Address("::1".parse().expect("ip")),
            AddressAttribute::Protocol(AddressProtocol::Loopback),
        ];
        assert_eq!(
            interface_address(&kernel),
            Some(InterfaceAddress {
                network: "::1/128".parse().expect("network"),
                ours: false
            })
        );
    }
}
