//! `topology_scale [--style STYLE] BINDINGS [DIR]`: one measurement of the topology engine at
//! a given size, in its own process so that its peak resident memory (VmHWM) is its own.
//! Generates the synthetic topology (see `synth`), writes it to files, then times, in this
//! order: the full compile from the files (read, validate, tries, every location's desired set)
//! and its peak RSS, the parse alone (read and parse into the raw model), a baseline parse of
//! the same files into untyped TOML tables (these two after the compile, so they do not count
//! in its peak), a plan of a change touching 1% of the bindings, and a customer file's
//! `advertise` toggled compiled against the running generation twice, parsing every file and
//! incrementally (only the files that changed), alternated, medians. Prints one JSON line.
//! `--style` writes the prefix and binding tables in one of the generator's styles (`simple`,
//! the default, `inline`, `dotted`, `subtables`, `quoted`, `one-file`; see `SynthStyle`).
//! `benches/topology_scale.sh` runs it for every style and size.

use std::path::PathBuf;
use std::time::Instant;

use topologyd_config::Source;
use topologyd_config::load_sources;
use topologyd_harness::synth::{SynthSpec, SynthStyle, generate_styled};
use topologyd_topology::{
    Intent, Topology, compile_against, compile_against_in_full, compile_incremental, compile_owned,
    plan,
};

fn peak_resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}

fn write_files(
    dir: &PathBuf,
    files: &[topologyd_harness::synth::SynthFile],
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|error| error.to_string())?;
    files
        .iter()
        .map(|file| {
            let path = dir.join(&file.name);
            std::fs::write(&path, &file.text).map_err(|error| error.to_string())?;
            Ok(path)
        })
        .collect()
}

/// The first lines of a compile failure (a broken generator would otherwise print megabytes).
fn first_lines(error: impl std::fmt::Display) -> String {
    let text = error.to_string();
    let lines: Vec<&str> = text.lines().take(10).collect();
    lines.join("\n")
}

