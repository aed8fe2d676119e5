//! The incremental compile equals the full compile: over random sequences of changes to a
//! topology written in several files (a fleet file with settings, locations and services, and
//! customer files of prefixes and bindings, in two table styles), each step is compiled against
//! the previous generation both ways — `compile_incremental` (unchanged customer files taken
//! from the previous generation) and `compile_against_in_full` (every file parsed) — and the
//! results must be the same (the fleet file, when unchanged at its place, is not parsed either:
//! its settings, locations and services are the previous generation's as parsed): the error
//! text of a refused change, or the hash, summary, warnings,
//! every location's routes, the prefixes and what `explain` says (file, line and column
//! included) of an accepted one. A change the full compile accepts must never make the
//! incremental one fall back, and the previous generation is sometimes one whose texts were
//! handed out (as the daemon runs it).
//!
//! Changes: advertise toggled, announce changed, a default binding moved or removed (G1), a
//! more-specific binding added or removed, a prefix added, removed or moved to another file, a
//! prefix overlapping another file's, a prefix's ROA, RPKI policy, tokens and origin changed,
//! its signed ownership evidence added, removed or signed with another key, `[settings]`
//! announce lengths and `[settings.onboarding]` changed (so that prefixes of reused files become
//! errors or need evidence), a file added anywhere, renamed, given another file's name, swapped
//! or removed, a comment added, a file's table style changed, a service or location changed in
//! the fleet file, a service defined in a customer file, a binding to an unknown service, a cidr
//! bound twice. Owners include non-ASCII text and TOML escapes.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use topologyd_ownership::CheckKind;
use topologyd_ownership::evidence::{EvidenceClaim, key_text, signing_key};
use topologyd_ownership::token::token_digest;
use topologyd_topology::{Source, Topology, compile, compile_against_in_full, compile_incremental};

const SERVICES: usize = 4;
const POOL: usize = 12;
const SELECTORS: [&str; 4] = ["all", "region = \"r0\"", "not tag:a", "location = \"l1\""];
const STATES: [&str; 3] = ["live", "test", "draining"];
/// Owners as written in TOML and as read: plain, non-ASCII, with an escape, the operator's own.
const OWNERS: [(&str, &str); 4] = [
    ("\"acme\"", "acme"),
    ("\"kunde-ü\"", "kunde-ü"),
    ("\"c\\\"q\"", "c\"q"),
    ("\"example-net\"", "example-net"),
];
/// `[settings] ipv4_announce_lengths` longest: 22 makes every IPv4 split (to /23) an error.
const LONGEST: [u8; 3] = [24, 23, 22];

#[derive(Debug, Clone)]
struct Prefix {
    /// Index into the pool of cidrs.
    pool: usize,
    advertise: bool,
    split: bool,
    default_service: Option<usize>,
    /// A more-specific binding (the prefix's second quarter) and its service.
    layered: Option<usize>,
    /// The first half of the pool cidr instead of all of it.
    narrow: bool,
    /// 0: nothing more; 1: a ROA and `rpki = "refuse"`; 2: tokens, `rpki = "allow"` and
    /// another origin; 3: a ROA whose max_length is the prefix's own (a split is RPKI-invalid).
    extras: usize,
    /// Ownership evidence signed with key `secret` for the prefix's cidr, owner and origin.
    signed: Option<u8>,
}

#[derive(Debug, Clone)]
struct CustomerFile {
    name: String,
    owner: usize,
    prefixes: Vec<Prefix>,
    comments: usize,
    /// Written as inline arrays (`prefix = [{ … }]`) instead of `[[prefix]]` tables.
    inline: bool,
    /// Defines a service of its own (so it is not a file of prefixes and bindings only).
    defines_service: bool,
}

#[derive(Debug, Clone)]
struct Model {
    selectors: [usize; SERVICES],
    pending: [bool; SERVICES],
    states: [usize; 3],
    files: Vec<CustomerFile>,
    /// A binding naming a service nobody defines, in file 0.
    unknown_service: bool,
    /// The cidr of the first prefix of file 0 bound again in the last file.
    bound_twice: bool,
    longest: usize,
    /// `[settings.onboarding]` with the evidence key of this secret.
    onboarding: Option<u8>,
}

#[derive(Debug, Clone)]
enum Change {
    Advertise {
        file: usize,
        prefix: usize,
    },
    Split {
        file: usize,
        prefix: usize,
    },
    DefaultService {
        file: usize,
        prefix: usize,
        service: Option<usize>,
    },
    Layered {
        file: usize,
        prefix: usize,
        service: Option<usize>,
    },
    /// The default binding (or the layered one) of a prefix, where it has one, bound to
    /// `service` instead: the same cidrs, other services.
    Reassign {
        file: usize,
        prefix: usize,
        layered: bool,
        service: usize,
    },
    AddPrefix {
        file: usize,
        pool: usize,
        service: usize,
    },
    Restyle {
        file: usize,
    },
    RemovePrefix {
        file: usize,
        prefix: usize,
    },
    MovePrefix {
        file: usize,
        prefix: usize,
        to: usize,
    },
    Rename {
        file: usize,
    },
    Swap {
        file: usize,
        other: usize,
    },
    RemoveFile {
        file: usize,
    },
    Comment {
        file: usize,
    },
    Selector {
        service: usize,
        selector: usize,
    },
    Pending {
        service: usize,
    },
    LocationState {
        location: usize,
        state: usize,
    },
    DefineService {
        file: usize,
    },
    UnknownService,
    BindTwice,
    Extras {
        file: usize,
        prefix: usize,
        extras: usize,
    },
    Sign {
        file: usize,
        prefix: usize,
        secret: Option<u8>,
    },
    Overlap {
        file: usize,
        prefix: usize,
        to: usize,
    },
    Longest {
        longest: usize,
    },
    Onboarding {
        secret: Option<u8>,
    },
    AddFile {
        at: usize,
        pool: usize,
        owner: usize,
    },
    SameName {
        file: usize,
        other: usize,
    },
}

fn pool_cidr(pool: usize) -> IpNet {
    if pool < POOL - 2 {
        format!("10.{}.0.0/22", pool * 4).parse().unwrap()
    } else {
        format!("2001:db8:{}::/46", (pool - (POOL - 2)) * 4)
            .parse()
            .unwrap()
    }
}

fn prefix_cidr(prefix: &Prefix) -> IpNet {
    let cidr = pool_cidr(prefix.pool);
    if prefix.narrow {
        cidr.subnets(cidr.prefix_len() + 1).unwrap().next().unwrap()
    } else {
        cidr
    }
}

fn origin(prefix: &Prefix) -> u32 {
    if prefix.extras == 2 { 64501 } else { 64500 }
}

/// The `[prefix.evidence]` of `prefix` owned by `owner`, signed with key `secret`, as an inline
/// table.
fn evidence(prefix: &Prefix, owner: &str, secret: u8) -> String {
    let cidr = prefix_cidr(prefix);
    let longest = match cidr {
        IpNet::V4(_) => 24,
        IpNet::V6(_) => 48,
    };
    let entry = EvidenceClaim {
        prefix: cidr,
        owner: owner.to_string(),
        origin_asn: origin(prefix),
        longest_announced: longest,
        token_sha256: token_digest("incremental-compile-test"),
        checks: vec![CheckKind::Rdns, CheckKind::Roa],
        verified_at_unix: 1_764_936_000,
    }
    .sign(&signing_key([secret; 32]))
    .topology_entry(true);
    let table = entry.split("[prefix.evidence]\n").nth(1).unwrap();
    let fields: Vec<&str> = table.lines().filter(|line| !line.is_empty()).collect();
    format!("{{ {} }}", fields.join(", "))
}

