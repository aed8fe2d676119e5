//! BYOIP evidence figures (`cargo bench -p topologyd-harness --bench evidence`):
//!
//! - compiling a topology of 10,000 customer prefixes, each with its `[prefix.evidence]`, with
//!   G6 on (`[settings.onboarding]`) against the same text with G6 off (the baseline: same
//!   parse, no verification), and against the text without evidence tables (what the line
//!   scanner's fall-back to the per-table read costs), and the same pushed again onto the
//!   running generation (`compile_against`, as a daemon compiles a push);
//! - Ed25519 verification of 10,000 pieces of evidence one by one and in one batch;
//! - `topoctl prefix verify` of 1,000 onboarded prefixes with the network checks left out (this
//!   build's placeholders answer at once): the store, the ROA check and the bounded concurrency.
//!
//! The machine is shared and noisy: each figure is also given as a ratio to its baseline,
//! measured in the same run.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use topoctl::onboard::command::{OnboardRequest, issue};
use topoctl::onboard::settings::OnboardingSettings;
use topoctl::onboard::store::OnboardingStore;
use topoctl::onboard::verify::{VrpInput, now_unix, verify_many};
use topologyd_config::Source;
use topologyd_ownership::evidence::{
    EvidenceClaim, EvidenceKeys, Prepared, key_text, signing_key, verify_all,
};
use topologyd_ownership::{CheckKind, token::token_digest};

const PREFIXES: usize = 10_000;
const VERIFIED: usize = 1_000;

fn cidr(index: usize) -> String {
    format!("10.{}.{}.0/24", index / 256, index % 256)
}

/// The topology text: one service, `PREFIXES` customer prefixes with bindings; with evidence
/// tables when `evidence`, with `[settings.onboarding]` when `onboarding`.
fn topology(evidence: bool, onboarding: bool) -> Vec<Source> {
    let key = signing_key([7; 32]);
    let mut text = String::new();
    if onboarding {
        let _ = writeln!(
            text,
            "[settings.onboarding]\noperator_owner = \"operator\"\nevidence_keys = [\"{}\"]\n",
            key_text(&key.verifying_key())
        );
    }
    for index in 0..PREFIXES {
        let owner = format!("customer-{index}");
        let _ = writeln!(
            text,
            "[[prefix]]\ncidr = \"{}\"\norigin_asn = 64500\nowner = \"{owner}\"\nadvertise = true\n",
            cidr(index)
        );
        if evidence {
            let signed = EvidenceClaim {
                prefix: cidr(index).parse().unwrap(),
                owner,
                origin_asn: 64500,
                longest_announced: 24,
                token_sha256: token_digest(&format!("token-{index}")),
                checks: vec![CheckKind::Rdns, CheckKind::Roa],
                verified_at_unix: 1_764_936_000,
            }
            .sign(&key);
            let entry = signed.topology_entry(true);
            let _ = writeln!(
                text,
                "[prefix.evidence]{}",
                entry.split("[prefix.evidence]").nth(1).unwrap()
            );
        }
        let _ = writeln!(
            text,
            "[[binding]]\ncidr = \"{}\"\nservice = \"web\"\n",
            cidr(index)
        );
    }
    vec![
        Source::new(
            "fleet.toml",
            "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\n[[service]]\nname = \"web\"\ntopology = \"all\"\n",
        ),
        Source::new("prefixes.toml", text),
    ]
}

