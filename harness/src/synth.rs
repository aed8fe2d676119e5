//! Synthetic service topologies for benchmarks and scale tests.
//!
//! Generates the TOML text of a fleet (locations in regions), services with a mix of selectors,
//! onboarded IPv4 and IPv6 prefixes and their bindings, in the same files an operator would
//! write: `fleet.toml`, `services.toml`, `prefixes.toml`, `bindings.toml`. Every generated
//! topology is valid by construction (each advertised prefix has its default binding; the
//! services of more-specific bindings are announced at least wherever the covering route is),
//! so a benchmark measures the compiler's work, not its error path.
//!
//! The same topology can be written in several styles ([`SynthStyle`]): the plain one, the
//! README's inline tables with comments, dotted keys, sub-tables, quoted keys, or everything in
//! one file; they compile to the same topology, so a benchmark can compare what syntax costs.
//!
//! Owns nothing but string building; it is deterministic for a given [`SynthSpec`] and style.

use std::fmt::Write as _;

/// Number of regions the locations are spread over.
const REGIONS: usize = 12;
/// Every `GLOBAL_SERVICE_EVERY`-th service is announced at every live location; the services of
/// more-specific bindings are drawn from these so that no binding is a blackhole by construction.
const GLOBAL_SERVICE_EVERY: usize = 10;

/// The size of a synthetic topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSpec {
    /// Live locations (plus one offline test location).
    pub locations: usize,
    /// Services; a tenth of them select every live location, the rest a region or a tag.
    pub services: usize,
    /// Onboarded prefixes; three quarters IPv4 /24, one quarter IPv6 /48.
    pub prefixes: usize,
    /// Bindings, at least one (the default binding) per prefix; the rest are more-specifics.
    pub bindings: usize,
}

impl SynthSpec {
    /// The benchmark size of the topology engine issue: 500 locations, 2,000 services,
    /// 100,000 prefixes and 300,000 bindings.
    pub const ISSUE_SCALE: SynthSpec = SynthSpec {
        locations: 500,
        services: 2_000,
        prefixes: 100_000,
        bindings: 300_000,
    };

    /// The same fleet with `bindings` bindings over proportionally many prefixes.
    pub fn with_bindings(bindings: usize) -> SynthSpec {
        SynthSpec {
            prefixes: (bindings / 3).max(1),
            bindings,
            ..SynthSpec::ISSUE_SCALE
        }
    }
}

/// How the prefix and binding tables are written (the fleet and services are the same in all).
/// Every style but `Simple` adds `announce = { split = LENGTH }` (the prefix's own length, so
/// the routes do not change) and `roa = { asn, max_length }` to every prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthStyle {
    /// `key = value` lines only, in schema order, no comments (the baseline of the benchmark).
    Simple,
    /// One-line inline tables as in README's example, keys in another order, trailing comments.
    Inline,
    /// `announce.split = 24`, `roa.asn = …`: dotted keys.
    Dotted,
    /// `[prefix.announce]` and `[prefix.roa]` sub-tables after each `[[prefix]]`.
    Subtables,
    /// Quoted keys and literal strings everywhere (`"cidr" = '…'`).
    Quoted,
    /// The inline style with the fleet, the services, prefixes and bindings all in one file.
    OneFile,
}

impl SynthStyle {
    pub const ALL: [SynthStyle; 6] = [
        SynthStyle::Simple,
        SynthStyle::Inline,
        SynthStyle::Dotted,
        SynthStyle::Subtables,
        SynthStyle::Quoted,
        SynthStyle::OneFile,
    ];

    /// The style's name on the command line (`--style`).
    pub fn name(self) -> &'static str {
        match self {
            SynthStyle::Simple => "simple",
            SynthStyle::Inline => "inline",
            SynthStyle::Dotted => "dotted",
            SynthStyle::Subtables => "subtables",
            SynthStyle::Quoted => "quoted",
            SynthStyle::OneFile => "one-file",
        }
    }

    /// The style called `name`, if any.
    pub fn from_name(name: &str) -> Option<SynthStyle> {
        SynthStyle::ALL
            .into_iter()
            .find(|style| style.name() == name)
    }
}

