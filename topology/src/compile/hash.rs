//! The canonical content hash of a compiled topology: SHA-256 over a length-prefixed,
//! canonical serialisation, so that file order and formatting do not change it and content
//! does.
//!
//! Form 2 (this release's) hashes the settings, locations and services in line, then the
//! digest of every chunk of 1,024 prefixes (the chunks of [`PrefixList`], which keep their
//! digest once read) and the digest of the bindings (kept by [`BindingList`] likewise): a
//! generation that shares all but one chunk with the running one (an `advertise` toggled)
//! hashes that chunk and a few kilobytes, not the tens of megabytes of canonical form a
//! topology of 300,000 bindings has (a change that adds or removes items, or moves bindings to
//! other services, makes new lists and hashes them whole). Form 1 (the releases before) hashed
//! every item in line; it is kept ([`crate::Topology::previous_form_hash_hex`]) so that
//! `topoctl` recognises daemons of the previous release during an upgrade. The items' part is
//! hashed on a thread of its own, which a compile starts and does not wait for:
//! [`TopologyHash`] is joined when the hash is first read (by a push, at the end of its plan).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use topologyd_config::health::{DnsRecordType, ProbeSpec, UnhealthyAction};
use topologyd_config::{AnnounceMode, NotFoundPolicy};

use super::network_key;
use crate::PrefixList;
use crate::binding_list::BindingList;
use crate::model::{Binding, Location, Service};

/// Feeds a canonical, length-prefixed serialisation into SHA-256, through a staging buffer:
/// the canonical form is mostly 2- to 16-byte pieces, and SHA-256 handed whole blocks by the
/// thousand runs about twice as fast as when each piece goes to it alone. The byte stream, and
/// so the hash, is the same either way. The pieces are copied in inline, each of a size known
/// where it is written (a call and a length check per piece were more than half of a large
/// topology's hash, the SHA-256 itself less).
pub(super) struct CanonicalHasher {
    sha256: Sha256,
    staged: Box<[u8; STAGED_BYTES]>,
    /// How many bytes of `staged` are filled.
    filled: usize,
}

/// How many bytes are staged before they go to SHA-256 (a multiple of its 64-byte block).
const STAGED_BYTES: usize = 64 * 1024;

impl CanonicalHasher {
    pub(super) fn new() -> CanonicalHasher {
        CanonicalHasher {
            sha256: Sha256::new(),
            staged: Box::new([0; STAGED_BYTES]),
            filled: 0,
        }
    }

    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        if bytes.len() > STAGED_BYTES - self.filled {
            self.flush();
            if bytes.len() > STAGED_BYTES {
                self.sha256.update(bytes);
                return;
            }
        }
        let end = self.filled + bytes.len();
        self.staged[self.filled..end].copy_from_slice(bytes);
        self.filled = end;
    }

    #[inline(never)]
    fn flush(&mut self) {
        self.sha256.update(&self.staged[..self.filled]);
        self.filled = 0;
    }

    #[inline]
    pub(super) fn text(&mut self, text: &str) {
        self.number(text.len() as u64);
        self.bytes(text.as_bytes());
    }

    #[inline]
    fn number(&mut self, number: u64) {
        self.bytes(&number.to_le_bytes());
    }

    /// Family and length, then the address (16 bytes, little-endian): one piece.
    #[inline]
    fn network(&mut self, network: &IpNet) {
        let (family, address, length) = network_key(network);
        let mut piece = [0_u8; 18];
        piece[0] = family;
        piece[1] = length;
        piece[2..].copy_from_slice(&address.to_le_bytes());
        self.bytes(&piece);
    }

    pub(super) fn finish(mut self) -> [u8; 32] {
        self.flush();
        self.sha256.finalize().into()
    }

    /// The digest of what was fed so far; the hasher starts again empty (its staging buffer
    /// is kept for the next digest).
    fn finish_and_reset(&mut self) -> [u8; 32] {
        self.flush();
        self.sha256.finalize_reset().into()
    }
}

