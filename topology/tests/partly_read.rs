//! A file of bindings that a push changed in a few tables is read in part — only the changed
//! tables, against the text the running generation was compiled from — and the result is still
//! the full compile's. Over random sequences of edits to a file of bindings written in several
//! table styles, each step is compiled against the previous generation with its running texts
//! (`compile_incremental_with_previous`) and in full: the error text of a refused change, or the
//! hash, summary, warnings, every location's routes, the bindings and what `explain` says
//! (file, line and column of every binding included) of an accepted one must be the same.
//!
//! Edits: a binding given another service (names of other lengths, so the tables after it
//! move), a pending service (a warning), an unknown service (an error), a table restyled (key
//! order, spaces, indentation, a comment inside), a comment before the first table, two tables
//! swapped, a cidr changed (to a free one, or to one bound already), a table added or removed,
//! a service written with a TOML escape (which the line scanner leaves to `toml`), and a
//! service added to the fleet file (the bindings file is then read in part but cannot be
//! patched, and is compiled again parsed whole). Edits that keep the tables and cidrs and stay
//! in the line scanner's subset must be read in part and patched; the others compile as
//! without running texts.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use topologyd_topology::{
    RunningText, Source, Topology, compile, compile_against_in_full,
    compile_incremental_with_previous,
};

/// Services with names of several lengths; the last is pending.
const SERVICES: [&str; 4] = ["web", "resolver", "cdn-edge-cache", "later"];
const PREFIXES: usize = 6;

fn fleet() -> String {
    fleet_with(false)
}

/// The fleet file, with one service more when `extra` (the services then differ from the
/// running generation's, and a compile cannot patch).
fn fleet_with(extra: bool) -> String {
    let mut text = String::new();
    if extra {
        text += "[[service]]\nname = \"extra\"\ntopology = 'all'\n\n";
    }
    for index in 0..3 {
        text += &format!(
            "[[location]]\nname = \"l{index}\"\nregion = \"r{}\"\nmetro = \"m\"\ncountry = \"C\"\nstate = \"live\"\n\n",
            index % 2
        );
    }
    for (index, name) in SERVICES.iter().enumerate() {
        let lifecycle = if index == SERVICES.len() - 1 {
            "pending"
        } else {
            "active"
        };
        text += &format!(
            "[[service]]\nname = \"{name}\"\nlifecycle = \"{lifecycle}\"\ntopology = 'all'\n\n"
        );
    }
    text
}

fn prefix(index: usize) -> IpNet {
    format!("10.{index}.0.0/16").parse().unwrap()
}

fn prefixes() -> String {
    (0..PREFIXES)
        .map(|index| {
            format!(
                "[[prefix]]\ncidr = \"{}\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = true\n\n",
                prefix(index)
            )
        })
        .collect()
}

/// A cidr in prefix `index`: the prefix itself (`slot` 0) or one of its /24s.
fn cidr(index: usize, slot: u8) -> IpNet {
    match slot {
        0 => prefix(index),
        slot => format!("10.{index}.{slot}.0/24").parse().unwrap(),
    }
}

#[derive(Debug, Clone)]
struct Table {
    /// The prefix it binds in, and the cidr's slot there ([`cidr`]).
    prefix: usize,
    slot: u8,
    service: usize,
    /// 0: plain; 1: service first; 2: no spaces, indented; 3: a comment inside; 4: the service
    /// written with a TOML escape (left to `toml` by the line scanner).
    style: u8,
}

#[derive(Debug, Clone)]
struct Bindings {
    /// A service more in the fleet file.
    extra_service: bool,
    preamble: bool,
    tables: Vec<Table>,
}

impl Bindings {
    fn new(more_specifics: &[u8]) -> Bindings {
        let mut tables = Vec::new();
        for (index, count) in more_specifics.iter().enumerate() {
            tables.push(Table {
                prefix: index,
                slot: 0,
                service: index % 3,
                style: (index % 4) as u8,
            });
            for slot in 1..=*count {
                tables.push(Table {
                    prefix: index,
                    slot,
                    service: (index + usize::from(slot)) % 3,
                    style: slot % 4,
                });
            }
        }
        Bindings {
            extra_service: false,
            preamble: true,
            tables,
        }
    }

