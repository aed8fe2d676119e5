//! The report: a markdown table of medians per case and sender (with ratios to the blaster),
//! and the JSON file of per-run numbers, medians and methods.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::process::write_file;
use crate::run::RunResult;
use crate::{Options, Result};

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub(crate) fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

pub(crate) fn report(options: &Options, results: &[RunResult], failures: &[String]) -> Result<()> {
    let mut groups: BTreeMap<(String, String), Vec<&RunResult>> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for result in results {
        let key = (result.case.clone(), result.sender.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(result);
    }
    let summary = |key: &(String, String)| -> (f64, f64, f64, usize, &RunResult, f64) {
        let runs = &groups[key];
        (
            median(runs.iter().map(|run| run.announce_s).collect()),
            median(runs.iter().map(|run| run.withdraw_s).collect()),
            median(runs.iter().map(|run| run.peak_rss_bytes as f64).collect()),
            runs.len(),
            runs[0],
            median(
                runs.iter()
                    .map(|run| run.rss_after_announce_bytes as f64)
                    .collect(),
            ),
        )
    };
    let mut table = String::new();
    table.push_str("| case | sender | runs | announce s | × blaster | withdraw-all s | × blaster | sender peak RSS MB | peak bytes / route / peer | RSS after announce MB | bytes / route / peer | withdrawals seen |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut json_rows = Vec::new();
    for key in &order {
        let (announce, withdraw, rss, runs, first, steady) = summary(key);
        let baseline = groups
            .get(&(key.0.clone(), "blaster".to_string()))
            .map(|_| summary(&(key.0.clone(), "blaster".to_string())));
        let ratio = |value: f64, base: Option<f64>| match base {
            Some(base) if base > 0.0 => format!("{:.2}", value / base),
            _ => "—".into(),
        };
        let per_route = rss / (first.routes as f64 * first.peers as f64);
        let steady_per_route = steady / (first.routes as f64 * first.peers as f64);
        let withdrawals = median(
            groups[key]
                .iter()
                .map(|run| run.withdrawals_received as f64)
                .collect(),
        );
        let _ = writeln!(
            table,
            "| {} | {} | {runs} | {announce:.2} | {} | {withdraw:.2} | {} | {:.0} | {per_route:.0} | {:.0} | {steady_per_route:.0} | {withdrawals:.0} |",
            key.0,
            key.1,
            ratio(announce, baseline.map(|b| b.0)),
            ratio(withdraw, baseline.map(|b| b.1)),
            rss / 1e6,
            steady / 1e6
        );
        json_rows.push(format!(
            "{{\"case\":{},\"sender\":{},\"runs\":{runs},\"announce_s_median\":{announce},\"withdraw_s_median\":{withdraw},\"peak_rss_bytes_median\":{rss},\"rss_bytes_per_route_per_peer\":{per_route},\"rss_after_announce_bytes_median\":{steady},\"rss_after_announce_bytes_per_route_per_peer\":{steady_per_route},\"announce_vs_blaster\":{},\"withdraw_vs_blaster\":{},\"method\":{}}}",
            json_string(&key.0),
            json_string(&key.1),
            baseline.map_or("null".into(), |b| format!("{}", announce / b.0)),
            baseline.map_or("null".into(), |b| format!("{}", withdraw / b.1)),
            json_string(&first.method)
        ));
    }
    println!("{table}");
    for failure in failures {
        println!("FAILED: {failure}");
    }
    let runs: Vec<String> = results
        .iter()
        .map(|run| {
            format!(
                "{{\"case\":{},\"sender\":{},\"run\":{},\"peers\":{},\"routes\":{},\"announce_s\":{},\"withdraw_s\":{},\"peak_rss_bytes\":{},\"rss_after_announce_bytes\":{},\"withdraw_first_effect_s\":{},\"withdrawals_received\":{},\"session_closed_after_withdraw\":{},\"setup_s\":{}}}",
                json_string(&run.case),
                json_string(&run.sender),
                run.run,
                run.peers,
                run.routes,
                run.announce_s,
                run.withdraw_s,
                run.peak_rss_bytes,
                run.rss_after_announce_bytes,
                run.withdraw_first_effect_s,
                run.withdrawals_received,
                run.session_closed,
                run.setup_s
            )
        })
        .collect();
    let failures: Vec<String> = failures
        .iter()
        .map(|failure| json_string(failure))
        .collect();
    let json = format!(
        "{{\"ipv4\":{},\"ipv6\":{},\"multi_peers\":{},\"multi_routes\":{},\"summary\":[{}],\"runs\":[{}],\"failures\":[{}],\"markdown\":{}}}\n",
        options.ipv4,
        options.ipv6,
        options.multi_peers,
        options.multi_routes,
        json_rows.join(","),
        runs.join(","),
        failures.join(","),
        json_string(&table)
    );
    if let Some(parent) = options.out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    write_file(&options.out, &json)
}