/// The canonical form a hash is taken in: see the module comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashForm {
    /// The releases before: every item in line.
    Previous,
    /// This release's: chunk digests.
    Chunked,
}

/// The first part of the canonical form: the settings, locations and services (small beside
/// the items; [`hash_items`] or [`hash_items_in_line`] goes on from here), the same in both
/// forms but for the label that starts them.
pub(super) fn hash_definitions(
    form: HashForm,
    settings: &topologyd_config::Settings,
    locations: &[Location],
    services: &[Service],
) -> CanonicalHasher {
    let mut hasher = CanonicalHasher::new();
    hasher.text(match form {
        HashForm::Previous => "topologyd-topology-v1",
        HashForm::Chunked => "topologyd-topology-v2",
    });
    for limits in [
        settings.ipv4_announce_lengths,
        settings.ipv6_announce_lengths,
    ] {
        hasher.number(u64::from(limits.shortest));
        hasher.number(u64::from(limits.longest));
    }
    hasher.number(settings.max_withdrawn_pair_share.to_bits());
    hasher.number(settings.max_affected_location_share.to_bits());
    // Hashed only when set, so that topologies written before the setting existed keep their
    // hash (daemons of two releases must agree on it during a rollout).
    if settings.small_change_routes != topologyd_config::DEFAULT_SMALL_CHANGE_ROUTES {
        hasher.text("small_change_routes");
        hasher.number(settings.small_change_routes);
    }
    hasher.number(locations.len() as u64);
    for location in locations {
        for text in [
            &location.name,
            &location.region,
            &location.metro,
            &location.country,
        ] {
            hasher.text(text);
        }
        hasher.text(location.state.as_str());
        hasher.number(location.tags.len() as u64);
        for tag in &location.tags {
            hasher.text(tag);
        }
    }
    hasher.number(services.len() as u64);
    for service in services {
        hasher.text(&service.name);
        hasher.text(service.lifecycle.as_str());
        hasher.text(&service.topology);
        hasher.number(u64::from(service.announce_at_test_locations));
        let attributes = &service.attributes;
        hasher.number(attributes.communities.len() as u64);
        for community in &attributes.communities {
            hasher.number(u64::from(community.0) << 16 | u64::from(community.1));
        }
        hasher.number(attributes.large_communities.len() as u64);
        for community in &attributes.large_communities {
            hasher.number(u64::from(community.0));
            hasher.number(u64::from(community.1) << 32 | u64::from(community.2));
        }
        hasher.number(attributes.med.map_or(u64::MAX, u64::from));
        hasher.number(u64::from(attributes.as_path_prepend));
        hash_health(&mut hasher, service);
    }
    hasher
}

/// The rest of the canonical form 2: the number of prefixes, the digest of each chunk of
/// them, the number of bindings and their digest (each binding's service by its name,
/// `service_names` in the services' order), and the hash. Digests kept by the chunks and the
/// binding list from an earlier read are not computed again. `None` once `cancelled` is set
/// (looked at every chunk, and every [`CANCEL_CHECK_ITEMS`] bindings).
pub(super) fn hash_items<Name: AsRef<str>>(
    mut hasher: CanonicalHasher,
    prefixes: &PrefixList,
    bindings: &BindingList,
    service_names: &[Name],
    cancelled: &AtomicBool,
) -> Option<[u8; 32]> {
    let is_cancelled = || cancelled.load(std::sync::atomic::Ordering::Relaxed);
    let mut items = CanonicalHasher::new();
    let chunk_digests = prefixes.chunk_digests(|chunk| {
        if is_cancelled() {
            return None;
        }
        for prefix in chunk {
            hash_prefix(&mut items, prefix);
        }
        Some(items.finish_and_reset())
    })?;
    hasher.number(prefixes.len() as u64);
    for digest in &chunk_digests {
        hasher.bytes(digest);
    }
    let mut names = CanonicalHasher::new();
    names.number(service_names.len() as u64);
    for name in service_names {
        names.text(name.as_ref());
    }
    let bindings_digest = bindings.digest(names.finish(), |records| {
        for (index, binding) in records.iter().enumerate() {
            if index.is_multiple_of(CANCEL_CHECK_ITEMS) && is_cancelled() {
                return None;
            }
            hash_binding(&mut items, binding, service_names);
        }
        Some(items.finish_and_reset())
    })?;
    hasher.number(bindings.len() as u64);
    hasher.bytes(&bindings_digest);
    Some(hasher.finish())
}