    fn text(&self) -> String {
        let mut text = String::new();
        if self.preamble {
            text += "# The bindings of every prefix.\n\n";
        }
        for table in &self.tables {
            let service = SERVICES.get(table.service).copied().unwrap_or("unknown");
            let cidr = cidr(table.prefix, table.slot);
            text += &match table.style {
                0 => format!("[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n\n"),
                1 => format!("[[binding]]\nservice = \"{service}\"\ncidr = \"{cidr}\"\n"),
                2 => format!("[[binding]]\n  cidr=\"{cidr}\"\n  service='{service}'\n\n\n"),
                3 => format!(
                    "[[binding]] # {cidr}\ncidr = \"{cidr}\" # where\n# why\nservice = \"{service}\"\n\n"
                ),
                _ => format!(
                    "[[binding]]\ncidr = \"{cidr}\"\nservice = \"\\u{:04x}{}\"\n\n",
                    u32::from(service.as_bytes()[0]),
                    &service[1..]
                ),
            };
        }
        text
    }

    fn sources(&self) -> Vec<Source> {
        vec![
            Source::new("fleet.toml", fleet_with(self.extra_service)),
            Source::new("prefixes.toml", prefixes()),
            Source::new("bindings.toml", self.text()),
        ]
    }
}

#[derive(Debug, Clone)]
enum Edit {
    /// Service `service` (an index past the services: one that does not exist).
    Reassign {
        table: usize,
        service: usize,
    },
    Restyle {
        table: usize,
        style: u8,
    },
    Preamble,
    Swap {
        table: usize,
        other: usize,
    },
    /// Another /24 of the same prefix, which may be bound already.
    Recidr {
        table: usize,
        slot: u8,
    },
    Add {
        prefix: usize,
        slot: u8,
        service: usize,
    },
    Remove {
        table: usize,
    },
    /// A service added to the fleet file or taken away: the bindings file is read in part,
    /// cannot be patched, and is compiled again parsed whole.
    Services,
}

impl Edit {
    /// Whether the edit keeps the tables and their cidrs and writes nothing the line scanner
    /// leaves to `toml`: a file read in part must then be patched.
    fn keeps_cidrs(&self) -> bool {
        matches!(
            self,
            Edit::Reassign { .. } | Edit::Restyle { .. } | Edit::Preamble | Edit::Swap { .. }
        )
    }

    fn apply(&self, bindings: &mut Bindings) {
        let count = bindings.tables.len();
        match *self {
            Edit::Reassign { table, service } => {
                if let Some(table) = bindings.tables.get_mut(table % count.max(1)) {
                    table.service = service;
                }
            }
            Edit::Restyle { table, style } => {
                if let Some(table) = bindings.tables.get_mut(table % count.max(1)) {
                    table.style = style;
                }
            }
            Edit::Preamble => bindings.preamble = !bindings.preamble,
            Edit::Services => bindings.extra_service = !bindings.extra_service,
            Edit::Swap { table, other } => {
                if count > 0 {
                    bindings.tables.swap(table % count, other % count);
                }
            }
            Edit::Recidr { table, slot } => {
                if let Some(table) = bindings.tables.get_mut(table % count.max(1)) {
                    table.slot = slot;
                }
            }
            Edit::Add {
                prefix,
                slot,
                service,
            } => bindings.tables.insert(
                (prefix * 7) % (count + 1),
                Table {
                    prefix: prefix % PREFIXES,
                    slot,
                    service,
                    style: 0,
                },
            ),
            Edit::Remove { table } => {
                if count > 1 {
                    bindings.tables.remove(table % count);
                }
            }
        }
    }
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let table = 0..64_usize;
    // Mostly known services; now and then one that does not exist.
    let service = prop_oneof![8 => 0..SERVICES.len(), 1 => Just(SERVICES.len())];
    prop_oneof![
        6 => (table.clone(), service.clone()).prop_map(|(table, service)| Edit::Reassign { table, service }),
        3 => (table.clone(), 0..5_u8).prop_map(|(table, style)| Edit::Restyle { table, style }),
        1 => Just(Edit::Preamble),
        2 => (table.clone(), table.clone()).prop_map(|(table, other)| Edit::Swap { table, other }),
        1 => (table.clone(), 1..6_u8).prop_map(|(table, slot)| Edit::Recidr { table, slot }),
        1 => (0..PREFIXES, 1..6_u8, service).prop_map(|(prefix, slot, service)| Edit::Add { prefix, slot, service }),
        1 => table.prop_map(|table| Edit::Remove { table }),
        1 => Just(Edit::Services),
    ]
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// `sources` as the running texts a daemon reads back from its state directory.
fn running_texts(sources: &[Source]) -> Vec<RunningText<'_>> {
    sources
        .iter()
        .map(|source| RunningText {
            name: &source.name,
            text: &source.text,
            sha256: sha256(&source.text),
        })
        .collect()
}