/// One generated file, its name and TOML text: the one named-TOML-source type of the workspace.
pub type SynthFile = topologyd_config::Source;

/// The files of a synthetic topology.
pub fn generate(spec: &SynthSpec) -> Vec<SynthFile> {
    generate_with_changes(spec, 0)
}

/// The files of a synthetic topology in which `changed_per_mille` ‰ of the bindings point at
/// another service than in [`generate`] (default bindings move to the next service, so their
/// routes move between locations; more-specifics to another global service): a change touching
/// that share of the bindings, for plan benchmarks. Prefixes and locations are identical.
pub fn generate_with_changes(spec: &SynthSpec, changed_per_mille: usize) -> Vec<SynthFile> {
    generate_styled(spec, changed_per_mille, SynthStyle::Simple)
}

/// [`generate_with_changes`] with the prefix and binding tables written in `style`.
pub fn generate_styled(
    spec: &SynthSpec,
    changed_per_mille: usize,
    style: SynthStyle,
) -> Vec<SynthFile> {
    let files = [
        ("fleet.toml", fleet(spec)),
        ("services.toml", services(spec)),
        ("prefixes.toml", prefixes(spec, style)),
        ("bindings.toml", bindings(spec, changed_per_mille, style)),
    ];
    if style == SynthStyle::OneFile {
        let text: String = files.into_iter().map(|(_, text)| text).collect();
        return vec![SynthFile {
            name: "topology.toml".into(),
            text: text.into(),
        }];
    }
    files
        .into_iter()
        .map(|(name, text)| SynthFile {
            name: name.into(),
            text: text.into(),
        })
        .collect()
}

fn region_name(index: usize) -> String {
    format!("region-{:02}", index % REGIONS)
}

fn location_name(index: usize) -> String {
    format!("loc{index:04}")
}

fn service_name(index: usize) -> String {
    format!("svc{index:04}")
}

fn fleet(spec: &SynthSpec) -> String {
    let mut out = String::with_capacity(spec.locations * 160);
    for index in 0..spec.locations {
        let tag = if index % 7 == 0 { "canary" } else { "edge" };
        let _ = write!(
            out,
            "[[location]]\nname = \"{}\"\nregion = \"{}\"\nmetro = \"M{:03}\"\ncountry = \"C{:02}\"\ntags = [\"{}\", \"tier-{}\"]\nstate = \"live\"\n\n",
            location_name(index),
            region_name(index),
            index / 3,
            index % 40,
            tag,
            index % 3
        );
    }
    out.push_str(
        "[[location]]\nname = \"test-offline\"\nregion = \"region-00\"\nmetro = \"TST\"\ncountry = \"C00\"\ntags = [\"test\"]\nstate = \"offline\"\n\n",
    );
    out
}

fn services(spec: &SynthSpec) -> String {
    let mut out = String::with_capacity(spec.services * 160);
    for index in 0..spec.services {
        let topology = if index % GLOBAL_SERVICE_EVERY == 0 {
            "all".to_string()
        } else {
            match index % 3 {
                0 => format!("region = \\\"{}\\\"", region_name(index)),
                1 => format!(
                    "region in [\\\"{}\\\", \\\"{}\\\"] and not tag = \\\"canary\\\"",
                    region_name(index),
                    region_name(index + 1)
                ),
                _ => format!(
                    "tag = \\\"tier-{}\\\" or region = \\\"{}\\\"",
                    index % 3,
                    region_name(index + 5)
                ),
            }
        };
        let _ = write!(
            out,
            "[[service]]\nname = \"{}\"\nlifecycle = \"active\"\ntopology = \"{}\"\ncommunities = [\"64500:{}\"]\nmed = {}\n\n",
            service_name(index),
            topology,
            index % 65_000,
            index % 100
        );
    }
    out
}

