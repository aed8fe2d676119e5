//! The wave plan: which fleet locations each wave of a rollout changes, from the wave
//! specifications of the fleet file and the location attributes of the topology being rolled
//! out. Pure.
//!
//! Owns: selector evaluation against one location, `share` (rounded up, in name order),
//! `max_locations` splitting into `NAME-1`, `NAME-2`, …, which gates apply to each wave, the
//! errors (a fleet location unknown to the topology, locations no wave takes), the check of
//! every value a wave selector names against the topology ([`unknown_selector_names`]) and
//! whether the canary (the first `[[wave]]`) survived ([`canary_dropped`]).
//!
//! Must not touch: parsing (`fleet.rs`), running waves (`machine.rs`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use topologyd_config::{Attribute, LocationState, Selector, Span};
use topologyd_topology::{Location, suggestion};

use topologyd_config::fleet::{DEFAULT_STALL_SECONDS, GateSpec, OnStall, WaveSpec};

/// One wave of the plan, as the machine runs it and the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    /// `canary`, or `canary-2` for the second part of a split wave.
    pub name: String,
    /// The `[[wave]]` name it comes from.
    pub base: String,
    /// In application order.
    pub locations: Vec<String>,
    pub bake_seconds: u64,
    /// Indices into the plan's gates evaluated in this wave.
    pub gates: Vec<usize>,
    /// Gates that would apply but are skipped here (`{control}` with no other location).
    pub skipped_gates: Vec<usize>,
    /// How long an unreachable location of this wave is retried (journals written before the
    /// stall bound existed read as the default).
    #[serde(default = "default_stall_seconds")]
    pub stall_seconds: u64,
    /// What a stall does in this wave.
    #[serde(default)]
    pub on_stall: OnStall,
}

fn default_stall_seconds() -> u64 {
    DEFAULT_STALL_SECONDS
}

/// A wave plan that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaveError {
    #[error(
        "fleet location `{0}` is not a location of the new topology (a daemon refuses a topology without its own location)"
    )]
    UnknownLocation(String),
    #[error("{} fleet location(s) are in no wave: {}; add a last [[wave]] with share = 1.0", .0.len(), .0.join(", "))]
    Unassigned(Vec<String>),
}

/// Whether `selector` matches `location`.
pub fn matches(selector: &Selector, location: &Location) -> bool {
    location.selected_by(selector)
}

