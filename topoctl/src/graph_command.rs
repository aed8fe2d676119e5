//! `topoctl graph FILES… --format dot|svg`: the topology as a Graphviz graph, left to right:
//! onboarded prefixes → the bindings inside them → services → the locations (grouped in
//! their regions) where each service is announced. `--format svg` runs Graphviz's `dot`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use clap::ValueEnum;
use topologyd_api::{EXIT_NO_CHANGE, EXIT_USAGE};
use topologyd_topology::Topology;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Graphviz source.
    Dot,
    /// An SVG picture (needs Graphviz's `dot`).
    Svg,
}

/// A DOT string literal.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The topology as DOT.
pub fn dot(topology: &Topology) -> String {
    let mut text = String::from(
        "digraph topology {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [color=\"#555555\"];\n",
    );
    let _ = writeln!(
        text,
        "  subgraph cluster_prefixes {{\n    label=\"prefixes\";"
    );
    for prefix in topology.prefixes() {
        let label = format!(
            "{}\\nAS{}{}",
            prefix.cidr,
            prefix.origin_asn,
            if prefix.advertise {
                ""
            } else {
                " (not advertised)"
            }
        );
        let _ = writeln!(
            text,
            "    {} [shape=box, label={}];",
            quoted(&format!("prefix {}", prefix.cidr)),
            quoted(&label).replace("\\\\n", "\\n")
        );
    }
    text.push_str("  }\n");
    for (cidr, service) in topology.bindings() {
        let binding = quoted(&format!("binding {cidr}"));
        let _ = writeln!(
            text,
            "  {binding} [shape=ellipse, label={}];",
            quoted(&cidr.to_string())
        );
        if let Some(prefix) = topology
            .prefixes()
            .iter()
            .filter(|prefix| prefix.cidr.contains(&cidr))
            .max_by_key(|prefix| prefix.cidr.prefix_len())
        {
            let _ = writeln!(
                text,
                "  {} -> {binding};",
                quoted(&format!("prefix {}", prefix.cidr))
            );
        }
        let _ = writeln!(
            text,
            "  {binding} -> {};",
            quoted(&format!("service {service}"))
        );
    }
    for service in topology.services() {
        let _ = writeln!(
            text,
            "  {} [shape=component, style=filled, fillcolor=\"#e8f0fe\", label={}];",
            quoted(&format!("service {}", service.name)),
            quoted(&service.name)
        );
    }
    let mut regions: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for location in topology.locations() {
        regions
            .entry(&location.region)
            .or_default()
            .push(&location.name);
    }
    for (index, (region, locations)) in regions.iter().enumerate() {
        let _ = writeln!(
            text,
            "  subgraph cluster_region_{index} {{\n    label={};",
            quoted(&format!("region {region}"))
        );
        for location in locations {
            let _ = writeln!(
                text,
                "    {} [shape=house, label={}];",
                quoted(&format!("location {location}")),
                quoted(location)
            );
        }
        text.push_str("  }\n");
    }
    for location in topology.locations() {
        let mut services: Vec<&str> = topology
            .desired(&location.name)
            .map(|routes| routes.iter().map(|route| route.service).collect())
            .unwrap_or_default();
        services.sort_unstable();
        services.dedup();
        for service in services {
            let _ = writeln!(
                text,
                "  {} -> {};",
                quoted(&format!("service {service}")),
                quoted(&format!("location {}", location.name))
            );
        }
    }
    text.push_str("}\n");
    text
}

/// `topoctl graph`: DOT on stdout (or in `output`), or SVG through `dot -Tsvg`.
pub fn run(topology: &Topology, format: Format, output: Option<&Path>) -> i32 {
    let source = dot(topology);
    let bytes = match format {
        Format::Dot => source.into_bytes(),
        Format::Svg => match svg(&source) {
            Ok(bytes) => bytes,
            Err(message) => {
                eprintln!("topoctl: {message}");
                return EXIT_USAGE;
            }
        },
    };
    let written = match output {
        Some(path) => {
            std::fs::write(path, &bytes).map_err(|error| format!("{}: {error}", path.display()))
        }
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|error| error.to_string()),
    };
    match written {
        Ok(()) => EXIT_NO_CHANGE,
        Err(message) => {
            eprintln!("topoctl: {message}");
            EXIT_USAGE
        }
    }
}

/// Renders DOT to SVG with Graphviz's `dot`.
fn svg(source: &str) -> Result<Vec<u8>, String> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            format!("cannot run Graphviz `dot` ({error}): install it (apt-get install graphviz), or use --format dot")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(source.as_bytes())
            .map_err(|error| format!("writing to `dot`: {error}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("waiting for `dot`: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`dot` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use topologyd_config::Source;
    use topologyd_topology::compile_owned;

    use super::*;

    fn example() -> Topology {
        let sources = ["fleet.toml", "services.toml", "prefixes.toml"]
            .iter()
            .map(|name| {
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../examples/topology")
                    .join(name);
                Source::new(*name, std::fs::read_to_string(path).unwrap_or_default())
            })
            .collect();
        compile_owned(sources, 0).unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
    }

    #[test]
    fn the_graph_links_prefixes_bindings_services_and_locations() {
        let topology = example();
        let text = dot(&topology);
        assert!(
            text.contains("\"prefix 198.51.100.0/23\" -> \"binding 198.51.101.0/24\";"),
            "{text}"
        );
        assert!(
            text.contains("\"binding 1.1.1.0/24\" -> \"service resolver\";"),
            "{text}"
        );
        assert!(
            text.contains("\"service resolver\" -> \"location ams01\";"),
            "{text}"
        );
        assert!(
            !text.contains("\"service resolver\" -> \"location tst01\";"),
            "{text}"
        );
        assert!(text.contains("label=\"region eu\""), "{text}");
        // Graphviz reads it (the machines that build this have it: scripts/setup.sh).
        let picture = svg(&text).unwrap_or_else(|error| panic!("{error}"));
        let picture = String::from_utf8_lossy(&picture);
        assert!(
            picture.contains("<svg") && picture.contains("resolver"),
            "{picture}"
        );
    }
}
