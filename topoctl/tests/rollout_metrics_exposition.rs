//! The rollout controller's `/metrics` (served by the daemon's admin server, so negotiated the
//! same way): its classic text exposition passes the real `promtool check metrics` (Debian's
//! prometheus package) with no complaint, and the OpenMetrics one is complete (`# EOF`).

use std::io::Write;
use std::process::{Command, Stdio};

use topoctl::rollout::progress::RolloutMetrics;
use topologyd::metrics::exposition::Exposition;
use topologyd::metrics::render_as;

#[test]
fn the_rollout_metrics_pass_promtool_in_the_classic_format() {
    let metrics = RolloutMetrics::new();
    let registry = metrics.registry();
    let classic = render_as(&registry, Exposition::PrometheusText)
        .unwrap_or_else(|error| panic!("render: {error}"));
    assert!(
        classic.contains("# TYPE topoctl_rollout_state gauge"),
        "{classic}"
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("promtool (Debian package prometheus): {error}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(classic.as_bytes())
            .unwrap_or_else(|error| panic!("feeding promtool: {error}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("promtool: {error}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics complained:\n{said}\non:\n{classic}"
    );
    let openmetrics = render_as(&registry, Exposition::OpenMetrics)
        .unwrap_or_else(|error| panic!("render: {error}"));
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
}