/// The best of `rounds` runs of `work`.
fn best(rounds: usize, mut work: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn compile_figures() {
    let plain = topology(false, false);
    let off = topology(true, false);
    let on = topology(true, true);
    let compile = |sources: &Vec<Source>| {
        topologyd_topology::compile(sources, 1).unwrap();
    };
    let baseline = best(3, || compile(&off));
    let g6 = best(3, || compile(&on));
    let without_tables = best(3, || compile(&plain));
    println!(
        "compile {PREFIXES} customer prefixes with evidence: G6 off {:.1} ms (baseline), G6 on {:.1} ms ({:.2}x; {:.1} µs per prefix)",
        baseline.as_secs_f64() * 1e3,
        g6.as_secs_f64() * 1e3,
        g6.as_secs_f64() / baseline.as_secs_f64(),
        (g6.saturating_sub(baseline)).as_secs_f64() * 1e6 / PREFIXES as f64
    );
    let running_off = topologyd_topology::compile(&off, 1).unwrap();
    let running_on = topologyd_topology::compile(&on, 1).unwrap();
    let push_off = best(3, || {
        topologyd_topology::compile_against(off.clone(), 2, &running_off).unwrap();
    });
    let push_on = best(3, || {
        topologyd_topology::compile_against(on.clone(), 2, &running_on).unwrap();
    });
    println!(
        "  pushed again onto the running generation (compile_against): G6 off {:.1} ms (baseline), G6 on {:.1} ms ({:.2}x: unchanged evidence is not verified again)",
        push_off.as_secs_f64() * 1e3,
        push_on.as_secs_f64() * 1e3,
        push_on.as_secs_f64() / push_off.as_secs_f64()
    );
    println!(
        "  the same prefixes without evidence tables: {:.1} ms (evidence tables cost {:.2}x of that)",
        without_tables.as_secs_f64() * 1e3,
        baseline.as_secs_f64() / without_tables.as_secs_f64()
    );
}

fn verification_figures() {
    let key = signing_key([7; 32]);
    let keys = EvidenceKeys::parse([key_text(&key.verifying_key()).as_str()]).unwrap();
    let items: Vec<Prepared> = (0..PREFIXES)
        .map(|index| {
            let prefix = cidr(index).parse().unwrap();
            let owner = format!("customer-{index}");
            let signed = EvidenceClaim {
                prefix,
                owner: owner.clone(),
                origin_asn: 64500,
                longest_announced: 24,
                token_sha256: token_digest(&format!("token-{index}")),
                checks: vec![CheckKind::Rdns, CheckKind::Roa],
                verified_at_unix: 1,
            }
            .sign(&key);
            let names = signed.check_names();
            keys.prepare(prefix, &owner, 64500, signed.written(&names))
                .unwrap()
        })
        .collect();
    let single = best(3, || {
        for item in &items {
            assert!(verify_all(std::slice::from_ref(item))[0].is_ok());
        }
    });
    let batch = best(3, || assert!(verify_all(&items).iter().all(Result::is_ok)));
    println!(
        "verify {PREFIXES} signatures: one by one {:.1} ms (baseline), one batch {:.1} ms ({:.2}x)",
        single.as_secs_f64() * 1e3,
        batch.as_secs_f64() * 1e3,
        batch.as_secs_f64() / single.as_secs_f64()
    );
}

fn pipeline_figures() {
    let directory = tempfile::tempdir().unwrap();
    let settings = OnboardingSettings::parse(
        "operator_asn = 64500\noperator_owner = \"operator\"\nsigning_key = \"k\"\nstore = \"s.redb\"\nconcurrency = 16\n[rdns]\nnameservers = [\"127.0.0.1:53\"]\n[irr]\nserver = \"127.0.0.1:43\"\nsources = [\"TEST\"]\n",
        directory.path(),
    )
    .unwrap();
    let store = OnboardingStore::open(&settings.store).unwrap();
    let now = now_unix();
    let started = Instant::now();
    let prefixes: Vec<ipnet::IpNet> = (0..VERIFIED)
        .map(|index| {
            let request = OnboardRequest {
                cidr: cidr(index).parse().unwrap(),
                owner: format!("customer-{index}"),
                origin_asn: 64500,
                split: None,
                irr_source: "TEST".into(),
            };
            issue(&settings, &store, &request, now)
                .unwrap()
                .token
                .prefix
        })
        .collect();
    let onboard = started.elapsed();
    let vrps = VrpInput {
        vrps: Some(
            prefixes
                .iter()
                .map(|prefix| topologyd_rpki::Vrp {
                    prefix: *prefix,
                    max_length: 24,
                    asn: 64500,
                })
                .collect(),
        ),
        source: "bench".into(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let outcomes = runtime.block_on(verify_many(
        Arc::new(settings),
        Arc::new(store),
        Arc::new(signing_key([7; 32])),
        Arc::new(vrps),
        prefixes,
    ));
    let verify = started.elapsed();
    assert_eq!(outcomes.len(), VERIFIED);
    println!(
        "onboard {VERIFIED} prefixes {:.0} ms (baseline: one store transaction each); verify them without network checks {:.0} ms ({:.2}x)",
        onboard.as_secs_f64() * 1e3,
        verify.as_secs_f64() * 1e3,
        verify.as_secs_f64() / onboard.as_secs_f64()
    );
}

fn main() {
    compile_figures();
    verification_figures();
    pipeline_figures();
}