/// A customer's file: one prefix, advertised or not, bound to the first service.
fn customer_file(advertise: bool) -> Source {
    Source::new(
        "customer-0001.toml",
        format!(
            "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 13335\nowner = \"customer-0001\"\nadvertise = {advertise}\n\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"svc0000\"\n"
        ),
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Seconds to compile a customer file's toggle onto `running` (which has it advertised), in
/// full and incrementally, alternated `rounds` times each: (full median, incremental median,
/// files the incremental compile reused).
fn toggle_compiles(old: Vec<Source>, rounds: usize) -> Result<(f64, f64, usize), String> {
    let with_customer = |advertise: bool| -> Vec<Source> {
        let mut sources = old.clone();
        sources.push(customer_file(advertise));
        sources
    };
    let running: Topology = compile_owned(with_customer(true), 1).map_err(first_lines)?;
    let (mut full, mut incremental, mut reused) = (Vec::new(), Vec::new(), 0);
    // Each compile is timed with its canonical hash read (the hash is computed on a thread of
    // its own, which a compile does not wait for).
    for _ in 0..rounds {
        let sources = with_customer(false);
        let started = Instant::now();
        let topology = compile_against_in_full(sources, 2, &running).map_err(first_lines)?;
        topology.hash();
        full.push(started.elapsed().as_secs_f64());
        drop(topology);
        let sources = with_customer(false);
        let started = Instant::now();
        let (topology, reuse) = compile_incremental(sources, 2, &running);
        let topology = topology.map_err(first_lines)?;
        topology.hash();
        incremental.push(started.elapsed().as_secs_f64());
        drop(topology);
        reused = reuse.reused_files;
    }
    // The same result either way (the property test checks it in general; this, at scale).
    let full_topology =
        compile_against_in_full(with_customer(false), 2, &running).map_err(first_lines)?;
    let incremental_topology =
        compile_against(with_customer(false), 2, &running).map_err(first_lines)?;
    if full_topology.hash() != incremental_topology.hash() {
        return Err("the incremental compile's hash differs from the full compile's".into());
    }
    Ok((median(&mut full), median(&mut incremental), reused))
}

fn main() -> Result<(), String> {
    const USAGE: &str = "usage: topology_scale [--style simple|inline|dotted|subtables|quoted|one-file] BINDINGS [DIR]";
    let mut arguments: Vec<String> = std::env::args().skip(1).collect();
    let mut style = SynthStyle::Simple;
    // `--style NAME` anywhere; any other argument starting with `--` is refused, so that a
    // misplaced option is never taken for the output directory.
    if let Some(at) = arguments.iter().position(|argument| argument == "--style") {
        style = arguments
            .get(at + 1)
            .and_then(|name| SynthStyle::from_name(name))
            .ok_or(USAGE)?;
        arguments.drain(at..at + 2);
    }
    if arguments.iter().any(|argument| argument.starts_with("--")) {
        return Err(USAGE.into());
    }
    let mut arguments = arguments.into_iter();
    let bindings: usize = arguments
        .next()
        .and_then(|value| value.parse().ok())
        .ok_or(USAGE)?;
    let dir = PathBuf::from(
        arguments
            .next()
            .unwrap_or_else(|| format!("target/topology-scale/{bindings}-{}", style.name())),
    );
    let spec = if bindings == SynthSpec::ISSUE_SCALE.bindings {
        SynthSpec::ISSUE_SCALE
    } else {
        SynthSpec::with_bindings(bindings)
    };
    let old_paths = write_files(&dir.join("old"), &generate_styled(&spec, 0, style))?;
    let new_paths = write_files(&dir.join("new"), &generate_styled(&spec, 10, style))?;
    let input_bytes: u64 = old_paths
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum();
    let resident_before = peak_resident_kib();

    let started = Instant::now();
    let sources = load_sources(&old_paths).map_err(|error| error.to_string())?;
    let old = compile_owned(sources, 1).map_err(first_lines)?;
    old.hash();
    let desired: usize = old
        .locations()
        .iter()
        .map(|location| old.desired(&location.name).map_or(0, |routes| routes.len()))
        .sum();
    let compile_seconds = started.elapsed().as_secs_f64();
    let peak_after_compile = peak_resident_kib();

    // The parse alone (read and parse into the raw model), after the compile so that it does
    // not count in the compile's peak: the part of the compile the syntax can change.
    let started = Instant::now();
    let sources = load_sources(&old_paths).map_err(|error| error.to_string())?;
    let raw = topologyd_config::parse_topology_sources_owned(sources).map_err(first_lines)?;
    let parse_seconds = started.elapsed().as_secs_f64();
    drop(raw);

    let started = Instant::now();
    let sources = load_sources(&old_paths).map_err(|error| error.to_string())?;
    for source in &sources {
        let table: toml::Table = source.text.parse().map_err(|error| format!("{error}"))?;
        std::hint::black_box(table);
    }
    let baseline_seconds = started.elapsed().as_secs_f64();
    drop(sources);

    let old_sources = load_sources(&old_paths).map_err(|error| error.to_string())?;
    let (toggle_full_s, toggle_incremental_s, toggle_reused_files) =
        toggle_compiles(old_sources, 5)?;

    let new_sources = load_sources(&new_paths).map_err(|error| error.to_string())?;
    let new = compile_owned(new_sources, 2).map_err(first_lines)?;
    let started = Instant::now();
    let plan = plan(&old, &new, &Intent::default());
    let plan_seconds = started.elapsed().as_secs_f64();

    println!(
        "{{\"style\":\"{}\",\"bindings\":{bindings},\"prefixes\":{},\"locations\":{},\"services\":{},\"input_mib\":{:.1},\"baseline_toml_parse_s\":{baseline_seconds:.3},\"compile_s\":{compile_seconds:.3},\"parse_s\":{parse_seconds:.3},\"ratio_compile_to_parse\":{:.2},\"route_location_pairs\":{desired},\"peak_rss_after_compile_mib\":{:.0},\"resident_before_mib\":{:.0},\"plan_1pct_s\":{plan_seconds:.3},\"plan_changes\":{},\"plan_verdict\":\"{}\",\"toggle_full_s\":{toggle_full_s:.3},\"toggle_incremental_s\":{toggle_incremental_s:.3},\"toggle_incremental_over_full\":{:.2},\"toggle_reused_files\":{toggle_reused_files}}}",
        style.name(),
        spec.prefixes,
        spec.locations + 1,
        spec.services,
        input_bytes as f64 / 1_048_576.0,
        compile_seconds / baseline_seconds.max(1e-9),
        peak_after_compile as f64 / 1024.0,
        resident_before as f64 / 1024.0,
        plan.changes.len(),
        plan.verdict(),
        toggle_incremental_s / toggle_full_s.max(1e-9),
    );
    Ok(())
}
