//! Builders for topology sources in tests: small structs rendered to the TOML an operator writes.

#![allow(dead_code, clippy::unwrap_used)]

use std::fmt::Write as _;

use topologyd_topology::{Source, Topology, compile};

pub struct LocationSpec {
    pub name: String,
    pub region: String,
    pub tags: Vec<String>,
    pub state: String,
}

pub fn location(name: &str, region: &str, tags: &[&str], state: &str) -> LocationSpec {
    LocationSpec {
        name: name.to_string(),
        region: region.to_string(),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        state: state.to_string(),
    }
}

pub fn fleet(locations: &[LocationSpec]) -> String {
    let mut out = String::new();
    for location in locations {
        let tags: Vec<String> = location
            .tags
            .iter()
            .map(|tag| format!("\"{tag}\""))
            .collect();
        let _ = write!(
            out,
            "[[location]]\nname = \"{}\"\nregion = \"{}\"\nmetro = \"{}\"\ncountry = \"XX\"\ntags = [{}]\nstate = \"{}\"\n\n",
            location.name,
            location.region,
            location
                .name
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .to_uppercase(),
            tags.join(", "),
            location.state
        );
    }
    out
}

/// `[[service]]` with a selector written as a TOML literal string.
pub fn service(name: &str, lifecycle: &str, topology: &str, community: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlifecycle = \"{lifecycle}\"\ntopology = '{topology}'\ncommunities = [\"{community}\"]\n\n"
    )
}

pub fn prefix(cidr: &str, advertise: bool) -> String {
    format!(
        "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"test\"\nadvertise = {advertise}\n\n"
    )
}

pub fn binding(cidr: &str, service: &str) -> String {
    format!("[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n\n")
}

pub fn sources(files: &[(&str, String)]) -> Vec<Source> {
    files
        .iter()
        .map(|(name, text)| Source::new(*name, text.clone()))
        .collect()
}

pub fn compiled(files: &[(&str, String)], generation: u64) -> Topology {
    match compile(sources(files), generation) {
        Ok(topology) => topology,
        Err(diagnostics) => panic!("does not compile:\n{diagnostics}"),
    }
}