/// The rest of the canonical form 1: every prefix and every binding in line, and the hash;
/// `None` once `cancelled` is set (looked at every [`CANCEL_CHECK_ITEMS`] items).
pub(super) fn hash_items_in_line<Name: AsRef<str>>(
    mut hasher: CanonicalHasher,
    prefixes: &PrefixList,
    bindings: &[Binding],
    service_names: &[Name],
    cancelled: &AtomicBool,
) -> Option<[u8; 32]> {
    let go_on = |index: usize| {
        !index.is_multiple_of(CANCEL_CHECK_ITEMS)
            || !cancelled.load(std::sync::atomic::Ordering::Relaxed)
    };
    hasher.number(prefixes.len() as u64);
    for (index, prefix) in prefixes.iter().enumerate() {
        if !go_on(index) {
            return None;
        }
        hash_prefix(&mut hasher, prefix);
    }
    hasher.number(bindings.len() as u64);
    for (index, binding) in bindings.iter().enumerate() {
        if !go_on(index) {
            return None;
        }
        hash_binding(&mut hasher, binding, service_names);
    }
    Some(hasher.finish())
}

/// One prefix in canonical form (the same in both forms).
#[inline]
fn hash_prefix(hasher: &mut CanonicalHasher, prefix: &crate::model::Prefix) {
    hasher.network(&prefix.cidr);
    hasher.number(u64::from(prefix.origin_asn));
    hasher.text(&prefix.owner);
    hasher.number(u64::from(prefix.advertise));
    hasher.number(match prefix.announce {
        AnnounceMode::Aggregate => 0,
        AnnounceMode::Split(length) => u64::from(length) + 1,
    });
    match prefix.roa {
        Some(roa) => {
            hasher.number(u64::from(roa.asn));
            hasher.number(u64::from(roa.max_length));
        }
        None => hasher.number(u64::MAX),
    }
    hasher.text(prefix.irr_token().unwrap_or(""));
    hasher.text(prefix.rdns_token().unwrap_or(""));
    // The default policy adds nothing, so hashes are those of before the policy existed.
    match prefix.rpki {
        NotFoundPolicy::Warn => {}
        NotFoundPolicy::Allow => hasher.number(RPKI_ALLOW_MARKER),
        NotFoundPolicy::Refuse => hasher.number(RPKI_REFUSE_MARKER),
    }
    // Evidence adds nothing when absent, so hashes are those of before it existed.
    if let Some(evidence) = prefix.evidence() {
        hasher.number(EVIDENCE_MARKER);
        hasher.text(&evidence.token_sha256);
        hasher.text(&evidence.signature);
    }
}

/// One binding in canonical form (the same in both forms): its cidr and its service's name.
#[inline]
fn hash_binding<Name: AsRef<str>>(
    hasher: &mut CanonicalHasher,
    binding: &Binding,
    service_names: &[Name],
) {
    hasher.network(&binding.cidr);
    // Every binding's service is one of the topology's (the compile resolved it).
    hasher.text(service_names[binding.service as usize].as_ref());
}

/// How many items [`hash_items`] hashes between two looks at its cancel flag.
const CANCEL_CHECK_ITEMS: usize = 4096;

/// Marks the optional health part of a service in the canonical form. Services without health
/// checks or local addresses add nothing, so their hashes are those of before health checks
/// existed; the marker cannot be mistaken for what may follow a service (the length of the next
/// service's name, or the number of prefixes).
const HEALTH_MARKER: u64 = u64::MAX - 1;
/// Mark a prefix's non-default `rpki` policy; like [`HEALTH_MARKER`], no length or count that
/// may follow a prefix (the next prefix's network, the number of bindings) takes these values.
const RPKI_ALLOW_MARKER: u64 = u64::MAX - 2;
const RPKI_REFUSE_MARKER: u64 = u64::MAX - 3;
/// Marks a prefix's `[prefix.evidence]` (its token digest and signature follow).
const EVIDENCE_MARKER: u64 = u64::MAX - 4;

