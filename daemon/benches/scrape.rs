//! Criterion benchmark of one `/metrics` scrape with 1,000 peers, read at scrape time by the
//! collector from the peers' status channels, against a baseline measured in the same run: the
//! same series kept as registry gauge and counter families (how they were kept before the
//! collector) and rendered. Also measured: one fold of the 1,000 peers' statuses into those
//! families, the work the engine used to do every 250 ms whether anyone scraped or not.
//!
//! Run: `cargo bench -p topologyd --bench scrape`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use topologyd::metrics::{self, Metrics};
use topologyd::peer::PeerStatus;

const PEERS: usize = 1_000;
const GENERATION: u64 = 42;

type Labels = Vec<(String, String)>;

fn status(index: usize) -> PeerStatus {
    PeerStatus {
        name: format!("edge-{index:04}"),
        state: "Established".into(),
        established: true,
        generation_synced: Some(GENERATION),
        routes_desired_ipv4: 100_000,
        routes_desired_ipv6: 20_000,
        updates_sent: 1_338,
        prefixes_announced_sent: 120_000,
        prefixes_withdrawn_sent: 7,
        updates_received: 1,
        ..PeerStatus::default()
    }
}

/// The families the per-peer series used to live in, registered as they were.
struct Families {
    registry: Registry,
    gauges: [Family<Labels, Gauge>; 4],
    counters: [Family<Labels, Counter>; 2],
}

fn families() -> Families {
    let mut registry = Registry::default();
    let gauges: [Family<Labels, Gauge>; 4] = Default::default();
    let counters: [Family<Labels, Counter>; 2] = Default::default();
    for (family, name) in gauges.iter().zip([
        metrics::SESSION_STATE,
        metrics::ROUTES_DESIRED,
        metrics::ROUTES_ANNOUNCED,
        metrics::ROUTES_UNENCODABLE,
    ]) {
        registry.register(name, "help", family.clone());
    }
    for (family, name) in counters
        .iter()
        .zip([metrics::UPDATE_MESSAGES, metrics::PREFIXES])
    {
        registry.register(name, "help", family.clone());
    }
    Families {
        registry,
        gauges,
        counters,
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

/// One fold of every peer's status into the families (what the 250 ms tick did).
fn fold(families: &Families, receivers: &[watch::Receiver<PeerStatus>]) {
    for receiver in receivers {
        let status = receiver.borrow().clone();
        let peer = status.name.as_str();
        let [state, desired, announced, unencodable] = &families.gauges;
        state.get_or_create(&labels(&[("peer", peer)])).set(6);
        unencodable.get_or_create(&labels(&[("peer", peer)])).set(0);
        for (family, routes) in [
            (metrics::FAMILY_IPV4_UNICAST, status.routes_desired_ipv4),
            (metrics::FAMILY_IPV6_UNICAST, status.routes_desired_ipv6),
        ] {
            let series = labels(&[("peer", peer), ("family", family)]);
            desired.get_or_create(&series).set(routes as i64);
            announced.get_or_create(&series).set(routes as i64);
        }
        let [updates, prefixes] = &families.counters;
        for direction in ["sent", "received"] {
            updates
                .get_or_create(&labels(&[("peer", peer), ("direction", direction)]))
                .inc_by(0);
            for kind in ["announced", "withdrawn"] {
                prefixes
                    .get_or_create(&labels(&[
                        ("peer", peer),
                        ("direction", direction),
                        ("kind", kind),
                    ]))
                    .inc_by(0);
            }
        }
    }
}

fn scrape(criterion: &mut Criterion) {
    let metrics = Metrics::new();
    metrics.set_generation(GENERATION, "sha256:bench");
    let channels: Vec<(watch::Sender<PeerStatus>, watch::Receiver<PeerStatus>)> = (0..PEERS)
        .map(|index| watch::channel(status(index)))
        .collect();
    for (index, (_, receiver)) in channels.iter().enumerate() {
        metrics.add_peer(&status(index).name, receiver.clone());
    }
    let receivers: Vec<watch::Receiver<PeerStatus>> = channels
        .iter()
        .map(|(_, receiver)| receiver.clone())
        .collect();
    let baseline = families();
    fold(&baseline, &receivers);
    let mut group = criterion.benchmark_group("scrape_1000_peers");
    group.bench_function("baseline: render the registry families", |bencher| {
        bencher.iter(|| black_box(metrics::render(&baseline.registry).map(|text| text.len())))
    });
    group.bench_function(
        "collector: read the status channels and render",
        |bencher| bencher.iter(|| black_box(metrics.render().map(|text| text.len()))),
    );
    group.bench_function("removed: one 250 ms fold into the families", |bencher| {
        bencher.iter(|| fold(&baseline, black_box(&receivers)))
    });
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
