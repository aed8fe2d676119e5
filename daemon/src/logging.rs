//! The daemon's log output: which lines (the filter, `TOPOLOGYD_LOG`), in which format (text or
//! JSON lines: `--log-format`, `TOPOLOGYD_LOG_FORMAT`), with colours only on a terminal.
//!
//! Owns: the global `tracing` subscriber, installed once at start-up, and the JSON line format.
//! Must not touch: anything the daemon logs about; this is presentation only.
//!
//! The two variables are distinct on purpose: `TOPOLOGYD_LOG` is a filter (`info`,
//! `warn,topologyd::peer=debug`), `TOPOLOGYD_LOG_FORMAT` a format (`text`, `json`). A filter that
//! would silently hide every line — a format name such as `json`, or any bare word that is not a
//! level (a bare word selects one target and hides the rest) — is refused at start-up with what
//! to write instead.

use std::fmt;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The filter variable: which lines are written.
pub const FILTER_VARIABLE: &str = "TOPOLOGYD_LOG";
/// The format variable: `text` or `json` (`--log-format` wins over it).
pub const FORMAT_VARIABLE: &str = "TOPOLOGYD_LOG_FORMAT";
/// The filter without `TOPOLOGYD_LOG`.
pub const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event; ANSI colours only when standard error is a terminal
    /// and `NO_COLOR` is not set.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message`, the event's fields,
    /// `spans`), for journald, Loki or ELK.
    Json,
}

/// A log set-up the daemon refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoggingError {
    /// A format name where the filter goes.
    #[error(
        "{FILTER_VARIABLE}={value:?} is a log format, not a filter: it would hide every line. \
         Set {FORMAT_VARIABLE}={value} (or pass --log-format {value}) and leave {FILTER_VARIABLE} \
         unset or set to a level such as `info`"
    )]
    FormatAsFilter {
        /// The value given.
        value: String,
    },
    /// A bare word that is not a level: it selects one target and hides everything else.
    #[error(
        "{FILTER_VARIABLE}={value:?}: `{word}` is not a level (error, warn, info, debug, trace, \
         off); a bare word would select the target `{word}` and hide every other line. Write a \
         level, or `TARGET=LEVEL` such as `info,topologyd::peer=debug`"
    )]
    BareTarget {
        /// The value given.
        value: String,
        /// The offending directive.
        word: String,
    },
    /// Not a filter at all.
    #[error(
        "{FILTER_VARIABLE}={value:?} is not a valid log filter: {reason}. Write a level such as \
         `info`, or directives such as `info,topologyd::peer=debug`"
    )]
    Invalid {
        /// The value given.
        value: String,
        /// The parser's complaint.
        reason: String,
    },
}

const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
const FORMAT_NAMES: [&str; 6] = ["json", "text", "pretty", "compact", "full", "logfmt"];

/// Parses a `TOPOLOGYD_LOG` value (`None`: unset, [`DEFAULT_FILTER`]).
pub fn parse_filter(value: Option<&str>) -> Result<EnvFilter, LoggingError> {
    let value = match value.map(str::trim) {
        None | Some("") => DEFAULT_FILTER,
        Some(value) => value,
    };
    if FORMAT_NAMES.contains(&value.to_ascii_lowercase().as_str()) {
        return Err(LoggingError::FormatAsFilter {
            value: value.to_owned(),
        });
    }
    for directive in value.split(',').map(str::trim) {
        let bare = !directive.is_empty()
            && !directive.contains(['=', '[', ':'])
            && !LEVELS.contains(&directive.to_ascii_lowercase().as_str());
        if bare {
            return Err(LoggingError::BareTarget {
                value: value.to_owned(),
                word: directive.to_owned(),
            });
        }
    }
    EnvFilter::builder()
        .parse(value)
        .map_err(|error| LoggingError::Invalid {
            value: value.to_owned(),
            reason: error.to_string(),
        })
}

/// Whether text lines get ANSI colours: only on a terminal, and never with `NO_COLOR` set.
pub fn colours_wanted(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs the global subscriber, writing to standard error. The filter comes from
/// `TOPOLOGYD_LOG`; call once, before anything logs.
pub fn install(format: LogFormat) -> Result<(), LoggingError> {
    let filter_value = std::env::var(FILTER_VARIABLE).ok();
    let filter = parse_filter(filter_value.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let no_color = std::env::var("NO_COLOR").ok();
            builder
                .with_ansi(colours_wanted(
                    std::io::stderr().is_terminal(),
                    no_color.as_deref(),
                ))
                .init();
        }
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).init(),
    }
    Ok(())
}

/// Keys of a JSON line that an event field may not take (the field gets a `field.` prefix).
const RESERVED_KEYS: [&str; 4] = ["timestamp", "level", "target", "spans"];

/// The JSON line format: one object per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut object = Map::new();
        object.insert("timestamp".into(), Value::String(timestamp));
        object.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        object.insert(
            "target".into(),
            Value::String(event.metadata().target().to_owned()),
        );
        event.record(&mut JsonFields(&mut object));
        if let Some(scope) = context.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| Value::String(span.name().to_owned()))
                .collect();
            if !spans.is_empty() {
                object.insert("spans".into(), Value::Array(spans));
            }
        }
        writeln!(writer, "{}", Value::Object(object))
    }
}

/// Records an event's fields into a JSON object.
struct JsonFields<'a>(&'a mut Map<String, Value>);

impl JsonFields<'_> {
    fn insert(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let key = if RESERVED_KEYS.contains(&name) {
            format!("field.{name}")
        } else {
            name.to_owned()
        };
        self.0.insert(key, value);
    }
}

impl Visit for JsonFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.insert(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::String(value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_format_name_as_the_filter_is_refused_with_what_to_write() {
        for value in ["json", "JSON", "text"] {
            let error = parse_filter(Some(value)).unwrap_err();
            assert!(matches!(error, LoggingError::FormatAsFilter { .. }));
            assert!(error.to_string().contains(FORMAT_VARIABLE), "{error}");
        }
    }

    #[test]
    fn a_bare_word_that_is_not_a_level_is_refused() {
        let error = parse_filter(Some("info,infoo")).unwrap_err();
        assert_eq!(
            error,
            LoggingError::BareTarget {
                value: "info,infoo".into(),
                word: "infoo".into()
            }
        );
    }

    #[test]
    fn invalid_directives_are_refused_and_valid_ones_accepted() {
        assert!(matches!(
            parse_filter(Some("topologyd=loud")),
            Err(LoggingError::Invalid { .. })
        ));
        for value in [
            None,
            Some(""),
            Some("debug"),
            Some("WARN"),
            Some("info,topologyd::peer=debug"),
            Some("hyper=trace"),
            Some("off"),
        ] {
            assert!(parse_filter(value).is_ok(), "{value:?}");
        }
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours_wanted(true, None));
        assert!(colours_wanted(true, Some("")));
        assert!(!colours_wanted(true, Some("1")));
        assert!(!colours_wanted(false, None));
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_level_target_message_fields_and_spans() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("peer_task");
            let _entered = span.enter();
            tracing::warn!(
                peer = "edge1",
                attempts = 3_u64,
                level = "x",
                "cannot \"connect\""
            );
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "cannot \"connect\"");
        assert_eq!(line["peer"], "edge1");
        assert_eq!(line["attempts"], 3);
        assert_eq!(line["field.level"], "x");
        assert_eq!(line["spans"], serde_json::json!(["peer_task"]));
        assert!(line["target"].as_str().unwrap().starts_with("topologyd"));
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
    }
}