/// The health checks and local addresses of `service`, in canonical form: every field of the
/// spec, the checks in their written order (that is the order a round reports them in), the
/// local addresses sorted.
pub(super) fn hash_health(hasher: &mut CanonicalHasher, service: &Service) {
    if service.health.is_none() && service.local_addresses.is_empty() {
        return;
    }
    hasher.number(HEALTH_MARKER);
    hasher.number(service.local_addresses.len() as u64);
    for address in &service.local_addresses {
        hasher.network(address);
    }
    let Some(health) = &service.health else {
        hasher.number(0);
        return;
    };
    hasher.number(1);
    for number in [
        health.interval_ms,
        health.timeout_ms,
        u64::from(health.rise),
        u64::from(health.fall),
        health.hold_down_ms,
        health.max_hold_down_ms,
    ] {
        hasher.number(number);
    }
    match &health.on_unhealthy {
        UnhealthyAction::Withdraw => hasher.number(0),
        UnhealthyAction::Degrade(degrade) => {
            hasher.number(1);
            hasher.number(u64::from(degrade.as_path_prepend));
            hasher.number(degrade.med.map_or(u64::MAX, u64::from));
            hasher.number(degrade.communities.len() as u64);
            for community in &degrade.communities {
                hasher.number(u64::from(community.0) << 16 | u64::from(community.1));
            }
        }
    }
    hasher.number(health.checks.len() as u64);
    for check in &health.checks {
        match check {
            ProbeSpec::Http { url, expect_status } => {
                hasher.text("http");
                hasher.text(url);
                hasher.number(u64::from(*expect_status));
            }
            ProbeSpec::Tcp { address } => {
                hasher.text("tcp");
                hasher.text(address);
            }
            ProbeSpec::Dns {
                server,
                name,
                record_type,
                expect,
            } => {
                hasher.text("dns");
                hasher.text(server);
                hasher.text(name);
                hasher.text(match record_type {
                    DnsRecordType::A => "A",
                    DnsRecordType::Aaaa => "AAAA",
                });
                match expect {
                    Some(expect) => {
                        hasher.number(1);
                        hasher.text(expect);
                    }
                    None => hasher.number(0),
                }
            }
            ProbeSpec::Exec { command } => {
                hasher.text("exec");
                hasher.number(command.len() as u64);
                for argument in command {
                    hasher.text(argument);
                }
            }
        }
    }
}

/// `topology`'s hash in the canonical form 1 (see the module comment), on this thread.
pub(crate) fn previous_form_hash(topology: &crate::Topology) -> [u8; 32] {
    let names: Vec<&str> = topology
        .services
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    let definitions = hash_definitions(
        HashForm::Previous,
        &topology.settings,
        &topology.locations,
        &topology.services,
    );
    hash_items_in_line(
        definitions,
        &topology.prefixes,
        &topology.bindings,
        &names,
        &AtomicBool::new(false),
    )
    .unwrap_or_else(|| unreachable!("a hash that nothing cancels runs to its end"))
}

/// What [`TopologyHash::spawn`] hands its thread: the definitions' part (a hasher that has
/// taken them, and the services' names in order), made on the thread, then the items.
type ItemsToHash = (DefinitionsToHash, PrefixList, BindingList);

/// Hashes the definitions into a new hasher and gives the services' names (see
/// [`TopologyHash::spawn`]).
pub(super) type DefinitionsToHash = Box<dyn FnOnce() -> (CanonicalHasher, Vec<String>) + Send>;

/// A compiled topology's canonical hash: known, or being computed on a thread of its own and
/// joined when first read. The thread holds shares of what it hashes (the prefixes and the
/// bindings are shared, not copied), so the topology may be used or moved meanwhile; dropped
/// before its hash was read (a compile that failed), it has the thread stop early.
#[derive(Debug)]
pub(crate) struct TopologyHash {
    value: OnceLock<[u8; 32]>,
    computing: Mutex<Option<JoinHandle<Option<[u8; 32]>>>>,
    cancelled: Arc<AtomicBool>,
}

