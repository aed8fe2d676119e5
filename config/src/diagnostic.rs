//! Diagnostics: what is wrong, where (`file:line:column`), and how to fix it. [`Collector`]
//! gathers them with cheap [`Span`]s during parsing and validation and resolves the positions
//! once at the end; [`Diagnostics`] is the sorted result, printed one after the other.
//!
//! Diagnostics echo what they complain about, and that text comes from whoever wrote or pushed
//! the files. [`escape_text`] turns control and bidirectional-formatting characters into visible
//! escapes; messages quote values through it, and [`Collector::finish`] passes every message,
//! help line and file name through it once more, so no diagnostic can move a terminal's cursor
//! or reorder what is displayed. A run reports at most [`MAX_REPORTED_DIAGNOSTICS`] findings
//! (then one line counting the rest), so a hostile file cannot grow the report without bound.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::source::{SourceLocation, SourceMap, Span};
pub use crate::text::escape_text;

/// At most this many findings are kept per run; the rest are counted in one last line.
pub const MAX_REPORTED_DIAGNOSTICS: usize = 1000;

/// How bad a diagnostic is: errors stop a compile, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding. Displays as `file:line:column: error: message` and, when there is one,
/// `  help: how to fix it` on the next line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Option<SourceLocation>,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(formatter, "{location}: ")?;
        }
        write!(formatter, "{}: {}", self.severity, self.message)?;
        if let Some(help) = &self.help {
            write!(formatter, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// All the findings of one run, sorted by file, line and column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.items
            .iter()
            .any(|item| item.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|item| item.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|item| item.severity == Severity::Warning)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            writeln!(formatter, "{item}")?;
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        write!(formatter, "{errors} error(s), {warnings} warning(s)")
    }
}

impl std::error::Error for Diagnostics {}

/// Gathers findings with spans; [`Collector::finish`] resolves them into [`Diagnostics`].
#[derive(Debug, Default, Clone)]
pub struct Collector {
    pending: Vec<(Severity, Option<Span>, String, Option<String>)>,
    /// Findings past [`MAX_REPORTED_DIAGNOSTICS`]: counted, not kept.
    dropped_errors: usize,
    dropped_warnings: usize,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    /// An error at `span` with an optional fix.
    pub fn error(&mut self, span: Option<Span>, message: impl Into<String>, help: Option<String>) {
        if self.pending.len() >= MAX_REPORTED_DIAGNOSTICS {
            self.dropped_errors += 1;
            return;
        }
        self.pending
            .push((Severity::Error, span, message.into(), help));
    }

    /// A warning at `span` with an optional fix.
    pub fn warning(
        &mut self,
        span: Option<Span>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        if self.pending.len() >= MAX_REPORTED_DIAGNOSTICS {
            self.dropped_warnings += 1;
            return;
        }
        self.pending
            .push((Severity::Warning, span, message.into(), help));
    }

    pub fn has_errors(&self) -> bool {
        self.dropped_errors > 0
            || self
                .pending
                .iter()
                .any(|(severity, ..)| *severity == Severity::Error)
    }

    /// Whether nothing was reported.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.dropped_errors == 0 && self.dropped_warnings == 0
    }

    /// Adds `other`'s findings after this one's, as if each had been reported here in turn
    /// (those past [`MAX_REPORTED_DIAGNOSTICS`] are counted, not kept).
    pub fn append(&mut self, other: Collector) {
        for (severity, span, message, help) in other.pending {
            match severity {
                Severity::Error => self.error(span, message, help),
                Severity::Warning => self.warning(span, message, help),
            }
        }
        self.dropped_errors += other.dropped_errors;
        self.dropped_warnings += other.dropped_warnings;
    }

    /// Resolves every span and sorts by source order, then position; findings without a
    /// position come last in the order they were reported.
    pub fn finish(self, sources: &SourceMap) -> Diagnostics {
        let mut keyed: Vec<((u32, u32, u32), usize, Diagnostic)> = self
            .pending
            .into_iter()
            .enumerate()
            .map(|(order, (severity, span, message, help))| {
                let key = span.map_or((u32::MAX, 0, 0), |span| (span.source, span.start, span.end));
                let location = span.map(|span| {
                    let mut location = sources.locate(span);
                    location.file = escape_text(&location.file);
                    location
                });
                // Line breaks too are escaped: a message and its help are one line each, so a
                // quoted value cannot forge another diagnostic line.
                (
                    key,
                    order,
                    Diagnostic {
                        severity,
                        location,
                        message: escape_text(&message),
                        help: help.map(|help| escape_text(&help)),
                    },
                )
            })
            .collect();
        keyed.sort_by_key(|item| (item.0, item.1));
        let mut items: Vec<Diagnostic> = keyed.into_iter().map(|(_, _, item)| item).collect();
        if self.dropped_errors + self.dropped_warnings > 0 {
            items.push(Diagnostic {
                severity: if self.dropped_errors > 0 {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                location: None,
                message: format!(
                    "{} more error(s) and {} more warning(s) not shown (at most \
                     {MAX_REPORTED_DIAGNOSTICS} findings are reported per run)",
                    self.dropped_errors, self.dropped_warnings
                ),
                help: Some("fix the findings above and check again".into()),
            });
        }
        Diagnostics { items }
    }
}
