//! Regression: a clean-up meant for a few prefixes whose selection catches a quarter of them.
//! Un-advertising a quarter of all prefixes at once exceeds the blast radius (G4).

#![allow(clippy::unwrap_used)]

mod common;

use common::{binding, compiled, fleet, location, prefix, service};
use topologyd_topology::{Guard, GuardViolation, Intent, Override, Verdict, plan};

fn files(unadvertised: usize) -> Vec<(&'static str, String)> {
    let locations: Vec<_> = (1..=12)
        .map(|number| location(&format!("edge{number:02}"), "eu", &[], "live"))
        .collect();
    let services =
        service("web", "active", "all", "64500:1") + &service("mail", "active", "all", "64500:2");
    let mut prefixes = String::new();
    for index in 0..40 {
        let cidr = format!("198.18.{index}.0/24");
        prefixes += &prefix(&cidr, index >= unadvertised);
        prefixes += &binding(&cidr, if index % 2 == 0 { "web" } else { "mail" });
    }
    vec![
        ("fleet.toml", fleet(&locations)),
        ("services.toml", services),
        ("prefixes.toml", prefixes),
    ]
}

#[test]
fn unadvertising_a_quarter_of_all_prefixes_is_refused_by_g4() {
    let before = compiled(&files(0), 1);
    let after = compiled(&files(10), 2);
    let mut intent = Intent::default().with_service("web").with_service("mail");
    for index in 0..10 {
        intent = intent.with_override(Override::GlobalWithdrawal(
            format!("198.18.{index}.0/24").parse().unwrap(),
        ));
    }
    let result = plan(&before, &after, &intent);
    assert_eq!(
        result.verdict(),
        Verdict::Refused,
        "{}",
        result.render_text()
    );
    let violations: Vec<&GuardViolation> = result.violations.iter().collect();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(matches!(
        violations[0],
        GuardViolation::BlastRadius {
            withdrawn_pairs: 120,
            announced_pairs: 480,
            ..
        }
    ));
    assert!(
        result
            .render_text()
            .contains("G4 blast radius: reach lost: 120 of 480"),
        "{}",
        result.render_text()
    );
    for change in &result.changes {
        assert_eq!(
            change.withdrawals[0].cause,
            topologyd_topology::WithdrawalCause::AdvertiseOff
        );
    }

    // Without intent or overrides, G2 and G3 refuse as well.
    let bare = plan(&before, &after, &Intent::default());
    assert_eq!(bare.violations_of(Guard::G2).count(), 10);
    assert_eq!(bare.violations_of(Guard::G3).count(), 10);
    assert_eq!(bare.violations_of(Guard::G4).count(), 1);

    // The override lets the deliberate clean-up through.
    let allowed = plan(
        &before,
        &after,
        &intent.with_override(Override::BlastRadius),
    );
    assert_eq!(allowed.verdict(), Verdict::ChangesAllowed);
    assert_eq!(allowed.exit_code(), 2);
}

#[test]
fn unadvertising_one_prefix_everywhere_needs_explicit_overrides() {
    let before = compiled(&files(0), 1);
    let after = compiled(&files(1), 2);
    let result = plan(&before, &after, &Intent::default().with_service("web"));
    // One route of 40 withdrawn everywhere: G3 refuses it (no live location is left), and
    // only an override naming that route lifts it. One route is a well-scoped change, so G4
    // does not ask for a blast-radius override on top (that would make the override routine).
    assert_eq!(result.violations_of(Guard::G3).count(), 1);
    assert_eq!(result.violations_of(Guard::G4).count(), 0);
    let text = result.render_text();
    assert!(
        text.contains("only --override global-withdrawal:198.18.0.0/24"),
        "{text}"
    );
    let allowed = plan(
        &before,
        &after,
        &Intent::default()
            .with_service("web")
            .with_override(Override::GlobalWithdrawal("198.18.0.0/24".parse().unwrap())),
    );
    assert_eq!(
        allowed.verdict(),
        Verdict::ChangesAllowed,
        "{}",
        allowed.render_text()
    );
}