impl TopologyHash {
    /// Hashes the definitions (`definitions` gives their hasher and the services' names),
    /// then the items after them (see [`hash_items`]), on a thread of its own, or on this one
    /// when no thread can be made (the process's limit reached).
    pub(super) fn spawn(
        definitions: DefinitionsToHash,
        prefixes: PrefixList,
        bindings: BindingList,
    ) -> TopologyHash {
        let cancelled = Arc::new(AtomicBool::new(false));
        // The work goes to the thread in a slot it takes it from, so that a thread that cannot
        // be made leaves it here.
        let work = Arc::new(Mutex::new(Some((definitions, prefixes, bindings))));
        fn run(work: &Mutex<Option<ItemsToHash>>, cancelled: &AtomicBool) -> Option<[u8; 32]> {
            let taken = work.lock().unwrap_or_else(PoisonError::into_inner).take();
            let (definitions, prefixes, bindings) =
                taken.expect("the items are taken once, by the thread or by its caller");
            let (hasher, names) = definitions();
            hash_items(hasher, &prefixes, &bindings, &names, cancelled)
        }
        let (shared, flag) = (Arc::clone(&work), Arc::clone(&cancelled));
        let spawned = std::thread::Builder::new()
            .name("compile-hash".into())
            .spawn(move || run(&shared, &flag));
        let computing = match spawned {
            Ok(handle) => Some(handle),
            Err(_) => {
                let value = run(&work, &cancelled)
                    .expect("only a dropped hash is cancelled, and this one is being made");
                return TopologyHash::known(value);
            }
        };
        TopologyHash {
            value: OnceLock::new(),
            computing: Mutex::new(computing),
            cancelled,
        }
    }

    /// A hash already computed.
    pub(crate) fn known(value: [u8; 32]) -> TopologyHash {
        TopologyHash {
            value: OnceLock::from(value),
            computing: Mutex::new(None),
            cancelled: Arc::default(),
        }
    }

    /// The hash, waiting for its thread the first time. A panic of that thread is resumed
    /// here, as if the hash had been computed on this thread.
    pub(crate) fn get(&self) -> [u8; 32] {
        if let Some(value) = self.value.get() {
            return *value;
        }
        let mut computing = self
            .computing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Another reader may have joined it while this one waited for the lock.
        if let Some(value) = self.value.get() {
            return *value;
        }
        let handle = computing
            .take()
            .expect("the canonical hash's thread panicked (resumed at the first read)");
        let value = handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .expect("only a dropped hash is cancelled, and this one is being read");
        *self.value.get_or_init(|| value)
    }
}