/// Compiles the bindings text `new` against a generation compiled from `old` (with the fleet
/// `fleet_text` and the prefixes), with the running texts: not read in part, and refused as
/// the full compile refuses it. Returns the running generation's first binding's service.
fn refused_whole(fleet_text: &str, old: &str, new: &str) -> Option<String> {
    let sources = |bindings: &str| {
        vec![
            Source::new("fleet.toml", fleet_text),
            Source::new("prefixes.toml", prefixes()),
            Source::new("bindings.toml", bindings),
        ]
    };
    let running_sources = sources(old);
    let previous = compile(running_sources.clone(), 1).unwrap();
    let running = running_texts(&running_sources);
    let full = compile_against_in_full(sources(new), 2, &previous);
    let (partly, reuse) =
        compile_incremental_with_previous(sources(new), None, 2, &previous, &running);
    assert_eq!(reuse.partly_read_files, 0, "{reuse:?}");
    let (Err(full), Err((partly, _))) = (full, partly) else {
        panic!("the new text is refused both ways");
    };
    assert_eq!(full.to_string(), partly.to_string());
    previous
        .bindings()
        .next()
        .map(|(_, service)| service.to_string())
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
    for (cidr, service) in topology.bindings() {
        text += &format!("\nbinding {cidr} {service}");
    }
    // Every binding's file, line and column: the kept tables moved by the changed ones.
    for index in 0..PREFIXES {
        for slot in 0..6 {
            let address: IpAddr = cidr(index, slot).addr();
            text += &format!("\n{:?}", topology.explain(address));
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_file_read_in_part_compiles_as_in_full(
        more_specifics in prop::collection::vec(3..6_u8, PREFIXES),
        edits in prop::collection::vec((prop::collection::vec(edit_strategy(), 1..4), any::<bool>()), 1..8),
    ) {
        let mut bindings = Bindings::new(&more_specifics);
        let mut running_sources = bindings.sources();
        let mut previous = compile(running_sources.clone(), 1).unwrap();
        // The edits since the running text (those of refused steps stay in the file).
        let mut since_running: Vec<Edit> = Vec::new();
        let mut running_tables = bindings.tables.clone();
        for (step, (step_edits, release_texts)) in edits.iter().enumerate() {
            for edit in step_edits {
                edit.apply(&mut bindings);
            }
            since_running.extend(step_edits.iter().cloned());
            let generation = step as u64 + 2;
            let sources = bindings.sources();
            let running = running_texts(&running_sources);
            let full = compile_against_in_full(sources.clone(), generation, &previous);
            let (partly, reuse) =
                compile_incremental_with_previous(sources.clone(), None, generation, &previous, &running);
            match (&full, &partly) {
                (Ok(full), Ok(partly)) => {
                    prop_assert_eq!(observed(full), observed(partly), "after {:?}", step_edits);
                    prop_assert!(!reuse.fell_back, "after {:?}: {:?}", step_edits, reuse);
                    let text_changed = sources[2].text != running_sources[2].text;
                    // Every table, running and new, in the line scanner's subset.
                    let scanned = bindings
                        .tables
                        .iter()
                        .chain(&running_tables)
                        .all(|table| table.style < 4);
                    if text_changed && scanned && since_running.iter().all(Edit::keeps_cidrs) {
                        prop_assert_eq!(reuse.partly_read_files, 1, "after {:?}", step_edits);
                        prop_assert!(reuse.items_patched, "after {:?}", step_edits);
                    }
                }
                (Err(full), Err((partly, _))) => {
                    prop_assert_eq!(full.to_string(), partly.to_string(), "after {:?}", step_edits);
                }
                _ => prop_assert!(
                    false,
                    "after {:?}: full {:?}, read in part {:?}",
                    step_edits,
                    full.as_ref().map(|_| ()),
                    partly.as_ref().map(|_| ())
                ),
            }
            if let Ok(mut next) = partly {
                if *release_texts {
                    // As the daemon runs a generation: texts in the state directory only.
                    next.take_sources();
                }
                previous = next;
                running_sources = sources;
                since_running.clear();
                running_tables = bindings.tables.clone();
            }
        }
    }
}

/// The read-in-part path is taken: a service changed in one table of many, with a longer name,
/// reads that table alone and moves the bindings written after it.
#[test]
fn one_changed_table_is_read_and_the_later_ones_move() {
    let mut bindings = Bindings::new(&[3; PREFIXES]);
    let running_sources = bindings.sources();
    let previous = compile(running_sources.clone(), 1).unwrap();
    Edit::Reassign {
        table: 2,
        service: 1,
    }
    .apply(&mut bindings);
    let sources = bindings.sources();
    let running = running_texts(&running_sources);
    let (partly, reuse) =
        compile_incremental_with_previous(sources.clone(), None, 2, &previous, &running);
    let partly = partly.map_err(|(diagnostics, _)| diagnostics).unwrap();
    assert_eq!(reuse.partly_read_files, 1, "{reuse:?}");
    assert_eq!(reuse.parsed_files, 0, "{reuse:?}");
    assert!(reuse.items_patched, "{reuse:?}");
    let full = compile_against_in_full(sources.clone(), 2, &previous).unwrap();
    assert_eq!(observed(&full), observed(&partly));
    // A running text of another digest is not used: the file is parsed whole.
    let mut wrong = running.clone();
    wrong[2].sha256 = sha256("another text");
    let (_, reuse) = compile_incremental_with_previous(sources, None, 2, &previous, &wrong);
    assert_eq!((reuse.partly_read_files, reuse.parsed_files), (0, 1));
}

/// A changed table is read in part only if the line scanner reads it in the running text too:
/// there a multi-line string may have swallowed the lines after a cut (here a service named
/// `web[[binding]]`, written over two lines so that its second line starts with the header),
/// and a simple table put in their place would not end that string in the new text. The file
/// is parsed whole, and the push refused as the full compile refuses it.
#[test]
fn a_table_inside_a_running_multi_line_string_is_not_read_in_part() {
    let mut fleet_text = fleet();
    fleet_text += "[[service]]\nname = \"web[[binding]]\"\ntopology = 'all'\n\n";
    let mut tables = String::new();
    for index in 1..PREFIXES {
        tables += &format!(
            "[[binding]]\ncidr = \"{}\"\nservice = \"web\"\n\n",
            prefix(index)
        );
    }
    let old = format!(
        "[[binding]]\nservice = \"\"\"web\\\n[[binding]]\\\n\"\"\"\ncidr = \"{}\"\n\n{tables}",
        prefix(0)
    );
    let new = format!(
        "[[binding]]\nservice = \"\"\"web\\\n[[binding]]\ncidr = \"{}\"\nservice = \"web\"\n\n{tables}",
        prefix(0)
    );
    assert_eq!(
        refused_whole(&fleet_text, &old, &new).as_deref(),
        Some("web[[binding]]")
    );
}

/// The same with a string whose lines the line scanner would read as a table: a service named
/// `[[binding]] # service = "x" # `, written over three lines ending in a backslash. The
/// running text's second table reads, to the scanner, as a binding to `x`; the file is parsed
/// whole, and the push refused (the new text binds the cidr to an unknown service).
#[test]
fn lines_of_a_running_string_read_as_a_table_are_not_read_in_part() {
    let mut fleet_text = fleet();
    fleet_text += "[[service]]\nname = '[[binding]] # service = \"x\" # '\ntopology = 'all'\n\n";
    let mut tables = String::new();
    for index in 1..PREFIXES {
        tables += &format!(
            "[[binding]]\ncidr = \"{}\"\nservice = \"web\"\n\n",
            prefix(index)
        );
    }
    let text = |service: &str| {
        format!(
            "[[binding]]\nservice = \"\"\"\\\n[[binding]] # \\\nservice = \"{service}\" # \"\"\"\ncidr = \"{}\"\n\n{tables}",
            prefix(0)
        )
    };
    assert_eq!(
        refused_whole(&fleet_text, &text("x"), &text("web")).as_deref(),
        Some("[[binding]] # service = \"x\" # ")
    );
}
