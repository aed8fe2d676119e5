//! Parsing topology files: TOML (via `toml` + serde, unknown keys rejected, spans kept with
//! `toml::Spanned`) into the [`RawTopology`]. Checks syntax and value shapes (CIDR text,
//! communities, selector expressions); leaves every cross-reference to the compiler.

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{Collector, Diagnostics};
use crate::model::{
    AnnounceMode, Community, LargeCommunity, LengthLimits, Lifecycle, Located, LocationState,
    RawBinding, RawLocation, RawPrefix, RawService, RawTopology, Roa,
};
use crate::selector::parse_selector;
use crate::source::{Source, SourceMap, Span};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileModel {
    pub(crate) settings: Option<Spanned<SettingsFile>>,
    #[serde(default)]
    pub(crate) location: Vec<LocationFile>,
    #[serde(default)]
    pub(crate) service: Vec<ServiceFile>,
    #[serde(default)]
    pub(crate) prefix: Vec<PrefixFile>,
    #[serde(default)]
    pub(crate) binding: Vec<BindingFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsFile {
    ipv4_announce_lengths: Option<LengthLimitsFile>,
    ipv6_announce_lengths: Option<LengthLimitsFile>,
    blast_radius: Option<BlastRadiusFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LengthLimitsFile {
    shortest: u8,
    longest: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlastRadiusFile {
    max_withdrawn_pair_share: Option<Spanned<f64>>,
    max_affected_location_share: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocationFile {
    name: Spanned<String>,
    region: Spanned<String>,
    metro: Spanned<String>,
    country: Spanned<String>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    state: Spanned<LocationState>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceFile {
    name: Spanned<String>,
    lifecycle: Option<Spanned<Lifecycle>>,
    topology: Spanned<String>,
    #[serde(default)]
    announce_at_test_locations: bool,
    #[serde(default)]
    communities: Vec<Spanned<String>>,
    #[serde(default)]
    large_communities: Vec<Spanned<String>>,
    med: Option<u32>,
    as_path_prepend: Option<Spanned<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrefixFile {
    pub(crate) cidr: Spanned<String>,
    pub(crate) origin_asn: Spanned<u32>,
    pub(crate) owner: String,
    pub(crate) advertise: bool,
    pub(crate) announce: Option<Spanned<AnnounceFile>>,
    pub(crate) roa: Option<Spanned<RoaFile>>,
    pub(crate) irr_token: Option<String>,
    pub(crate) rdns_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoaFile {
    asn: u32,
    max_length: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BindingFile {
    pub(crate) cidr: Spanned<String>,
    pub(crate) service: Spanned<String>,
}

/// `announce = "aggregate"` or `announce = { split = 24 }`; written by hand for clear errors.
pub(crate) struct AnnounceFile(pub(crate) AnnounceMode);

impl<'de> Deserialize<'de> for AnnounceFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AnnounceFile;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("\"aggregate\" or { split = LENGTH }")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<AnnounceFile, E> {
                if value == "aggregate" {
                    Ok(AnnounceFile(AnnounceMode::Aggregate))
                } else {
                    Err(E::custom(format!(
                        "unknown announce mode \"{value}\", expected \"aggregate\" or {{ split = LENGTH }}"
                    )))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AnnounceFile, A::Error> {
                let mut split = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "split" {
                        split = Some(map.next_value::<u8>()?);
                    } else {
                        return Err(serde::de::Error::custom(format!(
                            "unknown key `{key}` in announce, expected `split`"
                        )));
                    }
                }
                split
                    .map(|length| AnnounceFile(AnnounceMode::Split(length)))
                    .ok_or_else(|| {
                        serde::de::Error::custom("announce table needs `split = LENGTH`")
                    })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Maps byte offsets inside a TOML string's decoded value back to the source. Exact when the
/// value appears verbatim after the opening quote (no escapes, no line continuations); otherwise
/// every offset conservatively maps to the opening quote.
struct StringPositions {
    span: Span,
    content_start: Option<usize>,
}

impl StringPositions {
    fn new(text: &str, span: Span, value: &str) -> StringPositions {
        let raw = text.get(span.start as usize..).unwrap_or("");
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        let start = span.start as usize + quote;
        let content_start = (text.get(start..start + value.len()) == Some(value)).then_some(start);
        StringPositions {
            span,
            content_start,
        }
    }

    fn locate(&self, offset: usize, length: usize) -> Span {
        match self.content_start {
            Some(start) => Span::new(self.span.source, start + offset..start + offset + length),
            None => self.span,
        }
    }
}

fn span_of<T>(source: u32, spanned: &Spanned<T>) -> Span {
    Span::new(source, spanned.span())
}

fn parse_cidr(
    source: u32,
    text: &Spanned<String>,
    what: &str,
    collector: &mut Collector,
) -> Option<Located<IpNet>> {
    match text.get_ref().parse::<IpNet>() {
        Ok(network) => Some(Located::new(network, span_of(source, text))),
        Err(_) => {
            let help = if text.get_ref().contains('/') {
                "write an address and a prefix length, such as \"192.0.2.0/24\" or \"2001:db8::/48\""
                    .to_string()
            } else if text.get_ref().contains(':') {
                format!("add the prefix length, such as \"{}/48\"", text.get_ref())
            } else {
                format!("add the prefix length, such as \"{}/24\"", text.get_ref())
            };
            collector.error(
                Some(span_of(source, text)),
                format!("invalid {what} CIDR \"{}\"", text.get_ref()),
                Some(help),
            );
            None
        }
    }
}

fn convert_service(
    source: u32,
    text: &str,
    file: ServiceFile,
    collector: &mut Collector,
) -> Option<RawService> {
    let mut valid = true;
    let topology_span = span_of(source, &file.topology);
    let positions = StringPositions::new(text, topology_span, file.topology.get_ref());
    let topology = match parse_selector(file.topology.get_ref(), &|offset, length| {
        positions.locate(offset, length)
    }) {
        Ok(selector) => Some(selector),
        Err(failure) => {
            collector.error(
                Some(positions.locate(failure.offset, failure.length)),
                format!(
                    "invalid topology selector of service `{}`: {}",
                    file.name.get_ref(),
                    failure.message
                ),
                failure.help,
            );
            None
        }
    };
    let mut communities = Vec::with_capacity(file.communities.len());
    for community in &file.communities {
        match Community::parse(community.get_ref()) {
            Some(parsed) => communities.push(parsed),
            None => {
                valid = false;
                collector.error(
                    Some(span_of(source, community)),
                    format!("invalid community \"{}\"", community.get_ref()),
                    Some(
                        "a community is two 16-bit numbers, \"ASN:VALUE\", such as \"13335:100\"; \
                         use large_communities for 32-bit ASNs"
                            .into(),
                    ),
                );
            }
        }
    }
    let mut large_communities = Vec::with_capacity(file.large_communities.len());
    for community in &file.large_communities {
        match LargeCommunity::parse(community.get_ref()) {
            Some(parsed) => large_communities.push(parsed),
            None => {
                valid = false;
                collector.error(
                    Some(span_of(source, community)),
                    format!("invalid large community \"{}\"", community.get_ref()),
                    Some("a large community is three 32-bit numbers, such as \"13335:1:2\"".into()),
                );
            }
        }
    }
    let prepend = file
        .as_path_prepend
        .as_ref()
        .map_or(0, |value| *value.get_ref());
    if let Some(spanned) = file.as_path_prepend.as_ref().filter(|_| prepend > 3) {
        valid = false;
        collector.error(
            Some(span_of(source, spanned)),
            format!("as_path_prepend = {prepend} is more than 3"),
            Some("prepend the origin ASN 0 to 3 times".into()),
        );
    }
    let (lifecycle, lifecycle_span) = match &file.lifecycle {
        Some(lifecycle) => (*lifecycle.get_ref(), span_of(source, lifecycle)),
        None => (Lifecycle::Active, span_of(source, &file.name)),
    };
    let topology = topology?;
    valid.then(|| RawService {
        name: Located::new(file.name.get_ref().clone(), span_of(source, &file.name)),
        lifecycle: Located::new(lifecycle, lifecycle_span),
        topology: Located::new(topology, topology_span),
        announce_at_test_locations: file.announce_at_test_locations,
        communities,
        large_communities,
        med: file.med,
        as_path_prepend: prepend,
        health: None,
        local_addresses: Vec::new(),
    })
}

fn located_string(source: u32, value: Spanned<String>) -> Located<String> {
    let span = span_of(source, &value);
    Located::new(value.into_inner(), span)
}

/// Parses every source; reports every syntax and shape error of every file in one run. The
/// result keeps a copy of the sources (see [`parse_topology_sources_owned`] to move them).
pub fn parse_topology_sources(sources: &[Source]) -> Result<RawTopology, Diagnostics> {
    parse_topology_sources_owned(sources.to_vec())
}

/// [`parse_topology_sources`] taking the sources by value (no copy of large texts).
pub fn parse_topology_sources_owned(sources: Vec<Source>) -> Result<RawTopology, Diagnostics> {
    let (raw, diagnostics) = parse_topology_sources_with_warnings(sources);
    if diagnostics.has_errors() {
        Err(diagnostics)
    } else {
        Ok(raw)
    }
}

/// Like [`parse_topology_sources`], but always returns what parsed (items with errors left out)
/// together with the diagnostics.
pub fn parse_topology_sources_with_warnings(sources: Vec<Source>) -> (RawTopology, Diagnostics) {
    let mut collector = Collector::new();
    let mut raw = RawTopology::default();
    let mut settings_seen: Option<Span> = None;
    for (index, source) in sources.iter().enumerate() {
        let source_id = u32::try_from(index).unwrap_or(u32::MAX);
        let fast =
            crate::fast::parse_prefixes_and_bindings(&source.text).map(|(prefix, binding)| {
                FileModel {
                    settings: None,
                    location: Vec::new(),
                    service: Vec::new(),
                    prefix,
                    binding,
                }
            });
        let file: FileModel = match fast.map_or_else(|| toml::from_str(&source.text), Ok) {
            Ok(file) => file,
            Err(failure) => {
                let span = failure
                    .span()
                    .map(|range| Span::new(source_id, range))
                    .unwrap_or(Span::new(source_id, 0..0));
                let help = failure.message().contains("unknown field").then(|| {
                    "remove the key or fix its spelling; unknown keys are rejected so that typos \
                     cannot silently change the topology"
                        .to_string()
                });
                collector.error(Some(span), failure.message().trim_end().to_string(), help);
                continue;
            }
        };
        if let Some(settings) = file.settings {
            let span = span_of(source_id, &settings);
            if settings_seen.is_some() {
                collector.error(
                    Some(span),
                    "[settings] is defined in more than one file",
                    Some("keep one [settings] table for the whole topology".into()),
                );
            }
            settings_seen = Some(span);
            let settings = settings.into_inner();
            if let Some(limits) = settings.ipv4_announce_lengths {
                raw.settings.ipv4_announce_lengths = LengthLimits {
                    shortest: limits.shortest,
                    longest: limits.longest,
                };
            }
            if let Some(limits) = settings.ipv6_announce_lengths {
                raw.settings.ipv6_announce_lengths = LengthLimits {
                    shortest: limits.shortest,
                    longest: limits.longest,
                };
            }
            for (limits, family_bits, family) in [
                (raw.settings.ipv4_announce_lengths, 32, "ipv4"),
                (raw.settings.ipv6_announce_lengths, 128, "ipv6"),
            ] {
                if limits.shortest > limits.longest || limits.longest > family_bits {
                    collector.error(
                        Some(span),
                        format!(
                            "{family}_announce_lengths {{ shortest = {}, longest = {} }} is not a \
                             valid range",
                            limits.shortest, limits.longest
                        ),
                        Some(format!(
                            "shortest must not exceed longest, and longest must be at most {family_bits}"
                        )),
                    );
                }
            }
            if let Some(blast_radius) = settings.blast_radius {
                for (value, target) in [
                    (
                        blast_radius.max_withdrawn_pair_share,
                        &mut raw.settings.max_withdrawn_pair_share,
                    ),
                    (
                        blast_radius.max_affected_location_share,
                        &mut raw.settings.max_affected_location_share,
                    ),
                ] {
                    if let Some(value) = value {
                        let share = *value.get_ref();
                        if (0.0..=1.0).contains(&share) {
                            *target = share;
                        } else {
                            collector.error(
                                Some(span_of(source_id, &value)),
                                format!("blast-radius share {share} is outside 0.0..=1.0"),
                                Some("write a share such as 0.10 for ten percent".into()),
                            );
                        }
                    }
                }
            }
        }
        for location in file.location {
            raw.locations.push(RawLocation {
                name: located_string(source_id, location.name),
                region: located_string(source_id, location.region),
                metro: located_string(source_id, location.metro),
                country: located_string(source_id, location.country),
                tags: location
                    .tags
                    .into_iter()
                    .map(|tag| located_string(source_id, tag))
                    .collect(),
                state: Located::new(
                    *location.state.get_ref(),
                    span_of(source_id, &location.state),
                ),
            });
        }
        for service in file.service {
            if let Some(service) = convert_service(source_id, &source.text, service, &mut collector)
            {
                raw.services.push(service);
            }
        }
        for prefix in file.prefix {
            let Some(cidr) = parse_cidr(source_id, &prefix.cidr, "prefix", &mut collector) else {
                continue;
            };
            let (announce, announce_span) = match &prefix.announce {
                Some(announce) => (announce.get_ref().0, span_of(source_id, announce)),
                None => (AnnounceMode::Aggregate, cidr.span),
            };
            raw.prefixes.push(RawPrefix {
                cidr,
                origin_asn: Located::new(
                    *prefix.origin_asn.get_ref(),
                    span_of(source_id, &prefix.origin_asn),
                ),
                owner: prefix.owner,
                advertise: prefix.advertise,
                announce: Located::new(announce, announce_span),
                roa: prefix.roa.map(|roa| {
                    let span = span_of(source_id, &roa);
                    let roa = roa.into_inner();
                    Located::new(
                        Roa {
                            asn: roa.asn,
                            max_length: roa.max_length,
                        },
                        span,
                    )
                }),
                irr_token: prefix.irr_token,
                rdns_token: prefix.rdns_token,
            });
        }
        raw.bindings.reserve(file.binding.len());
        for binding in file.binding {
            let Some(cidr) = parse_cidr(source_id, &binding.cidr, "binding", &mut collector) else {
                continue;
            };
            raw.bindings.push(RawBinding {
                cidr,
                service: located_string(source_id, binding.service),
            });
        }
    }
    raw.settings_span = settings_seen;
    raw.sources = SourceMap::new(sources);
    let diagnostics = collector.finish(&raw.sources);
    (raw, diagnostics)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sources(files: &[(&str, &str)]) -> Vec<Source> {
        files
            .iter()
            .map(|(name, text)| Source::new(*name, *text))
            .collect()
    }

    #[test]
    fn parses_all_kinds_across_files() {
        let raw = parse_topology_sources(&sources(&[
            (
                "fleet.toml",
                "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\ntags = [\"canary\"]\nstate = \"live\"\n",
            ),
            (
                "services.toml",
                "[[service]]\nname = \"cdn\"\ntopology = \"tag:canary\"\ncommunities = [\"13335:100\"]\nlarge_communities = [\"13335:1:2\"]\nmed = 10\nas_path_prepend = 1\n",
            ),
            (
                "prefixes.toml",
                "[settings]\nipv4_announce_lengths = { shortest = 8, longest = 25 }\n\n[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 13335\nowner = \"acme\"\nadvertise = true\nannounce = { split = 25 }\nroa = { asn = 13335, max_length = 25 }\n\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"cdn\"\n",
            ),
        ]))
        .unwrap();
        assert_eq!(raw.locations.len(), 1);
        assert_eq!(raw.services[0].lifecycle.value, Lifecycle::Active);
        assert_eq!(raw.services[0].communities, vec![Community(13335, 100)]);
        assert_eq!(raw.prefixes[0].announce.value, AnnounceMode::Split(25));
        assert_eq!(raw.settings.ipv4_announce_lengths.longest, 25);
        assert_eq!(raw.bindings[0].service.value, "cdn");
        assert_eq!(
            raw.sources.locate(raw.bindings[0].cidr.span).to_string(),
            "prefixes.toml:13:8"
        );
    }

    #[test]
    fn reports_errors_of_every_file_with_positions() {
        let failure = parse_topology_sources(&sources(&[
            ("a.toml", "[[location]]\nname = \"x\"\ncolour = \"red\"\n"),
            (
                "b.toml",
                "[[service]]\nname = \"dns\"\ntopology = \"region = \\\"eu\\\" and regoin = 'us'\"\n\n[[service]]\nname = \"cdn\"\ntopology = \"region = 'eu' and regoin = 'us'\"\ncommunities = [\"x\"]\n",
            ),
            (
                "c.toml",
                "[[binding]]\ncidr = \"192.0.2.0\"\nservice = \"cdn\"\n",
            ),
        ]))
        .unwrap_err();
        let text = failure.to_string();
        assert!(
            text.contains("a.toml:3:1: error: unknown field `colour`"),
            "{text}"
        );
        // Escaped string: points at the string start.
        assert!(
            text.contains("b.toml:3:12: error: invalid topology selector"),
            "{text}"
        );
        // Verbatim string: points inside it, at `regoin`.
        assert!(
            text.contains("b.toml:7:31: error: invalid topology selector"),
            "{text}"
        );
        assert!(
            text.contains("b.toml:8:16: error: invalid community"),
            "{text}"
        );
        assert!(
            text.contains("c.toml:2:8: error: invalid binding CIDR"),
            "{text}"
        );
        assert!(text.contains("help: add the prefix length"), "{text}");
        assert_eq!(failure.errors().count(), 5, "{text}");
    }

    #[test]
    fn rejects_bad_enumerations() {
        let failure = parse_topology_sources(&sources(&[(
            "a.toml",
            "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nannounce = \"everything\"\n",
        )]))
        .unwrap_err();
        assert!(failure.to_string().contains("a.toml:6:12"), "{failure}");
    }
}