impl Drop for TopologyHash {
    fn drop(&mut self) {
        if self.value.get().is_none() {
            self.cancelled
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Form 2 written out from its definition, chunks of 1,024 prefixes cut here from the
    /// prefixes in order, is the compile's hash (2,500 prefixes: two whole chunks and a short
    /// one); the chunks' kept digests change nothing; form 1 written out is the previous
    /// form's hash.
    #[test]
    fn form_2_is_its_definition_and_form_1_the_items_in_line() {
        let mut text = String::new();
        text += "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"ams\"\ncountry = \"NL\"\nstate = \"live\"\n\n";
        text += "[[service]]\nname = \"cdn\"\ntopology = \"all\"\nlifecycle = \"active\"\n\n";
        text += "[[service]]\nname = \"api\"\ntopology = \"all\"\nlifecycle = \"active\"\n\n";
        for index in 0..2_500_u32 {
            let cidr = format!("10.{}.{}.0/24", index / 256, index % 256);
            text += &format!(
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = {}\nowner = \"o\"\nadvertise = {}\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"{}\"\n\n",
                64_500 + index % 5,
                index % 2 == 0,
                if index % 3 == 0 { "api" } else { "cdn" }
            );
        }
        let topology = crate::compile(&[topologyd_config::Source::new("all.toml", text)], 1)
            .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
        let names: Vec<&str> = topology
            .services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        let prefixes: Vec<&crate::model::Prefix> = topology.prefixes.iter().collect();
        assert_eq!(prefixes.len(), 2_500);

        let mut form_2 = hash_definitions(
            HashForm::Chunked,
            &topology.settings,
            &topology.locations,
            &topology.services,
        );
        form_2.number(2_500);
        for chunk in prefixes.chunks(1_024) {
            let mut digest = CanonicalHasher::new();
            for prefix in chunk {
                hash_prefix(&mut digest, prefix);
            }
            form_2.bytes(&digest.finish());
        }
        let mut records = CanonicalHasher::new();
        for binding in topology.bindings.iter() {
            hash_binding(&mut records, binding, &names);
        }
        form_2.number(topology.bindings.len() as u64);
        form_2.bytes(&records.finish());
        let written_out = form_2.finish();
        assert_eq!(topology.hash(), written_out);
        let again = hash_items(
            hash_definitions(
                HashForm::Chunked,
                &topology.settings,
                &topology.locations,
                &topology.services,
            ),
            &topology.prefixes,
            &topology.bindings,
            &names,
            &AtomicBool::new(true),
        );
        assert_eq!(again, Some(written_out), "kept digests: nothing to cancel");

        let mut form_1 = hash_definitions(
            HashForm::Previous,
            &topology.settings,
            &topology.locations,
            &topology.services,
        );
        form_1.number(2_500);
        for prefix in &prefixes {
            hash_prefix(&mut form_1, prefix);
        }
        form_1.number(topology.bindings.len() as u64);
        for binding in topology.bindings.iter() {
            hash_binding(&mut form_1, binding, &names);
        }
        assert_eq!(previous_form_hash(&topology), form_1.finish());
        assert_ne!(previous_form_hash(&topology), written_out);
    }

    /// A hash dropped unread stops its thread; one read is the hash computed on this thread.
    #[test]
    fn an_unread_hash_is_cancelled_and_a_read_one_is_the_inline_one() {
        let prefixes = PrefixList::default();
        let bindings = BindingList::new(vec![Binding {
            cidr: "192.0.2.0/24".parse().unwrap(),
            service: 0,
            prefix: 0,
            made_span: topologyd_config::Span::default().into(),
        }]);
        let names = vec!["web".to_owned()];
        let cancelled = AtomicBool::new(true);
        let stopped = hash_items(
            CanonicalHasher::new(),
            &prefixes,
            &bindings,
            &names,
            &cancelled,
        );
        assert_eq!(stopped, None, "a cancelled hash stops at its first item");
        let inline = hash_items(
            CanonicalHasher::new(),
            &prefixes,
            &bindings,
            &names,
            &AtomicBool::new(false),
        )
        .unwrap();
        let mut in_line = CanonicalHasher::new();
        in_line.number(0);
        let mut records = CanonicalHasher::new();
        records.network(&bindings[0].cidr);
        records.text("web");
        in_line.number(1);
        in_line.bytes(&records.finish());
        assert_eq!(inline, in_line.finish(), "the form 2 items, written out");
        let definitions = {
            let names = names.clone();
            Box::new(move || (CanonicalHasher::new(), names))
        };
        let spawned = TopologyHash::spawn(definitions, prefixes, bindings.clone());
        let flag = Arc::clone(&spawned.cancelled);
        assert_eq!(spawned.get(), inline);
        drop(spawned);
        assert!(
            !flag.load(std::sync::atomic::Ordering::Relaxed),
            "read: not cancelled"
        );
        let unread = TopologyHash::spawn(
            Box::new(move || (CanonicalHasher::new(), names)),
            PrefixList::default(),
            bindings,
        );
        let flag = Arc::clone(&unread.cancelled);
        drop(unread);
        assert!(
            flag.load(std::sync::atomic::Ordering::Relaxed),
            "dropped unread: cancelled"
        );
    }
}
