//! The memory bound of a compile, measured deterministically: a counting global allocator
//! records the peak of bytes allocated while [`compile_owned`] runs (the function topoctl check
//! and the daemon's push both call), and every input — adversarial 20 MB files, files at the edge
//! of the parse budget, a large valid topology — must stay within
//! `MEMORY_PER_INPUT_BYTE × input + MEMORY_ALLOWANCE`. Counting bytes, not time or resident
//! memory, makes the figure the same on every run and machine. One test function, so that no
//! other test allocates while a case is measured.

// A global allocator is an `unsafe impl` by definition; it forwards to `System` unchanged.
#![allow(unsafe_code)]

use std::sync::Arc;
use topologyd_config::bounds::{
    MAX_LOCATIONS, MAX_TAGS_PER_LOCATION, PARSE_ALLOWANCE_BYTES, PARSE_BYTES_PER_INPUT_BYTE,
    scan_file,
};
use topologyd_config::{Collector, Source, TextReader};

use topologyd_topology::{compile_owned, compile_put_away};

mod support {
    pub mod counting_allocator;
}

use support::counting_allocator::{MEMORY_ALLOWANCE, MEMORY_PER_INPUT_BYTE, measured};

const TWENTY_MB: usize = 20 << 20;

/// Named file texts.
type Files = Vec<(&'static str, String)>;

struct Measured {
    input: usize,
    peak: usize,
    valid: bool,
    first: String,
}

/// Compiles `files` and returns the peak of bytes allocated on top of the inputs themselves.
fn measure(files: Files) -> Measured {
    let input = files.iter().map(|(_, text)| text.len()).sum();
    let sources: Vec<Source> = files
        .into_iter()
        .map(|(name, text)| Source::new(name, text))
        .collect();
    let (result, peak, _) = measured(|| compile_owned(sources, 0));
    let (valid, first) = match &result {
        Ok(_) => (true, String::new()),
        Err(diagnostics) => (
            false,
            diagnostics
                .items
                .first()
                .map(|item| item.to_string().chars().take(110).collect())
                .unwrap_or_default(),
        ),
    };
    drop(result);
    Measured {
        input,
        peak,
        valid,
        first,
    }
}

fn within_parse_budget(text: &str) -> bool {
    let mut collector = Collector::new();
    scan_file(0, text, &mut collector).is_some_and(|scan| {
        scan.parse_cost() <= text.len() * PARSE_BYTES_PER_INPUT_BYTE + PARSE_ALLOWANCE_BYTES
    })
}

/// The largest repetition count whose file still passes the parse budget (so that the general
/// TOML parser really runs on it): the worst accepted file of that shape.
fn largest_accepted(make: &dyn Fn(usize) -> String) -> String {
    let (mut accepted, mut refused) = (1usize, 2usize);
    while within_parse_budget(&make(refused)) {
        accepted = refused;
        refused *= 2;
    }
    while refused - accepted > 1 {
        let middle = accepted + (refused - accepted) / 2;
        if within_parse_budget(&make(middle)) {
            accepted = middle;
        } else {
            refused = middle;
        }
    }
    make(accepted)
}

fn locations(count: usize, tags: usize) -> String {
    (0..count)
        .map(|index| {
            let tags: Vec<String> = (0..tags).map(|tag| format!("\"t{index}x{tag}\"")).collect();
            format!(
                "[[location]]\nname = \"l{index}\"\nregion = \"r{index}\"\nmetro = \"m{index}\"\n\
                 country = \"c{index}\"\nstate = \"live\"\ntags = [{}]\n",
                tags.join(", ")
            )
        })
        .collect()
}

/// A valid topology at the limits: the largest fleet, each location with the most tags (all
/// distinct), a service per region selector, and `bindings` /24 bindings under /8 prefixes.
fn large_valid_topology(bindings: usize) -> Files {
    let fleet = locations(MAX_LOCATIONS, MAX_TAGS_PER_LOCATION);
    let mut services = String::new();
    for index in 0..64 {
        services.push_str(&format!(
            "[[service]]\nname = \"s{index}\"\ntopology = \"region = 'r{index}' or tag:t{index}x1 \
             or not (metro in ['m1', 'm2'] and state = 'live')\"\n\n"
        ));
    }
    let slash8s = bindings.div_ceil(65_536);
    let mut prefixes = String::new();
    let mut binding_text = String::new();
    for octet in 0..slash8s {
        prefixes.push_str(&format!(
            "[[prefix]]\ncidr = \"{}.0.0.0/8\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = true\n\n\
             [[binding]]\ncidr = \"{}.0.0.0/8\"\nservice = \"s0\"\n\n",
            octet + 10,
            octet + 10
        ));
    }
    for index in 0..bindings {
        binding_text.push_str(&format!(
            "[[binding]]\ncidr = \"{}.{}.{}.0/24\"\nservice = \"s{}\"\n\n",
            index / 65_536 + 10,
            (index / 256) % 256,
            index % 256,
            index % 64
        ));
    }
    vec![
        ("fleet.toml", fleet),
        ("services.toml", services),
        ("prefixes.toml", prefixes),
        ("bindings.toml", binding_text),
    ]
}

/// [`large_valid_topology`] in one file and in other syntax: each prefix with a dotted
/// `announce.split` and a `[prefix.roa]` sub-table, each binding with a quoted key and comments.
/// Read table by table, it must cost what the plain files cost.
fn large_valid_topology_in_one_file_in_other_syntax(bindings: usize) -> Files {
    let text: String = large_valid_topology(bindings)
        .into_iter()
        .map(|(_, text)| {
            text.replace(
                "advertise = true\n\n",
                "advertise = true\nannounce.split = 8\n[prefix.roa]\nasn = 64500\nmax_length = 8\n\n",
            )
            .replace("[[binding]]\ncidr = ", "[[binding]]   # bound\n'cidr' = ")
            .replace("\nservice = ", "\n\"service\" = ")
        })
        .collect();
    vec![("topology.toml", text)]
}

#[test]
fn compile_memory_stays_within_ten_times_the_input_plus_a_constant() {
    let cases: Vec<(&str, Files, bool)> = vec![
        (
            "20 MB of nested arrays",
            vec![("a.toml", format!("x = {}", "[".repeat(TWENTY_MB)))],
            false,
        ),
        (
            "20 MB of nested inline tables",
            vec![("a.toml", format!("x = {}", "{a=".repeat(TWENTY_MB / 3)))],
            false,
        ),
        (
            "20 MB array of small inline tables",
            vec![(
                "a.toml",
                format!("x = [{}]", "{a=1},".repeat(TWENTY_MB / 6)),
            )],
            false,
        ),
        (
            "20 MB flat array of integers",
            vec![("a.toml", format!("x = [{}]", "1,".repeat(TWENTY_MB / 2)))],
            false,
        ),
        (
            "20 MB string",
            vec![(
                "a.toml",
                format!(
                    "[[location]]\nname = \"{}\"\nregion = \"r\"\nmetro = \"m\"\ncountry = \"c\"\n\
                     state = \"live\"\n",
                    "a".repeat(TWENTY_MB)
                ),
            )],
            false,
        ),
        (
            "20 MB of invalid bindings (fast path, capped diagnostics)",
            vec![(
                "a.toml",
                "[[binding]]\ncidr = \"x\"\nservice = \"s\"\n".repeat(TWENTY_MB / 40),
            )],
            false,
        ),
        (
            "20 MB of services with 3,000-deep selectors",
            vec![(
                "a.toml",
                (0..TWENTY_MB / 6_100)
                    .map(|index| {
                        format!(
                            "[[service]]\nname = \"s{index}\"\ntopology = \"{}all{}\"\n",
                            "(".repeat(3000),
                            ")".repeat(3000)
                        )
                    })
                    .collect(),
            )],
            false,
        ),
        (
            "widest accepted array of inline tables",
            vec![(
                "a.toml",
                largest_accepted(&|count| format!("x = [{}]", "{a=1},".repeat(count))),
            )],
            false,
        ),
        (
            "widest accepted dotted keys",
            vec![(
                "a.toml",
                largest_accepted(&|count| {
                    (0..count)
                        .map(|index| format!("a{index}.b.c.d=1\n"))
                        .collect()
                }),
            )],
            false,
        ),
        (
            "most accepted keys",
            vec![(
                "a.toml",
                largest_accepted(&|count| {
                    (0..count).map(|index| format!("k{index}=1\n")).collect()
                }),
            )],
            false,
        ),
        (
            "most accepted array tables",
            vec![("a.toml", largest_accepted(&|count| "[[a]]\n".repeat(count)))],
            false,
        ),
        (
            "most accepted prefixes with roa",
            vec![(
                "a.toml",
                largest_accepted(&|count| {
                    (0..count)
                        .map(|index| {
                            format!(
                                "[[prefix]]\ncidr = \"10.{}.{}.0/24\"\norigin_asn = 1\nowner = \"o\"\n\
                                 advertise = false\nroa = {{ asn = 1, max_length = 24 }}\n",
                                index / 256 % 256,
                                index % 256
                            )
                        })
                        .collect()
                }),
            )],
            true,
        ),
        (
            "largest fleet, 32 distinct tags per location, 300,000 bindings",
            large_valid_topology(300_000),
            true,
        ),
        (
            "the same in one file, dotted keys, sub-tables, quoted keys and comments",
            large_valid_topology_in_one_file_in_other_syntax(300_000),
            true,
        ),
    ];
    let mut report = String::new();
    let mut failures = Vec::new();
    for (name, files, expect_valid) in cases {
        let measured = measure(files);
        let bound = MEMORY_PER_INPUT_BYTE * measured.input + MEMORY_ALLOWANCE;
        let line = format!(
            "{name}: input {} B, peak {} B ({:.1}x input), bound {} B, valid {} {}\n",
            measured.input,
            measured.peak,
            measured.peak as f64 / measured.input as f64,
            bound,
            measured.valid,
            measured.first
        );
        report.push_str(&line);
        if measured.peak > bound {
            failures.push(format!("over the bound: {line}"));
        }
        // A compile that builds a topology allocates: a peak of nothing means the counting
        // allocator is not measuring, and every bound above would pass for nothing.
        if expect_valid && measured.peak < measured.input / 10 {
            failures.push(format!("the allocator saw too little: {line}"));
        }
        if measured.valid != expect_valid {
            failures.push(format!("validity {}: {line}", measured.valid));
        }
    }
    eprint!("{report}");
    assert!(failures.is_empty(), "{failures:#?}");
    texts_put_away_are_not_held_beside_the_compiled_topology();
}

/// [`compile_put_away`] (the daemon's bootstrap, whose texts are in its state directory) drops
/// each text once parsed: it ends holding the compiled topology without the texts that
/// [`compile_owned`] still holds, and peaks no higher — also when a warning is reported in the
/// largest file, whose position is found by reading the text again in blocks, never whole.
/// Both measured from before the texts were made, so that the texts count. (Called from the
/// one test function: see the module comment.)
fn texts_put_away_are_not_held_beside_the_compiled_topology() {
    let clean = large_valid_topology(200_000);
    // A prefix bound to a pending service in the largest file: a warning at its cidr.
    let mut warned = clean.clone();
    warned[1]
        .1
        .push_str("[[service]]\nname = \"later\"\nlifecycle = \"pending\"\ntopology = \"all\"\n");
    warned[3].1.push_str(
        "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = true\n\n\
         [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"later\"\n",
    );
    for (files, warnings) in [(clean, 0), (warned, 1)] {
        let input: usize = files.iter().map(|(_, text)| text.len()).sum();
        let sources = |files: &Files| -> Vec<Source> {
            files
                .iter()
                .map(|(name, text)| Source::new(*name, text.clone()))
                .collect()
        };
        let (owned, owned_peak, owned_held) = measured(|| compile_owned(sources(&files), 0));
        let texts: Vec<String> = files.iter().map(|(_, text)| text.clone()).collect();
        let read = Arc::new(move |index: u32| {
            let text = texts.get(index as usize)?.clone();
            Some(Box::new(std::io::Cursor::new(text.into_bytes())) as Box<dyn TextReader>)
        });
        let (put_away, put_away_peak, put_away_held) =
            measured(|| compile_put_away(sources(&files), Vec::new(), read, 0));
        let (Ok(owned), Ok(put_away)) = (owned, put_away) else {
            panic!("the large valid topology must compile both ways");
        };
        assert_eq!(owned.hash_hex(), put_away.hash_hex());
        assert_eq!(owned.summary(), put_away.summary());
        let shown = |topology: &topologyd_topology::Topology| -> Vec<String> {
            topology
                .warnings()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(shown(&put_away), shown(&owned));
        let in_largest = shown(&owned)
            .iter()
            .filter(|warning| warning.starts_with("bindings.toml:"))
            .count();
        assert_eq!(in_largest, warnings, "{:?}", shown(&owned));
        eprintln!(
            "texts put away ({warnings} warning(s) in the largest file): input {input} B; \
             compile_owned peak {owned_peak} B, held {owned_held} B; compile_put_away peak \
             {put_away_peak} B, held {put_away_held} B"
        );
        assert!(
            put_away_held + (input as isize) * 9 / 10 <= owned_held,
            "the texts ({input} B) are still held: {put_away_held} B against {owned_held} B"
        );
        assert!(
            put_away_peak + input / 2 <= owned_peak,
            "{put_away_peak} + half the input > {owned_peak}"
        );
    }
}
