//! Tests of `waves.rs`.

use super::*;
use topologyd_config::fleet::{GateKind, OnStall};
use topologyd_config::{LocationState, Span, parse_selector};

fn location(name: &str, region: &str, state: LocationState, tags: &[&str]) -> Location {
    Location {
        name: name.into(),
        region: region.into(),
        metro: name[..3].to_uppercase(),
        country: "XX".into(),
        tags: tags.iter().map(|tag| (*tag).to_string()).collect(),
        state,
    }
}

fn topology() -> Vec<Location> {
    vec![
        location("ams01", "eu", LocationState::Live, &["canary"]),
        location("fra01", "eu", LocationState::Live, &[]),
        location("lhr01", "eu", LocationState::Live, &[]),
        location("ord01", "us", LocationState::Live, &[]),
        location("sfo01", "us", LocationState::Live, &[]),
        location("sin01", "ap", LocationState::Live, &[]),
        location("tst01", "eu", LocationState::Test, &[]),
    ]
}

fn spec(name: &str, select: Option<&str>, share: f64, max: Option<usize>) -> WaveSpec {
    WaveSpec {
        name: name.into(),
        select: select.map(|text| parse_selector(text, &|_, _| Span::default()).unwrap()),
        select_span: None,
        share,
        bake_seconds: 5,
        max_locations: max,
        stall_seconds: 7,
        on_stall: OnStall::Rollback,
    }
}

fn gate(name: &str, query: Option<&str>, waves: Option<Vec<&str>>) -> GateSpec {
    GateSpec {
        name: name.into(),
        kind: match query {
            Some(query) => GateKind::Promql {
                prometheus: "http://127.0.0.1:9090".into(),
                query: query.into(),
                min: Some(1.0),
                max: None,
            },
            None => GateKind::Daemon,
        },
        interval_ms: 100,
        count: 1,
        failure_limit: 1,
        inconclusive_limit: 3,
        waves: waves.map(|waves| waves.into_iter().map(String::from).collect()),
    }
}

fn names(topology: &[Location]) -> Vec<String> {
    topology
        .iter()
        .map(|location| location.name.clone())
        .collect()
}

fn plan(specs: &[WaveSpec], gates: &[GateSpec]) -> Vec<(String, Vec<String>)> {
    let topology = topology();
    let (waves, _) = assign_waves(specs, gates, &names(&topology), &topology).unwrap();
    waves
        .into_iter()
        .map(|wave| (wave.name, wave.locations))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_string()).collect()
}

#[test]
fn canary_then_region_then_the_rest() {
    let waves = plan(
        &[
            spec("canary", Some("state = 'test' or tag:canary"), 1.0, None),
            spec("eu", Some("region = 'eu'"), 1.0, None),
            spec("rest", None, 1.0, None),
        ],
        &[],
    );
    assert_eq!(
        waves,
        vec![
            ("canary".into(), strings(&["ams01", "tst01"])),
            ("eu".into(), strings(&["fra01", "lhr01"])),
            ("rest".into(), strings(&["ord01", "sfo01", "sin01"])),
        ]
    );
}

#[test]
fn share_rounds_up_and_max_locations_splits() {
    let waves = plan(
        &[
            spec("half", None, 0.5, None),
            spec("rest", None, 1.0, Some(2)),
        ],
        &[],
    );
    assert_eq!(
        waves,
        vec![
            (
                "half".into(),
                strings(&["ams01", "fra01", "lhr01", "ord01"])
            ),
            ("rest-1".into(), strings(&["sfo01", "sin01"])),
            ("rest-2".into(), strings(&["tst01"])),
        ]
    );
    assert_eq!(share_count(10, 0.3), 3);
    assert_eq!(share_count(10, 0.31), 4);
    assert_eq!(share_count(1, 0.01), 1);
    assert_eq!(share_count(0, 0.5), 0);
}

