//! The two text expositions of `/metrics` and the choice between them.
//!
//! Owns: content negotiation (the scraper's `Accept` header) and the translation of the
//! OpenMetrics 1.0 text that `prometheus_client` encodes into the classic Prometheus text format
//! 0.0.4, which every other client gets (curl, older scrapers, `promtool check metrics`).
//! Must not touch: the registry or what it holds; this is presentation only.
//!
//! The translation, family by family: a counter family is named with its `_total` suffix (the
//! classic format names a family by its samples) and its `_created` samples are dropped; an
//! `info` family becomes a gauge named with its `_info` suffix; `stateset` becomes a gauge and
//! `unknown` becomes `untyped`; `# UNIT` and `# EOF` lines are dropped; HELP keeps only the
//! escapes the classic format knows (`\\` and `\n`).

/// Content type of the OpenMetrics answer.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text answer.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which text exposition a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4.
    PrometheusText,
}

impl Exposition {
    /// Picks the exposition for an `Accept` header: OpenMetrics when the client accepts
    /// `application/openmetrics-text` at least as much as `text/plain` (Prometheus asks for it
    /// with q=1 and for the classic format with q=0.5), the classic format otherwise — also
    /// without a header or for `*/*`.
    pub fn negotiate(accept: Option<&str>) -> Exposition {
        let Some(accept) = accept else {
            return Exposition::PrometheusText;
        };
        let mut openmetrics: f32 = 0.0;
        let mut text: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|parameter| parameter.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, value)| value.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Exposition::OpenMetrics
        } else {
            Exposition::PrometheusText
        }
    }

    /// The `Content-Type` of an answer in this exposition.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Exposition::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }
}

/// Translates OpenMetrics text (as `prometheus_client` encodes it) into the classic Prometheus
/// text format 0.0.4.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // Samples of the current family with this exact name are dropped (a counter's `_created`).
    let mut dropped_sample: Option<String> = None;
    let mut pending_help: Option<(String, String)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name.to_owned(), classic_help(help)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (classic_name, classic_kind, dropped) = match kind {
                "counter" => (
                    with_suffix(name, "_total"),
                    "counter",
                    Some(format!("{name}_created")),
                ),
                "info" => (with_suffix(name, "_info"), "gauge", None),
                "stateset" => (name.to_owned(), "gauge", None),
                "unknown" => (name.to_owned(), "untyped", None),
                "gaugehistogram" => (name.to_owned(), "histogram", None),
                other => (name.to_owned(), other, None),
            };
            if let Some((help_name, help)) = pending_help.take() {
                if help_name == name {
                    out.push_str(&format!("# HELP {classic_name} {help}\n"));
                } else {
                    out.push_str(&format!("# HELP {help_name} {help}\n"));
                }
            }
            out.push_str(&format!("# TYPE {classic_name} {classic_kind}\n"));
            dropped_sample = dropped;
            continue;
        }
        if let Some((help_name, help)) = pending_help.take() {
            out.push_str(&format!("# HELP {help_name} {help}\n"));
        }
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let sample_name = line.split(['{', ' ']).next().unwrap_or("");
        // Samples already carry their suffixed names in both formats.
        if dropped_sample.as_deref() == Some(sample_name) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some((help_name, help)) = pending_help {
        out.push_str(&format!("# HELP {help_name} {help}\n"));
    }
    out
}

fn with_suffix(name: &str, suffix: &str) -> String {
    if name.ends_with(suffix) {
        name.to_owned()
    } else {
        format!("{name}{suffix}")
    }
}

/// OpenMetrics escapes `\`, newline and `"` in HELP; the classic format only the first two.
fn classic_help(help: &str) -> String {
    help.replace("\\\"", "\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_classic_text() {
        assert_eq!(
            Exposition::negotiate(Some(PROMETHEUS_ACCEPT)),
            Exposition::OpenMetrics
        );
        assert_eq!(
            Exposition::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Exposition::OpenMetrics
        );
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4"),
            Some("application/json"),
            Some("application/openmetrics-text;q=0"),
            Some("text/plain;q=1,application/openmetrics-text;q=0.5"),
        ] {
            assert_eq!(
                Exposition::negotiate(accept),
                Exposition::PrometheusText,
                "{accept:?}"
            );
        }
    }

    #[test]
    fn counters_are_named_by_their_samples_and_lose_created_and_eof() {
        let openmetrics = "# HELP topologyd_guard_refusals Routes refused by a \\\"guard\\\".\n\
            # TYPE topologyd_guard_refusals counter\n\
            topologyd_guard_refusals_total{guard=\"G2\"} 3\n\
            topologyd_guard_refusals_created{guard=\"G2\"} 1700000000.0\n\
            # HELP topologyd_apply_duration_seconds Apply latency.\n\
            # TYPE topologyd_apply_duration_seconds histogram\n\
            # UNIT topologyd_apply_duration_seconds seconds\n\
            topologyd_apply_duration_seconds_sum 0.25\n\
            topologyd_apply_duration_seconds_count 1\n\
            topologyd_apply_duration_seconds_bucket{le=\"+Inf\"} 1\n\
            # HELP topologyd_build Build.\n\
            # TYPE topologyd_build info\n\
            topologyd_build_info{version=\"1.0.0\",commit=\"abc\"} 1\n\
            # HELP topologyd_misc Misc.\n\
            # TYPE topologyd_misc unknown\n\
            topologyd_misc 2\n\
            # EOF\n";
        let classic = to_prometheus_text(openmetrics);
        assert_eq!(
            classic,
            "# HELP topologyd_guard_refusals_total Routes refused by a \"guard\".\n\
            # TYPE topologyd_guard_refusals_total counter\n\
            topologyd_guard_refusals_total{guard=\"G2\"} 3\n\
            # HELP topologyd_apply_duration_seconds Apply latency.\n\
            # TYPE topologyd_apply_duration_seconds histogram\n\
            topologyd_apply_duration_seconds_sum 0.25\n\
            topologyd_apply_duration_seconds_count 1\n\
            topologyd_apply_duration_seconds_bucket{le=\"+Inf\"} 1\n\
            # HELP topologyd_build_info Build.\n\
            # TYPE topologyd_build_info gauge\n\
            topologyd_build_info{version=\"1.0.0\",commit=\"abc\"} 1\n\
            # HELP topologyd_misc Misc.\n\
            # TYPE topologyd_misc untyped\n\
            topologyd_misc 2\n"
        );
    }
}