/// Assigns the fleet's locations to waves. Returns the waves and warnings (dropped empty waves,
/// topology locations the fleet file does not list).
pub fn assign_waves(
    specs: &[WaveSpec],
    gates: &[GateSpec],
    fleet: &[String],
    topology: &[Location],
) -> Result<(Vec<Wave>, Vec<String>), WaveError> {
    let mut warnings = Vec::new();
    let mut remaining: Vec<&Location> = Vec::with_capacity(fleet.len());
    for name in fleet {
        let location = topology
            .iter()
            .find(|location| &location.name == name)
            .ok_or_else(|| WaveError::UnknownLocation(name.clone()))?;
        remaining.push(location);
    }
    remaining.sort_by(|left, right| left.name.cmp(&right.name));
    let listed: BTreeSet<&str> = fleet.iter().map(String::as_str).collect();
    let missing: Vec<&str> = topology
        .iter()
        .map(|location| location.name.as_str())
        .filter(|name| !listed.contains(name))
        .collect();
    if !missing.is_empty() {
        warnings.push(format!(
            "{} topology location(s) are not in the fleet file and are not rolled out to: {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    let all: Vec<String> = remaining
        .iter()
        .map(|location| location.name.clone())
        .collect();
    let mut waves = Vec::new();
    for spec in specs {
        let candidates: Vec<&Location> = remaining
            .iter()
            .copied()
            .filter(|location| {
                spec.select
                    .as_ref()
                    .is_none_or(|select| matches(select, location))
            })
            .collect();
        let take = share_count(candidates.len(), spec.share);
        let taken: Vec<String> = candidates
            .iter()
            .take(take)
            .map(|location| location.name.clone())
            .collect();
        if taken.is_empty() {
            warnings.push(format!(
                "wave `{}` selects no location and is dropped",
                spec.name
            ));
            continue;
        }
        remaining.retain(|location| !taken.contains(&location.name));
        let chunk = spec.max_locations.unwrap_or(taken.len()).max(1);
        let parts: Vec<&[String]> = taken.chunks(chunk).collect();
        let split = parts.len() > 1;
        for (number, part) in parts.into_iter().enumerate() {
            let name = if split {
                format!("{}-{}", spec.name, number + 1)
            } else {
                spec.name.clone()
            };
            let has_control = all.iter().any(|location| !part.contains(location));
            let mut applicable = Vec::new();
            let mut skipped = Vec::new();
            for (index, gate) in gates.iter().enumerate() {
                if !gate.applies_to(&name, &spec.name) {
                    continue;
                }
                if gate.uses_control() && !has_control {
                    skipped.push(index);
                } else {
                    applicable.push(index);
                }
            }
            waves.push(Wave {
                name,
                base: spec.name.clone(),
                locations: part.to_vec(),
                bake_seconds: spec.bake_seconds,
                gates: applicable,
                skipped_gates: skipped,
                stall_seconds: spec.stall_seconds,
                on_stall: spec.on_stall,
            });
        }
    }
    if !remaining.is_empty() {
        return Err(WaveError::Unassigned(
            remaining
                .iter()
                .map(|location| location.name.clone())
                .collect(),
        ));
    }
    Ok((waves, warnings))
}

/// A value a wave selector names that no location of the topology has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// Index of the `[[wave]]` in the fleet file.
    pub wave: usize,
    pub attribute: Attribute,
    pub value: String,
    /// The value inside the selector, in the fleet file.
    pub span: Span,
    /// "did you mean `x`?", or the known values.
    pub help: String,
}

/// Every value a wave selector names (tag, region, metro, country, location, state) that no
/// location of `topology` has, in file order.
pub fn unknown_selector_names(specs: &[WaveSpec], topology: &[Location]) -> Vec<UnknownName> {
    let mut unknown = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let Some(select) = &spec.select else {
            continue;
        };
        select.for_each_value(&mut |attribute, value| {
            let name = value.value.as_str();
            let help = if attribute == Attribute::State {
                (LocationState::parse(name).is_none())
                    .then(|| "states are live, offline, test and draining".to_string())
            } else {
                let known = topology
                    .iter()
                    .flat_map(move |location| attribute_values(location, attribute).into_iter());
                (!known.clone().any(|known| known == name))
                    .then(|| suggestion(name, known, attribute.keyword()))
            };
            if let Some(help) = help {
                unknown.push(UnknownName {
                    wave: index,
                    attribute,
                    value: name.to_string(),
                    span: value.span,
                    help,
                });
            }
        });
    }
    unknown
}

/// The values `location` has for `attribute` (several for tags).
fn attribute_values(location: &Location, attribute: Attribute) -> Vec<&str> {
    match attribute {
        Attribute::Region => vec![location.region.as_str()],
        Attribute::Metro => vec![location.metro.as_str()],
        Attribute::Country => vec![location.country.as_str()],
        Attribute::Location => vec![location.name.as_str()],
        Attribute::State => vec![location.state.as_str()],
        Attribute::Tag => location.tags.iter().map(String::as_str).collect(),
    }
}

/// Whether the first `[[wave]]` (the canary) selected no location and is not in `waves`.
pub fn canary_dropped(specs: &[WaveSpec], waves: &[Wave]) -> bool {
    specs
        .first()
        .is_some_and(|canary| waves.first().is_none_or(|wave| wave.base != canary.name))
}

/// `ceil(candidates × share)`, at most `candidates`.
fn share_count(candidates: usize, share: f64) -> usize {
    if share >= 1.0 {
        return candidates;
    }
    // Float products like 10 × 0.3 = 3.0000000000000004 must not round up to 4.
    let exact = candidates as f64 * share;
    let rounded = (exact - 1e-9).ceil().max(0.0);
    (rounded as usize).min(candidates)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