/// The `index`-th prefix: IPv4 /24s from 11.0.0.0 for three quarters, IPv6 /48s under
/// 3fff::/20 (documentation space, RFC 9637: room for 2^28 /48s) for the rest.
fn prefix_cidr(index: usize) -> (String, bool) {
    if index % 4 != 3 {
        let n = (index / 4) * 3 + index % 4;
        let base: u32 = (11 << 24) + ((n as u32) << 8);
        let bytes = base.to_be_bytes();
        (format!("{}.{}.{}.0/24", bytes[0], bytes[1], bytes[2]), true)
    } else {
        let n = index / 4;
        (format!("3fff:{:x}:{:x}::/48", n >> 16, n & 0xffff), false)
    }
}

fn prefixes(spec: &SynthSpec, style: SynthStyle) -> String {
    let mut out = String::with_capacity(spec.prefixes * 200);
    for index in 0..spec.prefixes {
        let (cidr, is_v4) = prefix_cidr(index);
        let owner = index % 5_000;
        let length = if is_v4 { 24 } else { 48 };
        let _ = match style {
            SynthStyle::Simple => write!(
                out,
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"customer-{owner}\"\nadvertise = true\n\n"
            ),
            SynthStyle::Inline | SynthStyle::OneFile => write!(
                out,
                "[[prefix]]                  # customer {owner}\nowner = \"customer-{owner}\"\ncidr = \"{cidr}\"\norigin_asn = 64500\nadvertise = true\nannounce = {{ split = {length} }}   # its own length\nroa = {{ asn = 64500, max_length = {length} }}\n\n"
            ),
            SynthStyle::Dotted => write!(
                out,
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"customer-{owner}\"\nadvertise = true\nannounce.split = {length}\nroa.asn = 64500\nroa.max_length = {length}\n\n"
            ),
            SynthStyle::Subtables => write!(
                out,
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"customer-{owner}\"\nadvertise = true\n[prefix.announce]\nsplit = {length}\n[prefix.roa]\nasn = 64500\nmax_length = {length}\n\n"
            ),
            SynthStyle::Quoted => write!(
                out,
                "[[prefix]]\n\"cidr\" = '{cidr}'\n\"origin_asn\" = 64500\n\"owner\" = 'customer-{owner}'\n\"advertise\" = true\n\"announce\" = {{ \"split\" = {length} }}\n\"roa\" = {{ \"asn\" = 64500, \"max_length\" = {length} }}\n\n"
            ),
        };
    }
    out
}

/// One `[[binding]]` table in `style`.
fn binding(out: &mut String, cidr: &str, service: &str, style: SynthStyle) {
    let _ = match style {
        SynthStyle::Simple | SynthStyle::Dotted | SynthStyle::Subtables => write!(
            out,
            "[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n\n"
        ),
        SynthStyle::Inline | SynthStyle::OneFile => write!(
            out,
            "[[binding]]   # {service}\nservice = \"{service}\"\ncidr = \"{cidr}\"     # bound\n\n"
        ),
        SynthStyle::Quoted => write!(
            out,
            "[[binding]]\n\"cidr\" = '{cidr}'\n\"service\" = '{service}'\n\n"
        ),
    };
}

/// The `which`-th more-specific cidr inside prefix `index` (a /28 in IPv4, a /64 in IPv6).
fn more_specific_cidr(index: usize, which: usize) -> String {
    let (cidr, is_v4) = prefix_cidr(index);
    if is_v4 {
        let base = cidr.trim_end_matches(".0/24");
        format!("{base}.{}/28", (which % 16) * 16)
    } else {
        let base = cidr.trim_end_matches("::/48");
        format!("{base}:{:x}::/64", which % 0x1_0000)
    }
}