#[test]
fn every_part_of_a_split_wave_keeps_its_stall_bound() {
    let topology = topology();
    let (waves, _) = assign_waves(
        &[spec("rest", None, 1.0, Some(3))],
        &[],
        &names(&topology),
        &topology,
    )
    .unwrap();
    assert_eq!(waves.len(), 3);
    assert!(
        waves
            .iter()
            .all(|wave| wave.stall_seconds == 7 && wave.on_stall == OnStall::Rollback)
    );
    // A journal written before the stall bound existed reads with the defaults.
    let mut old = serde_json::to_value(&waves[0]).unwrap();
    let object = old.as_object_mut().unwrap();
    object.remove("stall_seconds");
    object.remove("on_stall");
    let read: Wave = serde_json::from_value(old).unwrap();
    assert_eq!(read.stall_seconds, DEFAULT_STALL_SECONDS);
    assert_eq!(read.on_stall, OnStall::Pause);
}

#[test]
fn empty_waves_are_dropped_with_a_warning_and_leftovers_are_an_error() {
    let topology = topology();
    let (waves, warnings) = assign_waves(
        &[
            spec("mars", Some("region = 'mars'"), 1.0, None),
            spec("all", Some("all"), 1.0, None),
        ],
        &[],
        &names(&topology),
        &topology,
    )
    .unwrap();
    assert_eq!(waves.len(), 1);
    assert_eq!(
        warnings,
        vec!["wave `mars` selects no location and is dropped"]
    );
    let error = assign_waves(
        &[spec("us", Some("region = 'us'"), 1.0, None)],
        &[],
        &names(&topology),
        &topology,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "5 fleet location(s) are in no wave: ams01, fra01, lhr01, sin01, tst01; add a last [[wave]] with share = 1.0"
    );
}

#[test]
fn fleet_locations_must_exist_and_unlisted_ones_are_reported() {
    let topology = topology();
    let error = assign_waves(
        &[spec("all", None, 1.0, None)],
        &[],
        &strings(&["ams01", "xyz01"]),
        &topology,
    )
    .unwrap_err();
    assert_eq!(error, WaveError::UnknownLocation("xyz01".into()));
    let (_, warnings) = assign_waves(
        &[spec("all", None, 1.0, None)],
        &[],
        &strings(&["ams01", "fra01"]),
        &topology,
    )
    .unwrap();
    assert!(warnings[0].starts_with("5 topology location(s) are not in the fleet file"));
}

#[test]
fn gates_follow_their_wave_filter_and_control_gates_need_a_control_group() {
    let topology = topology();
    let gates = [
        gate("daemon", None, None),
        gate("canary-only", None, Some(vec!["canary"])),
        gate("vs-control", Some("x{control}"), None),
    ];
    let (waves, _) = assign_waves(
        &[
            spec("canary", Some("tag:canary"), 1.0, None),
            spec("rest", None, 1.0, Some(3)),
        ],
        &gates,
        &names(&topology),
        &topology,
    )
    .unwrap();
    assert_eq!(waves[0].gates, vec![0, 1, 2]);
    assert_eq!(waves[1].name, "rest-1");
    assert_eq!(waves[1].gates, vec![0, 2]);
    let (single, _) = assign_waves(
        &[spec("everything", None, 1.0, None)],
        &gates,
        &names(&topology),
        &topology,
    )
    .unwrap();
    assert_eq!(single[0].gates, vec![0]);
    assert_eq!(single[0].skipped_gates, vec![2]);
}

