//! The fleet phase of the compiler: locations sorted by name and de-duplicated, their live and
//! test sets, the per-attribute index selectors are evaluated against, and the warning about
//! attribute values that differ only in case.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use topologyd_config::{Attribute, Collector, Located, LocationState, RawTopology, Selector};

use super::deduplicate_definitions;
use crate::location_set::LocationSet;
use crate::model::Location;

/// The compiled locations and what the later phases look up in them.
#[derive(Debug)]
pub(super) struct Fleet {
    /// Sorted by name.
    pub(super) locations: Arc<Vec<Location>>,
    pub(super) location_index: Arc<HashMap<String, u32>>,
    pub(super) live: LocationSet,
    pub(super) test: LocationSet,
    pub(super) attribute_index: AttributeIndex,
}

/// Location sets per attribute value, for evaluating selectors as bitset algebra. Keyed by
/// attribute, then value, so that a lookup borrows the value (a selector's values are looked
/// up once per service at every compile).
#[derive(Debug)]
pub(super) struct AttributeIndex {
    capacity: usize,
    by_attribute: HashMap<Attribute, HashMap<String, LocationSet>>,
}

impl AttributeIndex {
    fn new(locations: &[Location]) -> AttributeIndex {
        let capacity = locations.len();
        let mut by_attribute: HashMap<Attribute, HashMap<String, LocationSet>> = HashMap::new();
        let mut add = |attribute, value: &str, index| {
            let values = by_attribute.entry(attribute).or_default();
            match values.get_mut(value) {
                Some(members) => members.insert(index),
                None => {
                    let mut members = LocationSet::empty(capacity);
                    members.insert(index);
                    values.insert(value.to_string(), members);
                }
            }
        };
        for (index, location) in locations.iter().enumerate() {
            add(Attribute::Location, &location.name, index);
            add(Attribute::Region, &location.region, index);
            add(Attribute::Metro, &location.metro, index);
            add(Attribute::Country, &location.country, index);
            add(Attribute::State, location.state.as_str(), index);
            for tag in &location.tags {
                add(Attribute::Tag, tag, index);
            }
        }
        AttributeIndex {
            capacity,
            by_attribute,
        }
    }

    pub(super) fn known(&self, attribute: Attribute) -> impl Iterator<Item = &str> + Clone {
        self.by_attribute
            .get(&attribute)
            .into_iter()
            .flat_map(|values| values.keys().map(String::as_str))
    }

    /// The locations whose `attribute` is `value`.
    pub(super) fn members(&self, attribute: Attribute, value: &str) -> Option<&LocationSet> {
        self.by_attribute.get(&attribute)?.get(value)
    }

    pub(super) fn evaluate(&self, selector: &Selector) -> LocationSet {
        match selector {
            Selector::All => LocationSet::full(self.capacity),
            Selector::None => LocationSet::empty(self.capacity),
            Selector::Match {
                attribute,
                values,
                negated,
            } => {
                let mut set = LocationSet::empty(self.capacity);
                for value in values {
                    if let Some(members) = self.members(*attribute, &value.value) {
                        set.union_with(members);
                    }
                }
                if *negated {
                    LocationSet::full(self.capacity).difference(&set)
                } else {
                    set
                }
            }
            Selector::Not(inner) => {
                LocationSet::full(self.capacity).difference(&self.evaluate(inner))
            }
            Selector::And(items) => items
                .iter()
                .fold(LocationSet::full(self.capacity), |set, item| {
                    set.intersection(&self.evaluate(item))
                }),
            Selector::Or(items) => items
                .iter()
                .fold(LocationSet::empty(self.capacity), |set, item| {
                    set.union(&self.evaluate(item))
                }),
        }
    }
}

/// Locations: sorted, de-duplicated (every later duplicate is an error), indexed.
pub(super) fn compile_locations(raw: &RawTopology, collector: &mut Collector) -> Fleet {
    let sources = &raw.sources;
    // Locations.
    let location_order = deduplicate_definitions(&raw.locations, "location", sources, collector);
    let locations: Vec<Location> = location_order
        .iter()
        .map(|index| {
            let raw_location = &raw.locations[*index];
            let mut tags: Vec<String> = raw_location
                .tags
                .iter()
                .map(|tag| tag.value.clone())
                .collect();
            tags.sort_unstable();
            tags.dedup();
            Location {
                name: raw_location.name.value.clone(),
                region: raw_location.region.value.clone(),
                metro: raw_location.metro.value.clone(),
                country: raw_location.country.value.clone(),
                tags,
                state: raw_location.state.value,
            }
        })
        .collect();
    let location_index: HashMap<String, u32> = locations
        .iter()
        .enumerate()
        .map(|(index, location)| (location.name.clone(), index as u32))
        .collect();
    let capacity = locations.len();
    let mut live = LocationSet::empty(capacity);
    let mut test = LocationSet::empty(capacity);
    for (index, location) in locations.iter().enumerate() {
        match location.state {
            LocationState::Live => live.insert(index),
            LocationState::Test => test.insert(index),
            LocationState::Offline | LocationState::Draining => {}
        }
    }
    let attribute_index = AttributeIndex::new(&locations);
    warn_case_variants(raw, &location_order, collector);
    super::warn_names_differing_in_case(&raw.locations, "location", sources, collector);

    Fleet {
        locations: Arc::new(locations),
        location_index: Arc::new(location_index),
        live,
        test,
        attribute_index,
    }
}

/// Warns about location attribute values that differ only in case (`eu` and `EU`): selectors
/// compare exactly, so one of them is almost certainly a slip that silently changes what a
/// selector matches. Reported at the first use of each less common spelling.
fn warn_case_variants(raw: &RawTopology, location_order: &[usize], collector: &mut Collector) {
    type Field = fn(&topologyd_config::RawLocation) -> Vec<&Located<String>>;
    let fields: [(&str, Field); 4] = [
        ("region", |location| vec![&location.region]),
        ("metro", |location| vec![&location.metro]),
        ("country", |location| vec![&location.country]),
        ("tag", |location| location.tags.iter().collect()),
    ];
    for (attribute, values_of) in fields {
        // lower-cased value -> spelling -> (uses, first use)
        let mut spellings: BTreeMap<String, BTreeMap<&str, (usize, &Located<String>)>> =
            BTreeMap::new();
        for index in location_order {
            for value in values_of(&raw.locations[*index]) {
                let entry = spellings
                    .entry(value.value.to_lowercase())
                    .or_default()
                    .entry(value.value.as_str())
                    .or_insert((0, value));
                entry.0 += 1;
            }
        }
        for variants in spellings.values().filter(|variants| variants.len() > 1) {
            let Some((common, (common_uses, _))) =
                variants.iter().max_by_key(|(_, (uses, _))| *uses)
            else {
                continue;
            };
            for (spelling, (uses, first)) in variants {
                if spelling == common {
                    continue;
                }
                collector.warning(
                    Some(first.span),
                    format!(
                        "{attribute} `{}` ({uses} location(s)) differs only in case from `{}` ({common_uses} location(s)); selectors compare exactly, so they select different locations",
                        spelling.escape_debug(),
                        common.escape_debug()
                    ),
                    Some(format!("write `{}` if it is the same {attribute}", common.escape_debug())),
                );
            }
        }
    }
}