fn bindings(spec: &SynthSpec, changed_per_mille: usize, style: SynthStyle) -> String {
    let mut out = String::with_capacity(spec.bindings * 64);
    let global_services = spec.services.div_ceil(GLOBAL_SERVICE_EVERY).max(1);
    for index in 0..spec.prefixes.min(spec.bindings) {
        let (cidr, _) = prefix_cidr(index);
        let mut service = index % spec.services;
        if changed_per_mille > 0 && (index * 7919) % 1000 < changed_per_mille {
            service = (service + 1) % spec.services;
        }
        binding(&mut out, &cidr, &service_name(service), style);
    }
    let extra = spec.bindings.saturating_sub(spec.prefixes);
    for n in 0..extra {
        let prefix_index = n % spec.prefixes;
        let which = n / spec.prefixes;
        let mut global = (n * 7 + which) % global_services;
        if changed_per_mille > 0 && (n * 7919) % 1000 < changed_per_mille {
            global = (global + 1) % global_services;
        }
        binding(
            &mut out,
            &more_specific_cidr(prefix_index, which),
            &service_name(global * GLOBAL_SERVICE_EVERY),
            style,
        );
    }
    out
}

/// The simplest large topology: one live location `loc0000`, one service announced `all`
/// (community 13335:1), and `routes` onboarded IPv4 /24s from 11.0.0.0 up, each its own default
/// binding: as `(file name, text)`. The daemon and BMP benchmarks announce it.
pub fn flat_topology(routes: usize) -> Vec<(String, String)> {
    use std::fmt::Write as _;
    let fleet = "[[location]]\nname = \"loc0000\"\nregion = \"r\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n".to_string();
    let services =
        "[[service]]\nname = \"anycast\"\ntopology = \"all\"\ncommunities = [\"13335:1\"]\n"
            .to_string();
    let mut prefixes = String::with_capacity(routes * 120);
    for index in 0..routes {
        let base = (11u32 << 24) + ((index as u32) << 8);
        let [a, b, c, _] = base.to_be_bytes();
        let _ = write!(
            prefixes,
            "[[prefix]]\ncidr = \"{a}.{b}.{c}.0/24\"\norigin_asn = 13335\nowner = \"o\"\nadvertise = true\n\n[[binding]]\ncidr = \"{a}.{b}.{c}.0/24\"\nservice = \"anycast\"\n\n"
        );
    }
    vec![
        ("fleet.toml".into(), fleet),
        ("services.toml".into(), services),
        ("prefixes.toml".into(), prefixes),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sizes_match_the_spec() {
        let spec = SynthSpec {
            locations: 20,
            services: 30,
            prefixes: 40,
            bindings: 100,
        };
        let files = generate(&spec);
        let count = |needle: &str| -> usize {
            files
                .iter()
                .map(|file| file.text.matches(needle).count())
                .sum()
        };
        assert_eq!(count("[[location]]"), 21);
        assert_eq!(count("[[service]]"), 30);
        assert_eq!(count("[[prefix]]"), 40);
        assert_eq!(count("[[binding]]"), 100);
    }

    #[test]
    fn every_style_compiles_to_the_same_topology() {
        let spec = SynthSpec {
            locations: 12,
            services: 30,
            prefixes: 60,
            bindings: 150,
        };
        let compiled = |style: SynthStyle| {
            topologyd_topology::compile_owned(generate_styled(&spec, 0, style), 1)
                .unwrap_or_else(|diagnostics| panic!("{}: {diagnostics}", style.name()))
        };
        let simple = compiled(SynthStyle::Simple);
        let inline = compiled(SynthStyle::Inline);
        let routes = |topology: &topologyd_topology::Topology| topology.routes().count();
        assert_eq!(routes(&simple), routes(&inline));
        for style in &SynthStyle::ALL[2..] {
            let other = compiled(*style);
            assert_eq!(other.hash_hex(), inline.hash_hex(), "{}", style.name());
        }
        assert_ne!(
            simple.hash_hex(),
            inline.hash_hex(),
            "the inline style adds ROAs"
        );
        assert_eq!(SynthStyle::from_name("one-file"), Some(SynthStyle::OneFile));
    }

    #[test]
    fn a_change_moves_roughly_the_requested_share() {
        let spec = SynthSpec {
            locations: 10,
            services: 100,
            prefixes: 1_000,
            bindings: 3_000,
        };
        let before = bindings(&spec, 0, SynthStyle::Simple);
        let after = bindings(&spec, 10, SynthStyle::Simple);
        let changed = before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .count();
        assert!((10..=80).contains(&changed), "changed {changed} of 3000");
    }
}