#[test]
fn selector_semantics() {
    let topology = topology();
    let select = |text: &str| {
        let selector = parse_selector(text, &|_, _| Span::default()).unwrap();
        topology
            .iter()
            .filter(|location| matches(&selector, location))
            .map(|location| location.name.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        select("region in ['us', 'ap']"),
        ["ord01", "sfo01", "sin01"]
    );
    assert_eq!(
        select("not region = 'eu' and metro != 'SFO'"),
        ["ord01", "sin01"]
    );
    assert_eq!(
        select("location = 'lhr01' or tag = 'canary'"),
        ["ams01", "lhr01"]
    );
    assert_eq!(select("none"), Vec::<&str>::new());
}

/// A spec whose selector values keep their offsets inside `text` (source 0).
fn located_spec(name: &str, text: &str) -> WaveSpec {
    WaveSpec {
        name: name.into(),
        select: Some(
            parse_selector(text, &|offset, length| {
                Span::new(0, offset..offset + length)
            })
            .unwrap(),
        ),
        select_span: Some(Span::new(0, 0..text.len())),
        share: 1.0,
        bake_seconds: 5,
        max_locations: None,
        stall_seconds: DEFAULT_STALL_SECONDS,
        on_stall: OnStall::Pause,
    }
}

#[test]
fn unknown_selector_names_say_did_you_mean_at_the_value() {
    let text = "tag:canry or region = \"us\" or metro = 'AMX' or state = 'tset'";
    let specs = [
        located_spec("canary", text),
        located_spec("rest", "location in ['ord01', 'sfo1']"),
    ];
    let unknown = unknown_selector_names(&specs, &topology());
    let found: Vec<(usize, Attribute, &str, Span, &str)> = unknown
        .iter()
        .map(|item| {
            (
                item.wave,
                item.attribute,
                item.value.as_str(),
                item.span,
                item.help.as_str(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                0,
                Attribute::Tag,
                "canry",
                Span::new(0, 4..9),
                "did you mean `canary`?"
            ),
            (
                0,
                Attribute::Metro,
                "AMX",
                Span::new(0, 39..42),
                "did you mean `AMS`?"
            ),
            (
                0,
                Attribute::State,
                "tset",
                Span::new(0, 56..60),
                "states are live, offline, test and draining"
            ),
            (
                1,
                Attribute::Location,
                "sfo1",
                Span::new(0, 23..27),
                "did you mean `sfo01`?"
            ),
        ]
    );
    // Far from every known name: the known names are listed instead.
    let unknown =
        unknown_selector_names(&[located_spec("w", "region = 'antarctica'")], &topology());
    assert_eq!(unknown[0].help, "known regions: ap, eu, us");
    // Known values, `all` and `none` and no selector at all are accepted.
    let accepted = [
        located_spec(
            "a",
            "region in ['eu', 'us'] and not tag:canary or state = 'draining'",
        ),
        located_spec("b", "all"),
        located_spec("c", "none"),
        spec("d", None, 1.0, None),
    ];
    assert!(unknown_selector_names(&accepted, &topology()).is_empty());
}

#[test]
fn the_canary_is_dropped_only_when_the_first_wave_selects_nothing() {
    let topology = topology();
    let canary = spec("canary", Some("tag:nothing-has-this"), 1.0, None);
    let rest = spec("rest", None, 1.0, None);
    let (waves, warnings) = assign_waves(
        &[canary.clone(), rest.clone()],
        &[],
        &names(&topology),
        &topology,
    )
    .unwrap();
    assert!(canary_dropped(&[canary, rest.clone()], &waves));
    assert!(warnings.iter().any(|warning| warning.contains("`canary`")));
    let canary = spec("canary", Some("tag:canary"), 1.0, None);
    let (waves, _) = assign_waves(
        &[canary.clone(), rest.clone()],
        &[],
        &names(&topology),
        &topology,
    )
    .unwrap();
    assert!(!canary_dropped(&[canary.clone(), rest.clone()], &waves));
    // A split canary keeps its base name.
    let split = spec("canary", Some("region = 'eu'"), 1.0, Some(1));
    let (waves, _) =
        assign_waves(&[split.clone(), rest], &[], &names(&topology), &topology).unwrap();
    assert_eq!(waves[0].name, "canary-1");
    assert!(!canary_dropped(&[split], &waves));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const ATTRIBUTES: [&str; 6] = ["region", "metro", "country", "location", "state", "tag"];
    const STATES: [&str; 4] = ["live", "offline", "test", "draining"];
    const WORDS: [&str; 8] = ["eu", "us", "ap", "canary", "edge", "AMS", "XX", "YY"];

    fn generated_location(index: usize, pick: (usize, usize, usize, usize, bool)) -> Location {
        let (region, metro, country, state, tagged) = pick;
        Location {
            name: format!("loc{index:02}"),
            region: WORDS[region % 3].into(),
            metro: WORDS[3 + metro % 3].into(),
            country: WORDS[6 + country % 2].into(),
            tags: if tagged {
                vec![WORDS[3].into()]
            } else {
                Vec::new()
            },
            state: LocationState::parse(STATES[state % 4]).unwrap(),
        }
    }

    /// A selector leaf over names drawn from the topology's own values, typos of them, and
    /// words nothing has.
    fn leaf() -> impl Strategy<Value = String> {
        (0..ATTRIBUTES.len(), 0..12usize, 0..3usize, any::<bool>()).prop_map(
            |(attribute, word, mangle, negated)| {
                let attribute = ATTRIBUTES[attribute];
                let base = match attribute {
                    "state" => STATES[word % 4].to_string(),
                    "location" => format!("loc{:02}", word),
                    _ => WORDS[word % WORDS.len()].to_string(),
                };
                let value = match mangle {
                    0 => base,
                    1 => format!("{base}x"),
                    _ => base.chars().rev().collect(),
                };
                let operator = if negated { "!=" } else { "=" };
                format!("{attribute} {operator} '{value}'")
            },
        )
    }

    fn selector() -> impl Strategy<Value = String> {
        prop::collection::vec(leaf(), 1..4).prop_flat_map(|leaves| {
            prop::collection::vec(any::<bool>(), leaves.len()).prop_map(move |joins| {
                let mut text = leaves[0].clone();
                for (leaf, and) in leaves.iter().zip(joins).skip(1) {
                    text += if and { " and " } else { " or " };
                    text += leaf;
                }
                text
            })
        })
    }

    proptest! {
        /// A selector the validator accepts names only values some location has, and never
        /// makes wave assignment fail for the names that exist.
        #[test]
        fn accepted_selectors_never_fail_wave_assignment(
            picks in prop::collection::vec(
                (0..3usize, 0..3usize, 0..2usize, 0..4usize, any::<bool>()),
                1..10,
            ),
            first in selector(),
            second in selector(),
        ) {
            let topology: Vec<Location> = picks
                .into_iter()
                .enumerate()
                .map(|(index, pick)| generated_location(index, pick))
                .collect();
            let specs = [
                located_spec("canary", &first),
                located_spec("middle", &second),
                spec("rest", None, 1.0, None),
            ];
            let unknown = unknown_selector_names(&specs, &topology);
            for spec in &specs {
                if let Some(select) = &spec.select {
                    select.for_each_value(&mut |attribute, value| {
                        let rejected = unknown
                            .iter()
                            .any(|item| item.attribute == attribute && item.value == value.value);
                        let exists = attribute == Attribute::State
                            && LocationState::parse(&value.value).is_some()
                            || topology.iter().any(|location| {
                                attribute_values(location, attribute).contains(&value.value.as_str())
                            });
                        assert_eq!(rejected, !exists, "{attribute:?} {:?}", value.value);
                    });
                }
            }
            if unknown.is_empty() {
                let result = assign_waves(&specs, &[], &names(&topology), &topology);
                prop_assert!(result.is_ok(), "{result:?}");
                let (waves, _) = result.unwrap();
                let assigned: usize = waves.iter().map(|wave| wave.locations.len()).sum();
                prop_assert_eq!(assigned, topology.len());
            }
        }
    }
}