fn quarter(cidr: IpNet) -> IpNet {
    cidr.subnets(cidr.prefix_len() + 2).unwrap().nth(1).unwrap()
}

type Fields = Vec<(&'static str, String)>;

/// A file's prefixes and bindings as `[[table]]`s, each prefix followed by its bindings, or as
/// two inline arrays.
fn render_items(entries: &[(Fields, Vec<Fields>)], extra: &[Fields], inline: bool) -> String {
    let line = |fields: &Fields| {
        let body: Vec<String> = fields
            .iter()
            .map(|(key, value)| format!("{key} = {value}"))
            .collect();
        format!("{{ {} }}", body.join(", "))
    };
    let block = |kind: &str, fields: &Fields| {
        let mut text = format!("[[{kind}]]\n");
        for (key, value) in fields {
            text += &format!("{key} = {value}\n");
        }
        text + "\n"
    };
    let bindings = entries
        .iter()
        .flat_map(|(_, bindings)| bindings)
        .chain(extra);
    if inline {
        let prefixes: Vec<String> = entries.iter().map(|(prefix, _)| line(prefix)).collect();
        let bindings: Vec<String> = bindings.map(line).collect();
        let mut text = String::new();
        if !prefixes.is_empty() {
            text += &format!("prefix = [\n  {},\n]\n", prefixes.join(",\n  "));
        }
        if !bindings.is_empty() {
            text += &format!("binding = [{}]\n\n", bindings.join(", "));
        }
        return text;
    }
    let mut text = String::new();
    for (prefix, bindings) in entries {
        text += &block("prefix", prefix);
        for binding in bindings {
            text += &block("binding", binding);
        }
    }
    for binding in extra {
        text += &block("binding", binding);
    }
    text
}

fn binding(cidr: IpNet, service: &str) -> Fields {
    vec![
        ("cidr", format!("\"{cidr}\"")),
        ("service", format!("\"{service}\"")),
    ]
}

impl Model {
    fn fleet_text(&self) -> String {
        let mut text = format!(
            "[settings]\nipv4_announce_lengths = {{ shortest = 8, longest = {} }}\n\n",
            LONGEST[self.longest]
        );
        if let Some(secret) = self.onboarding {
            text += &format!(
                "[settings.onboarding]\noperator_owner = \"example-net\"\nevidence_keys = [\"{}\"]\n\n",
                key_text(&signing_key([secret; 32]).verifying_key())
            );
        }
        for (index, state) in self.states.iter().enumerate() {
            text += &format!(
                "[[location]]\nname = \"l{index}\"\nregion = \"r{}\"\nmetro = \"m\"\ncountry = \"C\"\ntags = [{}]\nstate = \"{}\"\n\n",
                index % 2,
                if index == 2 { "\"a\"" } else { "" },
                STATES[*state]
            );
        }
        for service in 0..SERVICES {
            text += &format!(
                "[[service]]\nname = \"s{service}\"\nlifecycle = \"{}\"\ntopology = '{}'\ncommunities = [\"64500:{service}\"]\n\n",
                if self.pending[service] {
                    "pending"
                } else {
                    "active"
                },
                SELECTORS[self.selectors[service]]
            );
        }
        text
    }

    fn customer_text(&self, index: usize) -> String {
        let file = &self.files[index];
        let mut text = String::new();
        for comment in 0..file.comments {
            text += &format!("# note {comment} of {}\n", file.name);
        }
        let mut entries: Vec<(Fields, Vec<Fields>)> = Vec::new();
        let (owner_text, owner) = OWNERS[file.owner];
        for prefix in &file.prefixes {
            let cidr = prefix_cidr(prefix);
            let split = match (prefix.split, cidr) {
                (false, _) => "\"aggregate\"".to_string(),
                (true, IpNet::V4(_)) => "{ split = 23 }".to_string(),
                (true, IpNet::V6(_)) => "{ split = 47 }".to_string(),
            };
            let mut fields: Fields = vec![
                ("cidr", format!("\"{cidr}\"")),
                ("origin_asn", origin(prefix).to_string()),
                ("owner", owner_text.to_string()),
                ("advertise", prefix.advertise.to_string()),
                ("announce", split),
            ];
            let longest = match cidr {
                IpNet::V4(_) => 24,
                IpNet::V6(_) => 48,
            };
            match prefix.extras {
                1 => {
                    fields.push(("roa", format!("{{ asn = 64500, max_length = {longest} }}")));
                    fields.push(("rpki", "\"refuse\"".into()));
                }
                2 => {
                    fields.push(("irr_token", "\"irr-token-1\"".into()));
                    fields.push(("rdns_token", "\"rdns-token-1\"".into()));
                    fields.push(("rpki", "\"allow\"".into()));
                }
                3 => fields.push((
                    "roa",
                    format!("{{ asn = 64500, max_length = {} }}", cidr.prefix_len()),
                )),
                _ => {}
            }
            if let Some(secret) = prefix.signed {
                fields.push(("evidence", evidence(prefix, owner, secret)));
            }
            let mut bindings = Vec::new();
            if let Some(service) = prefix.default_service {
                bindings.push(binding(cidr, &format!("s{service}")));
            }
            if let Some(service) = prefix.layered {
                bindings.push(binding(quarter(cidr), &format!("s{service}")));
            }
            entries.push((fields, bindings));
        }
        let mut extra = Vec::new();
        if index == 0
            && self.unknown_service
            && let Some(prefix) = file.prefixes.first()
        {
            extra.push(binding(quarter(quarter(prefix_cidr(prefix))), "nobody"));
        }
        if index + 1 == self.files.len()
            && self.bound_twice
            && let Some(prefix) = self.files[0].prefixes.first()
        {
            extra.push(binding(prefix_cidr(prefix), "s0"));
        }
        text += &render_items(&entries, &extra, file.inline);
        if file.defines_service {
            text += &format!(
                "[[service]]\nname = \"own{index}\"\nlifecycle = \"active\"\ntopology = 'all'\n\n"
            );
        }
        text
    }

    fn sources(&self) -> Vec<Source> {
        let mut sources = vec![Source::new("fleet.toml", self.fleet_text())];
        for index in 0..self.files.len() {
            sources.push(Source::new(
                self.files[index].name.clone(),
                self.customer_text(index),
            ));
        }
        sources
    }

    fn used_pools(&self) -> Vec<usize> {
        self.files
            .iter()
            .flat_map(|file| file.prefixes.iter().map(|prefix| prefix.pool))
            .collect()
    }

    fn prefix_mut(&mut self, file: usize, prefix: usize) -> Option<&mut Prefix> {
        let count = self.files.len();
        let file = self.files.get_mut(file % count.max(1))?;
        let count = file.prefixes.len();
        file.prefixes.get_mut(prefix % count.max(1))
    }

    fn apply(&mut self, change: &Change, step: usize) {
        let files = self.files.len().max(1);
        match *change {
            Change::Advertise { file, prefix } => {
                if let Some(prefix) = self.prefix_mut(file, prefix) {
                    prefix.advertise = !prefix.advertise;
                }
            }
            Change::Split { file, prefix } => {
                if let Some(prefix) = self.prefix_mut(file, prefix) {
                    prefix.split = !prefix.split;
                }
            }
            Change::DefaultService {
                file,
                prefix,
                service,
            } => {
                if let Some(prefix) = self.prefix_mut(file, prefix) {
                    prefix.default_service = service;
                }
            }
            Change::Reassign {
                file,
                prefix,
                layered,
                service,
            } => {
                if let Some(prefix) = self.prefix_mut(file, prefix) {
                    let binding = if layered {
                        &mut prefix.layered
                    } else {
                        &mut prefix.default_service
                    };
                    if let Some(bound) = binding {
                        *bound = service;
                    }
                }
            }
            Change::Layered {
                file,
                prefix,
                service,
            } => {
                if let Some(prefix) = self.prefix_mut(file, prefix) {
                    prefix.layered = service;
                }
            }
            Change::AddPrefix {
                file,
                pool,
                service,
            } => {
                // Each cidr of the pool is onboarded at most once (overlaps are their own test).
                if !self.used_pools().contains(&pool)
                    && let Some(file) = self.files.get_mut(file % files)
                {
                    file.prefixes.push(Prefix {
                        pool,
                        advertise: true,
                        split: false,
                        default_service: Some(service),
                        layered: None,
                        narrow: false,
                        extras: 0,
                        signed: None,
                    });
                }
            }
            Change::RemovePrefix { file, prefix } => {
                if let Some(file) = self.files.get_mut(file % files)
                    && !file.prefixes.is_empty()
                {
                    let count = file.prefixes.len();
                    file.prefixes.remove(prefix % count);
                }
            }
            Change::MovePrefix { file, prefix, to } => {
                if let Some(source) = self.files.get_mut(file % files)
                    && !source.prefixes.is_empty()
                {
                    let count = source.prefixes.len();
                    let moved = source.prefixes.remove(prefix % count);
                    let to = to % files;
                    self.files[to].prefixes.push(moved);
                }
            }
            Change::Rename { file } => {
                if let Some(file) = self.files.get_mut(file % files) {
                    file.name = format!("renamed-{step}.toml");
                }
            }
            Change::Swap { file, other } => {
                if !self.files.is_empty() {
                    self.files.swap(file % files, other % files);
                }
            }
            Change::RemoveFile { file } => {
                if self.files.len() > 1 {
                    self.files.remove(file % files);
                }
            }
            Change::Restyle { file } => {
                if let Some(file) = self.files.get_mut(file % files) {
                    file.inline = !file.inline;
                }
            }
            Change::Comment { file } => {
                if let Some(file) = self.files.get_mut(file % files) {
                    file.comments += 1;
                }
            }
            Change::Selector { service, selector } => self.selectors[service] = selector,
            Change::Pending { service } => self.pending[service] = !self.pending[service],
            Change::LocationState { location, state } => self.states[location] = state,
            Change::DefineService { file } => {
                if let Some(file) = self.files.get_mut(file % files) {
                    file.defines_service = !file.defines_service;
                }
            }
            Change::UnknownService => self.unknown_service = !self.unknown_service,
            Change::BindTwice => self.bound_twice = !self.bound_twice,
            Change::Extras {
                file,
                prefix,
                extras,
            } => {
                if let Some(prefix) = self.prefix_mut(file, prefix) {
                    prefix.extras = extras;
                }
            }
            Change::Sign {
                file,
                prefix,
                secret,
            } => {
                if let Some(prefix) = self.prefix_mut(file, prefix) {
                    prefix.signed = secret;
                }
            }
            Change::Overlap { file, prefix, to } => {
                let copy = self.prefix_mut(file, prefix).map(|prefix| Prefix {
                    narrow: !prefix.narrow,
                    ..prefix.clone()
                });
                if let Some(copy) = copy {
                    self.files[to % files].prefixes.push(copy);
                }
            }
            Change::Longest { longest } => self.longest = longest,
            Change::Onboarding { secret } => self.onboarding = secret,
            Change::AddFile { at, pool, owner } => {
                let mut prefixes = Vec::new();
                if !self.used_pools().contains(&pool) {
                    prefixes.push(Prefix {
                        pool,
                        advertise: true,
                        split: false,
                        default_service: Some(0),
                        layered: None,
                        narrow: false,
                        extras: 0,
                        signed: None,
                    });
                }
                let at = at % (self.files.len() + 1);
                self.files.insert(
                    at,
                    CustomerFile {
                        name: format!("added-{step}.toml"),
                        owner,
                        prefixes,
                        comments: 0,
                        inline: false,
                        defines_service: false,
                    },
                );
            }
            Change::SameName { file, other } => {
                if !self.files.is_empty() {
                    let name = self.files[other % files].name.clone();
                    self.files[file % files].name = name;
                }
            }
        }
    }
}

fn model_strategy() -> impl Strategy<Value = Model> {
    (
        prop::array::uniform4(0..SELECTORS.len()),
        prop::collection::vec((any::<bool>(), 0..SERVICES, 0..4_usize), 1..=6),
        prop::array::uniform3((any::<bool>(), 0..OWNERS.len())),
    )
        .prop_map(|(selectors, prefixes, styles)| {
            let mut files: Vec<CustomerFile> = (0..3)
                .map(|index| CustomerFile {
                    name: format!("customer-{index}.toml"),
                    owner: styles[index].1,
                    prefixes: Vec::new(),
                    comments: 0,
                    inline: styles[index].0,
                    defines_service: false,
                })
                .collect();
            for (pool, (split, service, extras)) in prefixes.into_iter().enumerate() {
                files[pool % 3].prefixes.push(Prefix {
                    pool,
                    advertise: true,
                    split,
                    default_service: Some(service),
                    layered: None,
                    narrow: false,
                    // No split-invalid ROA at the start: the first generation must compile.
                    extras: if extras == 3 { 0 } else { extras },
                    // Signed with the key `[settings.onboarding]` names most often.
                    signed: Some(1),
                });
            }
            Model {
                selectors,
                pending: [false; SERVICES],
                states: [0; 3],
                files,
                unknown_service: false,
                bound_twice: false,
                longest: 0,
                onboarding: None,
            }
        })
}

fn change_strategy() -> impl Strategy<Value = Change> {
    let index = 0..8_usize;
    let service = || prop::option::of(0..SERVICES);
    prop_oneof![
        4 => (index.clone(), index.clone()).prop_map(|(file, prefix)| Change::Advertise { file, prefix }),
        2 => (index.clone(), index.clone()).prop_map(|(file, prefix)| Change::Split { file, prefix }),
        2 => (index.clone(), index.clone(), service())
            .prop_map(|(file, prefix, service)| Change::DefaultService { file, prefix, service }),
        3 => (index.clone(), index.clone(), service())
            .prop_map(|(file, prefix, service)| Change::Layered { file, prefix, service }),
        2 => (index.clone(), index.clone(), any::<bool>(), 0..SERVICES).prop_map(
            |(file, prefix, layered, service)| Change::Reassign { file, prefix, layered, service }
        ),
        2 => (index.clone(), 0..POOL, 0..SERVICES)
            .prop_map(|(file, pool, service)| Change::AddPrefix { file, pool, service }),
        1 => index.clone().prop_map(|file| Change::Restyle { file }),
        1 => (index.clone(), index.clone()).prop_map(|(file, prefix)| Change::RemovePrefix { file, prefix }),
        2 => (index.clone(), index.clone(), index.clone())
            .prop_map(|(file, prefix, to)| Change::MovePrefix { file, prefix, to }),
        1 => index.clone().prop_map(|file| Change::Rename { file }),
        1 => (index.clone(), index.clone()).prop_map(|(file, other)| Change::Swap { file, other }),
        1 => index.clone().prop_map(|file| Change::RemoveFile { file }),
        2 => index.clone().prop_map(|file| Change::Comment { file }),
        1 => (0..SERVICES, 0..SELECTORS.len())
            .prop_map(|(service, selector)| Change::Selector { service, selector }),
        1 => (0..SERVICES).prop_map(|service| Change::Pending { service }),
        1 => (0..3_usize, 0..STATES.len())
            .prop_map(|(location, state)| Change::LocationState { location, state }),
        1 => index.clone().prop_map(|file| Change::DefineService { file }),
        1 => Just(Change::UnknownService),
        1 => Just(Change::BindTwice),
        2 => (index.clone(), index.clone(), 0..4_usize)
            .prop_map(|(file, prefix, extras)| Change::Extras { file, prefix, extras }),
        2 => (index.clone(), index.clone(), prop::option::of(1..3_u8))
            .prop_map(|(file, prefix, secret)| Change::Sign { file, prefix, secret }),
        1 => (index.clone(), index.clone(), index.clone())
            .prop_map(|(file, prefix, to)| Change::Overlap { file, prefix, to }),
        1 => (0..LONGEST.len()).prop_map(|longest| Change::Longest { longest }),
        2 => prop_oneof![3 => Just(Some(1_u8)), 1 => Just(Some(2)), 1 => Just(None)]
            .prop_map(|secret| Change::Onboarding { secret }),
        1 => (index.clone(), 0..POOL, 0..OWNERS.len())
            .prop_map(|(at, pool, owner)| Change::AddFile { at, pool, owner }),
        1 => (index.clone(), index.clone()).prop_map(|(file, other)| Change::SameName { file, other }),
    ]
}

/// Addresses `explain` is asked about: the first address of every pool cidr and of its second
/// quarter (where layered bindings are).
fn probes() -> Vec<IpAddr> {
    (0..POOL)
        .flat_map(|pool| {
            let cidr = pool_cidr(pool);
            [cidr.addr(), quarter(cidr).addr()]
        })
        .collect()
}

/// Everything a compiled topology shows, as text: equal texts, equal topologies.
fn observed(topology: &Topology) -> String {
    let mut text = format!("{:?}\nhash {}\n", topology.summary(), topology.hash_hex());
    for warning in topology.warnings() {
        text += &format!("warning {warning}\n");
    }
    for location in topology.locations() {
        text += &format!(
            "{}: {:?}\n",
            location.name,
            topology.desired(&location.name).unwrap()
        );
    }
    text += &serde_json::to_string(topology.prefixes()).unwrap();
    text += &serde_json::to_string(topology.services()).unwrap();
    for (route, announcing) in topology.routes() {
        text += &format!(
            "\nroute {route:?} at {:?}",
            topology.location_names(announcing)
        );
    }
    text += &format!("\n{:?}", topology.settings());
    for (cidr, service) in topology.bindings() {
        text += &format!("\nbinding {cidr} {service}");
    }
    for address in probes() {
        text += &format!("\n{:?}", topology.explain(address));
    }
    let names: Vec<&str> = topology
        .sources()
        .iter()
        .map(|source| source.name.as_str())
        .collect();
    text + &format!("\nsources {names:?}")
}

/// How many files of `sources` an incremental compile against a generation compiled from
/// `previous` takes from it: those with the name and text of a previous file (each previous
/// file matched once) that holds only prefixes and bindings.
fn expected_reuse(previous: &[Source], sources: &[Source]) -> usize {
    let defines = |source: &Source| {
        ["[settings", "[[location]]", "[[service]]"]
            .iter()
            .any(|table| source.text.contains(table))
    };
    // Every prefix and binding has a cidr; nothing else in these files names one.
    let holds_items = |source: &Source| source.text.contains("cidr");
    // Files of prefixes and bindings: unchanged anywhere in the bundle.
    let mut unmatched: Vec<&Source> = previous.iter().filter(|source| !defines(source)).collect();
    let items = sources
        .iter()
        .filter(|source| {
            let found = unmatched
                .iter()
                .position(|old| old.name == source.name && old.text == source.text);
            found.map(|index| unmatched.remove(index)).is_some()
        })
        .count();
    // Files of definitions only: unchanged at the same place.
    let definitions = sources
        .iter()
        .zip(previous)
        .filter(|(source, old)| {
            defines(source)
                && !holds_items(source)
                && old.name == source.name
                && old.text == source.text
        })
        .count();
    items + definitions
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_incremental_compile_equals_the_full_compile(
        model in model_strategy(),
        changes in prop::collection::vec((change_strategy(), any::<bool>(), any::<bool>()), 1..12),
    ) {
        let mut model = model;
        let mut previous_sources = model.sources();
        let mut previous = compile(previous_sources.clone(), 1).unwrap();
        for (step, (change, release_texts, keep_full)) in changes.iter().enumerate() {
            model.apply(change, step);
            let generation = step as u64 + 2;
            let sources = model.sources();
            let expected = expected_reuse(&previous_sources, &sources);
            let full = compile_against_in_full(sources.clone(), generation, &previous);
            let (incremental, reuse) = compile_incremental(sources.clone(), generation, &previous);
            match (&full, &incremental) {
                (Ok(full), Ok(incremental)) => {
                    prop_assert_eq!(observed(full), observed(incremental), "after {:?}", change);
                    prop_assert!(!reuse.fell_back, "the full compile accepts {:?}, the incremental fell back", change);
                    prop_assert_eq!(reuse.reused_files, expected, "after {:?}", change);
                    prop_assert_eq!(reuse.parsed_files, sources.len() - expected);
                }
                (Err(full), Err(incremental)) => {
                    prop_assert_eq!(full.to_string(), incremental.to_string(), "after {:?}", change);
                    prop_assert!(reuse.fell_back || expected == 0, "after {:?}", change);
                }
                _ => prop_assert!(
                    false,
                    "after {:?}: full {:?}, incremental {:?}",
                    change,
                    full.as_ref().map(|_| ()),
                    incremental.as_ref().map(|_| ())
                ),
            }
            // The next step is compiled against either result (they are equal).
            let next = if *keep_full { full.ok() } else { incremental.ok() };
            if let Some(mut next) = next {
                if *release_texts {
                    // As the daemon runs a generation: texts in the state directory only.
                    next.take_sources();
                }
                previous = next;
                previous_sources = sources;
            }
        }
    }
}

/// Changes that leave every cidr where it was: a value of a prefix changed, a comment added, a
/// file's table style changed.
fn same_cidrs_change_strategy() -> impl Strategy<Value = Change> {
    let index = 0..8_usize;
    prop_oneof![
        3 => (index.clone(), index.clone()).prop_map(|(file, prefix)| Change::Advertise { file, prefix }),
        2 => (index.clone(), index.clone()).prop_map(|(file, prefix)| Change::Split { file, prefix }),
        2 => (index.clone(), index.clone(), 0..4_usize)
            .prop_map(|(file, prefix, extras)| Change::Extras { file, prefix, extras }),
        1 => (index.clone(), index.clone(), prop::option::of(1..3_u8))
            .prop_map(|(file, prefix, secret)| Change::Sign { file, prefix, secret }),
        1 => index.clone().prop_map(|file| Change::Comment { file }),
        1 => index.clone().prop_map(|file| Change::Restyle { file }),
        3 => (index.clone(), index.clone(), any::<bool>(), 0..SERVICES).prop_map(
            |(file, prefix, layered, service)| Change::Reassign { file, prefix, layered, service }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A change whose files onboard and bind the same cidrs as before (a toggle, a split, a
    /// ROA, a comment, a binding given another service) takes the running generation's
    /// prefixes and bindings whole and patches the changed ones in: it never merges, and its
    /// result is still the full compile's (positions of the moved items, services, blackholes
    /// refused and the hash included).
    #[test]
    fn a_change_of_values_only_is_patched_and_equals_the_full_compile(
        model in model_strategy(),
        changes in prop::collection::vec((same_cidrs_change_strategy(), any::<bool>()), 1..10),
        apart in any::<bool>(),
    ) {
        let mut model = model;
        // The bindings in their prefixes' files, or all in one file of their own.
        let sources_of = |model: &Model| if apart { bindings_apart(model) } else { model.sources() };
        let mut previous = compile(sources_of(&model), 1).unwrap();
        for (step, (change, release_texts)) in changes.iter().enumerate() {
            model.apply(change, step);
            let generation = step as u64 + 2;
            let sources = sources_of(&model);
            let full = compile_against_in_full(sources.clone(), generation, &previous);
            let (incremental, reuse) = compile_incremental(sources, generation, &previous);
            prop_assert_eq!(full.is_err(), incremental.is_err(), "after {:?}", change);
            let (Ok(full), Ok(incremental)) = (full, incremental) else {
                // A refused change (a split the ROA does not cover, evidence signed with an
                // unknown key) is refused both ways (its text is the full compile's, the
                // other test compares it); the next step starts from the same place.
                continue;
            };
            prop_assert!(reuse.items_patched, "after {:?}: {:?}", change, reuse);
            prop_assert_eq!(observed(&full), observed(&incremental), "after {:?}", change);
            // The plan against the patched compile (whose route chunks it shares, when nothing
            // changed their routes) is the plan against the full compile (which shares none).
            let intent = topologyd_topology::Intent::default();
            prop_assert_eq!(
                topologyd_topology::plan(&previous, &incremental, &intent).to_json(),
                topologyd_topology::plan(&previous, &full, &intent).to_json(),
                "after {:?}", change
            );
            let mut next = incremental;
            if *release_texts {
                next.take_sources();
            }
            previous = next;
        }
    }
}

/// A model of six customer files of one prefix each (`prefix(index)`; `style(index)` gives a
/// file's number of comments and whether it is written inline), every location live.
fn one_prefix_files(
    selectors: [usize; SERVICES],
    pending: [bool; SERVICES],
    prefix: impl Fn(usize) -> Prefix,
    style: impl Fn(usize) -> (usize, bool),
) -> Model {
    Model {
        selectors,
        pending,
        states: [0; 3],
        files: (0..6)
            .map(|index| CustomerFile {
                name: format!("customer-{index}.toml"),
                owner: index % OWNERS.len(),
                prefixes: vec![prefix(index)],
                comments: style(index).0,
                inline: style(index).1,
                defines_service: false,
            })
            .collect(),
        unknown_service: false,
        bound_twice: false,
        longest: 0,
        onboarding: None,
    }
}

/// The case the incremental compile is for: one customer file changed among many, every other
/// file (the fleet file too) taken from the previous generation, and the same topology as a
/// full compile.
#[test]
fn a_toggle_in_one_customer_file_parses_only_that_file() {
    let mut model = one_prefix_files(
        [0; SERVICES],
        [false; SERVICES],
        |index| Prefix {
            pool: index,
            advertise: true,
            split: index % 2 == 0,
            default_service: Some(index % SERVICES),
            layered: Some((index + 1) % SERVICES).filter(|_| index % 3 == 0),
            narrow: false,
            extras: index % 3,
            signed: None,
        },
        |index| (index % 2, index % 2 == 1),
    );
    let mut previous = compile(model.sources(), 1).unwrap();
    previous.take_sources();
    model.files[3].prefixes[0].advertise = false;
    let (incremental, reuse) = compile_incremental(model.sources(), 2, &previous);
    let incremental = incremental.unwrap();
    assert_eq!(
        (
            reuse.reused_files,
            reuse.parsed_files,
            reuse.fell_back,
            reuse.items_patched,
            reuse.definitions_reused,
        ),
        (6, 1, false, true, true)
    );
    let full = compile_against_in_full(model.sources(), 2, &previous).unwrap();
    assert_eq!(observed(&full), observed(&incremental));
    assert_ne!(full.hash(), previous.hash());
    // The plan of the patched compile (whose bindings are the running ones, shared) and of
    // the full compile (copies) agree: no binding changed.
    let intent = topologyd_topology::Intent::default();
    let patched_plan = topologyd_topology::plan(&previous, &incremental, &intent);
    let full_plan = topologyd_topology::plan(&previous, &full, &intent);
    assert!(patched_plan.binding_changes.is_empty());
    assert_eq!(patched_plan.to_json(), full_plan.to_json());

    // A binding given another service keeps its cidr: it is patched, into a copy of the
    // bindings (the running generation keeps its own), and equals the full compile.
    let mut moved = model.clone();
    moved.files[3].prefixes[0].default_service = Some((3 + 1) % SERVICES);
    let (result, reuse) = compile_incremental(moved.sources(), 3, &incremental);
    assert!(reuse.items_patched, "{reuse:?}");
    let full = compile_against_in_full(moved.sources(), 3, &incremental).unwrap();
    let result = result.unwrap();
    assert_eq!(observed(&full), observed(&result));
    assert_eq!(full.hash(), result.hash());
    assert_ne!(result.hash(), incremental.hash());
    let moved_plan = topologyd_topology::plan(&incremental, &result, &intent);
    assert_eq!(
        moved_plan.binding_changes.len(),
        1,
        "{:?}",
        moved_plan.binding_changes
    );
    // A selector changed in the fleet file: the definitions are compiled again, and the
    // result is the full compile's.
    let mut selected = model.clone();
    selected.selectors[0] = (selected.selectors[0] + 1) % SELECTORS.len();
    let (result, reuse) = compile_incremental(selected.sources(), 3, &incremental);
    assert!(!reuse.definitions_reused, "{reuse:?}");
    let full = compile_against_in_full(selected.sources(), 3, &incremental).unwrap();
    assert_eq!(observed(&full), observed(&result.unwrap()));
    // A cidr bound twice, or a binding naming a service nobody defines, is not patched: the
    // merge refuses it as the full compile does.
    let mut twice = model.clone();
    twice.bound_twice = true;
    let (result, reuse) = compile_incremental(twice.sources(), 3, &incremental);
    assert!(!reuse.items_patched && result.is_err(), "{reuse:?}");
    let mut unknown = model.clone();
    unknown.unknown_service = true;
    let (result, reuse) = compile_incremental(unknown.sources(), 3, &incremental);
    let full = compile_against_in_full(unknown.sources(), 3, &incremental);
    assert!(!reuse.items_patched, "{reuse:?}");
    let (Err(result), Err(full)) = (result, full) else {
        panic!("a binding to an unknown service is refused")
    };
    assert_eq!(result.to_string(), full.to_string());

    // A file that defines a service is parsed even when unchanged; an error is the full
    // compile's error, with its place.
    model.files[1].defines_service = true;
    let previous = incremental;
    let next = compile_against_in_full(model.sources(), 3, &previous).unwrap();
    model.files[4].prefixes[0].default_service = None;
    model.files[4].prefixes[0].layered = Some(0);
    let (result, reuse) = compile_incremental(model.sources(), 4, &next);
    assert_eq!((reuse.reused_files, reuse.fell_back), (0, true));
    let error = result.unwrap_err().to_string();
    assert!(error.contains("customer-4.toml:2:8: error: G1"), "{error}");
    assert!(error.contains("G1"), "{error}");
    assert_eq!(
        error,
        compile_against_in_full(model.sources(), 4, &next)
            .unwrap_err()
            .to_string()
    );
}

/// What only a parse of every file sees is still reported when a definitions file is taken
/// from the previous generation instead of parsed: `[settings]` written in a second file, and
/// more locations than the limit once another file adds one. Each is the full compile's error.
#[test]
fn a_kept_definitions_file_hides_no_error_of_the_whole_parse() {
    let fleet = |locations: usize| {
        let mut text =
            String::from("[settings]\nipv4_announce_lengths = { shortest = 8, longest = 24 }\n\n");
        for index in 0..locations {
            text += &format!(
                "[[location]]\nname = \"l{index}\"\nregion = \"r0\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\n"
            );
        }
        text += "[[service]]\nname = \"s0\"\ntopology = \"all\"\n";
        text
    };
    let customer = "[[prefix]]\ncidr = \"198.51.100.0/24\"\norigin_asn = 64500\nowner = \"acme\"\nadvertise = true\n\n[[binding]]\ncidr = \"198.51.100.0/24\"\nservice = \"s0\"\n";
    let cases = [
        (
            fleet(3),
            format!(
                "{customer}\n[settings]\nipv4_announce_lengths = {{ shortest = 8, longest = 24 }}\n"
            ),
        ),
        (
            fleet(topologyd_config::bounds::MAX_LOCATIONS),
            format!(
                "{customer}\n[[location]]\nname = \"extra\"\nregion = \"r0\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n"
            ),
        ),
    ];
    for (fleet, changed) in cases {
        let before = vec![
            Source::new("fleet.toml", fleet.clone()),
            Source::new("customer.toml", customer),
        ];
        let previous = compile(before, 1).unwrap();
        let after = vec![
            Source::new("fleet.toml", fleet),
            Source::new("customer.toml", changed),
        ];
        let full = compile_against_in_full(after.clone(), 2, &previous)
            .unwrap_err()
            .to_string();
        let (incremental, reuse) = compile_incremental(after, 2, &previous);
        assert!(reuse.fell_back, "{reuse:?}");
        assert_eq!(incremental.unwrap_err().to_string(), full);
    }
}

/// Definitions split over several files between files of items: each kept file's definitions
/// go back in their file's place (a kept file after a parsed one, several kept at once, a
/// file of `[settings]` alone, one of services alone), and each step equals the full compile.
#[test]
fn definitions_in_several_files_are_taken_in_their_places() {
    let settings = |shortest: u8| {
        format!("[settings]\nipv4_announce_lengths = {{ shortest = {shortest}, longest = 24 }}\n")
    };
    let locations = "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\n[[location]]\nname = \"AMS01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n";
    let services = "[[service]]\nname = \"web\"\ntopology = \"all\"\n\n[[service]]\nname = \"idle\"\ntopology = \"all\"\n";
    let customer = |third: u8, advertise: bool| {
        format!(
            "[[prefix]]\ncidr = \"198.51.{third}.0/24\"\norigin_asn = 64500\nowner = \"acme\"\nadvertise = {advertise}\n\n[[binding]]\ncidr = \"198.51.{third}.0/24\"\nservice = \"web\"\n"
        )
    };
    let bundle = |shortest: u8, advertise: bool| {
        vec![
            Source::new("a.toml", customer(100, true)),
            Source::new("settings.toml", settings(shortest)),
            Source::new("locations.toml", locations),
            Source::new("b.toml", customer(101, advertise)),
            Source::new("services.toml", services),
        ]
    };
    let mut previous = compile(bundle(8, true), 1).unwrap();
    // Both location names differing in case and the service without bindings are warnings
    // located in kept files.
    assert!(previous.warnings().len() >= 2, "{:?}", previous.warnings());
    let steps = [
        ((8, false), 4), // b.toml changed: a.toml and the three definition files taken
        ((8, true), 4),
        ((9, false), 3), // settings changed too: settings.toml parsed as well
        ((9, true), 4),
    ];
    for (generation, ((shortest, advertise), taken)) in (2..).zip(steps) {
        let sources = bundle(shortest, advertise);
        let full = compile_against_in_full(sources.clone(), generation, &previous).unwrap();
        let (incremental, reuse) = compile_incremental(sources, generation, &previous);
        let incremental = incremental.unwrap();
        assert_eq!(
            (reuse.reused_files, reuse.fell_back),
            (taken, false),
            "{generation}"
        );
        assert_eq!(observed(&full), observed(&incremental), "{generation}");
        previous = incremental;
    }
}

/// A patched compile checks for blackholes only under the prefixes it compiled again (the
/// others' routes are the running generation's, which had none): a toggle that would announce
/// a route over a layered binding whose service is pending, or runs at fewer locations, is
/// still refused exactly as the full compile refuses it, also when another prefix toggled with
/// it sorts first.
#[test]
fn a_toggle_that_would_blackhole_a_layered_binding_is_refused_as_in_full() {
    // Service 0 runs everywhere; 1 is pending; 2 runs at location l1 only.
    let mut model = one_prefix_files(
        [0, 0, 3, 0],
        [false, true, false, false],
        |index| Prefix {
            pool: index,
            advertise: index < 2,
            split: false,
            default_service: Some(0),
            layered: [None, None, None, Some(1), Some(2), None][index],
            narrow: false,
            extras: 0,
            signed: None,
        },
        |_| (0, false),
    );
    let running = compile(model.sources(), 1).unwrap();
    // The prefixes of files 2 and 5 are harmless to announce; 2 sorts before the others, 5
    // after them. A refusal's text is always the full compile's (the incremental compile falls
    // back to it): what tells a missed blackhole is a compile that succeeds.
    for toggled in [
        vec![3],
        vec![4],
        vec![3, 4],
        vec![2, 4],
        vec![2, 3],
        vec![3, 5],
        vec![2, 4, 5],
    ] {
        let mut changed = model.clone();
        for file in &toggled {
            changed.files[*file].prefixes[0].advertise = true;
        }
        let full = compile_against_in_full(changed.sources(), 2, &running)
            .expect_err("announcing over the layered binding is a blackhole");
        let (incremental, reuse) = compile_incremental(changed.sources(), 2, &running);
        let incremental = incremental.expect_err("the incremental compile refuses it too");
        assert_eq!(full.to_string(), incremental.to_string(), "{toggled:?}");
        assert!(
            full.to_string().contains("blackhole by construction"),
            "{full}"
        );
        for file in toggled.iter().filter(|file| [3, 4].contains(*file)) {
            let name = format!("customer-{file}.toml:");
            assert!(full.to_string().contains(&name), "{toggled:?}: {full}");
        }
        assert!(reuse.fell_back, "{reuse:?}");
    }
    // The same toggle with the layered service made to run everywhere is patched and accepted.
    model.selectors[2] = 0;
    let running = compile(model.sources(), 1).unwrap();
    let mut changed = model.clone();
    changed.files[2].prefixes[0].advertise = true;
    changed.files[4].prefixes[0].advertise = true;
    let (incremental, reuse) = compile_incremental(changed.sources(), 2, &running);
    assert!(reuse.items_patched, "{reuse:?}");
    let full = compile_against_in_full(changed.sources(), 2, &running).unwrap();
    assert_eq!(observed(&full), observed(&incremental.unwrap()));
}

/// Six customer files of one announced prefix each, bound to service 0 with a layered
/// binding to service 3: services 0 and 3 run everywhere, 1 is pending, 2 runs at location l1
/// only.
fn layered_everywhere() -> Model {
    one_prefix_files(
        [0, 0, 3, 0],
        [false, true, false, false],
        |index| Prefix {
            pool: index,
            advertise: true,
            split: false,
            default_service: Some(0),
            layered: Some(3),
            narrow: false,
            extras: 0,
            signed: None,
        },
        |_| (0, false),
    )
}

/// A binding moved to another service is patched, and blackholes are looked for under its
/// prefix too: a layered binding moved to a service that is pending, or that runs at fewer
/// locations than the route over it, is refused exactly as the full compile refuses it, also
/// with a harmless move in a prefix that sorts before or after it.
#[test]
fn a_binding_moved_to_a_service_that_would_blackhole_is_refused_as_in_full() {
    let model = layered_everywhere();
    let running = compile(model.sources(), 1).unwrap();
    // (file, the layered binding's new service); files 2 and 5 sort before and after 3 and 4.
    for moves in [
        vec![(3, 1)],
        vec![(4, 2)],
        vec![(2, 0), (4, 2)],
        vec![(3, 1), (5, 0)],
        vec![(2, 0), (3, 2), (5, 0)],
    ] {
        let mut changed = model.clone();
        for (file, service) in &moves {
            changed.files[*file].prefixes[0].layered = Some(*service);
        }
        let full = compile_against_in_full(changed.sources(), 2, &running)
            .expect_err("the layered binding's service is missing where the route is announced");
        let (incremental, reuse) = compile_incremental(changed.sources(), 2, &running);
        let Err(incremental) = incremental else {
            panic!("{moves:?}: the incremental compile accepts a blackhole")
        };
        assert_eq!(full.to_string(), incremental.to_string(), "{moves:?}");
        assert!(
            full.to_string().contains("blackhole by construction"),
            "{full}"
        );
        assert!(reuse.fell_back, "{reuse:?}");
    }
    // Harmless moves (a default binding and a layered one, in two files) are patched: the
    // result, hash included, is the full compile's, and the plan names both bindings.
    let mut changed = model.clone();
    changed.files[2].prefixes[0].layered = Some(0);
    changed.files[4].prefixes[0].default_service = Some(3);
    let (incremental, reuse) = compile_incremental(changed.sources(), 2, &running);
    assert!(reuse.items_patched, "{reuse:?}");
    let incremental = incremental.unwrap();
    let full = compile_against_in_full(changed.sources(), 2, &running).unwrap();
    assert_eq!(observed(&full), observed(&incremental));
    let intent = topologyd_topology::Intent::default();
    let plan = topologyd_topology::plan(&running, &incremental, &intent);
    assert_eq!(plan.binding_changes.len(), 2, "{:?}", plan.binding_changes);
    assert_eq!(
        plan.to_json(),
        topologyd_topology::plan(&running, &full, &intent).to_json()
    );
}

/// The model's sources with every binding moved out of the customer files into one file of
/// bindings, after them (as a generated topology writes them: prefixes and bindings apart).
fn bindings_apart(model: &Model) -> Vec<Source> {
    let mut bindings = String::new();
    let mut sources: Vec<Source> = model
        .sources()
        .into_iter()
        .map(|source| {
            if source.name == "fleet.toml" {
                return source;
            }
            let mut kept = String::new();
            for table in source.text.split("\n\n") {
                let target = if table.trim_start().starts_with("[[binding]]") {
                    &mut bindings
                } else {
                    &mut kept
                };
                target.push_str(table);
                target.push_str("\n\n");
            }
            Source::new(source.name, kept)
        })
        .collect();
    sources.push(Source::new("bindings.toml", bindings));
    sources
}

/// A binding moved to another service in a file of bindings alone: its prefix's file did not
/// change, yet blackholes are looked for under that prefix, and a move that would make one is
/// refused as the full compile refuses it; a harmless one is patched and equals it.
#[test]
fn a_binding_moved_in_a_file_of_bindings_is_checked_under_its_prefix() {
    let model = layered_everywhere();
    let running = compile(bindings_apart(&model), 1).unwrap();
    for (file, service) in [(3, 1), (4, 2), (0, 2), (5, 1)] {
        let mut changed = model.clone();
        changed.files[file].prefixes[0].layered = Some(service);
        let full = compile_against_in_full(bindings_apart(&changed), 2, &running)
            .expect_err("the layered binding's service is missing where the route is announced");
        let (incremental, reuse) = compile_incremental(bindings_apart(&changed), 2, &running);
        let Err(incremental) = incremental else {
            panic!("{file}: the incremental compile accepts a blackhole")
        };
        assert_eq!(full.to_string(), incremental.to_string(), "{file}");
        assert!(
            full.to_string().contains("blackhole by construction"),
            "{full}"
        );
        assert!(reuse.fell_back, "{reuse:?}");
    }
    let mut changed = model.clone();
    changed.files[4].prefixes[0].layered = Some(0);
    let (incremental, reuse) = compile_incremental(bindings_apart(&changed), 2, &running);
    assert!(reuse.items_patched && reuse.parsed_files == 1, "{reuse:?}");
    let incremental = incremental.unwrap();
    // Only bindings changed: the running prefixes are shared, not copied.
    assert_eq!(
        incremental
            .prefixes()
            .chunks_shared_with(running.prefixes()),
        running.prefixes().chunk_count(),
        "the prefixes are the running generation's"
    );
    let full = compile_against_in_full(bindings_apart(&changed), 2, &running).unwrap();
    assert_eq!(observed(&full), observed(&incremental));
}

/// A toggle among thousands of prefixes (the prefixes stored in shared chunks) copies the one
/// chunk holding the toggled prefix and shares every other with the running generation,
/// wherever the prefix falls (first, inside, last chunk); its result is the full compile's.
#[test]
fn a_toggle_copies_only_the_chunk_holding_its_prefix() {
    const PREFIXES: usize = 3000;
    let fleet = "[[location]]\nname = \"l0\"\nregion = \"r0\"\nmetro = \"m\"\ncountry = \"C\"\nstate = \"live\"\n\n[[service]]\nname = \"s0\"\nlifecycle = \"active\"\ntopology = 'all'\n\n";
    let item = |index: usize, advertise: bool| {
        let cidr = format!("10.{}.{}.0/24", index / 256, index % 256);
        format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"acme\"\nadvertise = {advertise}\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"s0\"\n\n"
        )
    };
    for toggled in [0, 1500, PREFIXES - 1] {
        let sources = |advertise: bool| {
            let rest: String = (0..PREFIXES)
                .filter(|index| *index != toggled)
                .map(|index| item(index, true))
                .collect();
            vec![
                Source::new("fleet.toml", fleet),
                Source::new("prefixes.toml", rest),
                Source::new("customer.toml", item(toggled, advertise)),
            ]
        };
        let running = compile(sources(true), 1).unwrap();
        let chunks = running.prefixes().chunk_count();
        assert!(chunks >= 3, "{chunks} chunks");
        let (incremental, reuse) = compile_incremental(sources(false), 2, &running);
        assert!(reuse.items_patched, "{toggled}: {reuse:?}");
        let incremental = incremental.unwrap();
        assert_eq!(
            incremental
                .prefixes()
                .chunks_shared_with(running.prefixes()),
            chunks - 1,
            "{toggled}: one chunk copied"
        );
        assert_eq!(
            incremental.route_chunks_shared_with(&running),
            (chunks - 1, chunks),
            "{toggled}: the routes of one prefix chunk built again, the others shared"
        );
        assert!(!incremental.prefixes()[toggled].advertise);
        assert!(
            running.prefixes()[toggled].advertise,
            "the running one kept"
        );
        let full = compile_against_in_full(sources(false), 2, &running).unwrap();
        assert_eq!(observed(&full), observed(&incremental), "{toggled}");
        assert_eq!(full.hash(), incremental.hash());
    }
}

/// The fleet file of [`chunked_sources`]: three locations (`states`: live, or draining when
/// false) and three active services, on every location, on `l0` and `l1`, on `l2`.
fn chunked_fleet(states: [bool; 3]) -> String {
    let mut text = String::new();
    for (index, live) in states.iter().enumerate() {
        let state = if *live { "live" } else { "draining" };
        text += &format!(
            "[[location]]\nname = \"l{index}\"\nregion = \"r{index}\"\nmetro = \"m\"\ncountry = \"C\"\nstate = \"{state}\"\n\n"
        );
    }
    for (index, topology) in [
        "all",
        "region = \"r0\" or region = \"r1\"",
        "region = \"r2\"",
    ]
    .iter()
    .enumerate()
    {
        text += &format!(
            "[[service]]\nname = \"s{index}\"\nlifecycle = \"active\"\ntopology = '{topology}'\n\n"
        );
    }
    text
}

/// 2,500 /23 prefixes (three prefix chunks, so three route chunks), each advertised or not,
/// split in two /24s or not, and bound whole to a service; in files of 128 prefixes (a
/// patched compile compiles again the prefixes of the files it parses, so the prefixes of
/// one file, inside one chunk).
fn chunked_sources(states: [bool; 3], prefixes: &[(bool, bool, usize)]) -> Vec<Source> {
    let mut sources = vec![Source::new("fleet.toml", chunked_fleet(states))];
    let mut items = String::new();
    for (index, (advertise, split, service)) in prefixes.iter().enumerate() {
        let cidr = format!("10.{}.{}.0/23", index * 2 / 256, index * 2 % 256);
        let announce = if *split {
            "announce = { split = 24 }\n"
        } else {
            ""
        };
        items += &format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"acme\"\nadvertise = {advertise}\n{announce}\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"s{service}\"\n\n"
        );
        if index % 128 == 127 || index + 1 == prefixes.len() {
            let name = format!("items-{:02}.toml", index / 128);
            sources.push(Source::new(&name, std::mem::take(&mut items)));
        }
    }
    sources
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Route chunks shared between generations: over generated sequences of changes to 2,500
    /// prefixes in three chunks (a prefix toggled, split or bound to another service; a
    /// location drained or made live again), the compile against the running generation
    /// (patched when only values changed, sharing the route chunks it did not build again)
    /// equals the full compile, and so does the plan against it: its diff and G3 pass over the
    /// shared chunks only when that changes nothing (a withdrawal a toggle makes is still
    /// refused, whichever chunk holds it).
    #[test]
    fn a_plan_against_shared_route_chunks_is_the_plan_against_the_full_compile(
        changes in prop::collection::vec((0usize..2500, 0u8..4, 0usize..3), 1..6),
    ) {
        let mut states = [true; 3];
        let mut prefixes: Vec<(bool, bool, usize)> =
            (0..2500).map(|index| (true, index % 5 == 0, index % 3)).collect();
        let mut previous = compile(chunked_sources(states, &prefixes), 1).unwrap();
        let intent = topologyd_topology::Intent::default();
        for (step, (index, kind, value)) in changes.iter().enumerate() {
            let before = prefixes[*index];
            match kind {
                0 => prefixes[*index].0 = !prefixes[*index].0,
                1 => prefixes[*index].1 = !prefixes[*index].1,
                2 => prefixes[*index].2 = *value,
                _ => states[*value] = !states[*value],
            }
            let item_changed = prefixes[*index] != before;
            let generation = step as u64 + 2;
            let sources = chunked_sources(states, &prefixes);
            let full = compile_against_in_full(sources.clone(), generation, &previous).unwrap();
            let (incremental, reuse) = compile_incremental(sources, generation, &previous);
            let incremental = incremental.unwrap();
            prop_assert!(!reuse.fell_back, "{:?}", reuse);
            prop_assert_eq!(observed(&full), observed(&incremental), "step {}", step);
            if item_changed {
                // One file's routes built again; the other chunks shared.
                let (shared, chunks) = incremental.route_chunks_shared_with(&previous);
                prop_assert_eq!((shared, chunks), (2, 3), "step {}: {:?}", step, reuse);
            }
            prop_assert_eq!(
                topologyd_topology::plan(&previous, &incremental, &intent).to_json(),
                topologyd_topology::plan(&previous, &full, &intent).to_json(),
                "step {}", step
            );
            // Each step plans against the generation it was compiled against, wherever the
            // last one was refused.
            previous = incremental;
        }
    }
}

/// A patched change that grows one prefix's routes so that a later prefix, not changed, crosses
/// the route budget: the later prefix's running routes are not simply taken, the budget is
/// reported at it, as the full compile reports it.
#[test]
fn a_patched_change_past_the_route_budget_is_refused_as_in_full() {
    let fleet = "[settings]\nipv6_announce_lengths = { shortest = 8, longest = 64 }\n\n[[location]]\nname = \"l0\"\nregion = \"r0\"\nmetro = \"m\"\ncountry = \"C\"\nstate = \"live\"\n\n[[service]]\nname = \"s0\"\nlifecycle = \"active\"\ntopology = 'all'\n\n";
    let item = |cidr: &str, announce: &str| {
        format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"acme\"\nadvertise = true\nannounce = {announce}\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"s0\"\n\n"
        )
    };
    // 2^16 routes a prefix split into /48s (the most one prefix may make): fifteen fit the
    // budget of about a million, sixteen do not.
    let sources = |first: &str| {
        let rest: String = (0..15)
            .map(|index| item(&format!("2001:{:x}::/32", 0xdc0 + index), "{ split = 48 }"))
            .collect();
        vec![
            Source::new("fleet.toml", fleet),
            Source::new("first.toml", item("2001:db8::/32", first)),
            Source::new("rest.toml", rest),
        ]
    };
    let running = compile(sources("\"aggregate\""), 1).unwrap();
    // Within the budget, such a change is patched: the rest's routes are the running ones.
    let (within, reuse) = compile_incremental(sources("{ split = 40 }"), 2, &running);
    assert!(reuse.items_patched, "{reuse:?}");
    let full = compile_against_in_full(sources("{ split = 40 }"), 2, &running).unwrap();
    let within = within.unwrap();
    assert_eq!(
        (
            format!("{:?}", full.summary()),
            full.warnings(),
            full.hash()
        ),
        (
            format!("{:?}", within.summary()),
            within.warnings(),
            within.hash()
        )
    );
    // Past it, the patched compile must find the crossing itself: a compile that errs is
    // then done again in full, for its diagnostics (so the texts compared below are both the
    // full compile's; what this checks is that the patched compile erred at all).
    let (incremental, reuse) = compile_incremental(sources("{ split = 48 }"), 2, &running);
    assert!(reuse.fell_back, "{reuse:?}");
    let Err(incremental) = incremental else {
        panic!("the budget is crossed, yet the patched compile was accepted")
    };
    let full = compile_against_in_full(sources("{ split = 48 }"), 2, &running).unwrap_err();
    assert_eq!(full.to_string(), incremental.to_string());
    assert!(
        full.to_string().contains("rest.toml") && full.to_string().contains("past 1000"),
        "{full}"
    );
}

/// The findings of the definitions' phases (names and attribute values differing only in
/// case) are reported by a compile that takes the running locations and services as by one
/// that compiles them: the same warnings, at the same places, as the full compile's.
#[test]
fn definitions_taken_from_the_running_generation_report_their_findings() {
    let fleet = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
state = "live"

[[location]]
name = "AMS02"
region = "EU"
metro = "AMS"
country = "NL"
state = "live"

[[location]]
name = "ams02"
region = "eu"
metro = "AMS"
country = "NL"
state = "live"

[[service]]
name = "web"
topology = 'region = "eu"'

[[service]]
name = "Web"
topology = 'all'
"#;
    let customer = |advertise: bool| {
        format!(
            r#"
[[prefix]]
cidr = "198.51.100.0/24"
origin_asn = 64500
owner = "c"
advertise = {advertise}

[[binding]]
cidr = "198.51.100.0/24"
service = "web"
"#
        )
    };
    let sources = |advertise: bool| {
        vec![
            Source::new("fleet.toml", fleet),
            Source::new("customers/c.toml", customer(advertise)),
        ]
    };
    let mut previous = compile(sources(true), 1).unwrap();
    previous.take_sources();
    let (incremental, reuse) = compile_incremental(sources(false), 2, &previous);
    assert!(reuse.definitions_reused, "{reuse:?}");
    let incremental = incremental.unwrap();
    let full = compile_against_in_full(sources(false), 2, &previous).unwrap();
    let warnings = |topology: &Topology| -> Vec<String> {
        topology
            .warnings()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(warnings(&incremental), warnings(&full));
    for expected in ["region `EU`", "location `AMS02`", "service `Web`"] {
        assert!(
            warnings(&full)
                .iter()
                .any(|warning| warning.contains(expected)),
            "{expected}: {:?}",
            warnings(&full)
        );
    }
    assert_eq!(observed(&incremental), observed(&full));
}
