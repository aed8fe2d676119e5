//! How `topoctl` shows things to people: RFC 3339 times, durations in words, aligned tables
//! (columns sized to their widest cell, `-` for nothing), and daemon text made inert for a
//! terminal. Pure functions; the commands decide what goes in them.

use topologyd_config::diagnostic::escape_text;

/// Unix seconds as an RFC 3339 UTC time (`2026-12-05T07:58:01Z`).
pub fn rfc3339(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let seconds_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3_600,
        seconds_of_day % 3_600 / 60,
        seconds_of_day % 60
    )
}

/// Unix milliseconds as an RFC 3339 UTC time with milliseconds.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let seconds = rfc3339(unix_ms / 1_000);
    format!("{}.{:03}Z", seconds.trim_end_matches('Z'), unix_ms % 1_000)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (days ≥ 0).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shifted to an era starting on 0000-03-01 so that leap days end each year.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A duration in words, largest two units: `45s`, `12m05s`, `3h07m`, `2d04h`.
pub fn duration(seconds: u64) -> String {
    let (days, hours, minutes, rest) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{hours}h{minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m{rest:02}s")
    } else {
        format!("{rest}s")
    }
}

/// The wall clock in unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// A list as `a, b, c`, or `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

/// A daemon's text made safe for a terminal: line by line, control and bidirectional characters
/// escaped (an answer may echo what a client sent, such as an intent line).
pub fn inert(text: &str) -> String {
    text.split('\n')
        .map(escape_text)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table with a header row; every column as wide as its widest cell, two spaces apart, the
/// last column not padded. Cells are made inert (they may come from a daemon).
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|title| (*title).to_string()).collect()],
        }
    }

    /// Adds a row; an empty cell shows as `-`.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|cell| {
                    if cell.is_empty() {
                        "-".to_string()
                    } else {
                        inert(&cell).replace('\n', " ")
                    }
                })
                .collect(),
        );
    }

    /// Rows besides the header.
    pub fn len(&self) -> usize {
        self.rows.len() - 1
    }

    /// No rows besides the header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(column))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let padding = widths[column].saturating_sub(cell.chars().count());
                    line.push_str(cell);
                    line.push_str(&" ".repeat(padding + 2));
                }
            }
            writeln!(formatter, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a daemon sends, what reaches the terminal has no control or bidirectional
        /// character but its line breaks, and making it inert twice changes nothing (so a
        /// command's text can be made inert whole, after its cells were).
        #[test]
        fn inert_text_has_no_control_characters_and_is_stable(text in "\\PC*|[\\x00-\\x1f\\x7f\u{202a}-\u{202e}a-z\n]*") {
            let once = inert(&text);
            prop_assert!(!once.chars().any(|character| character != '\n'
                && topologyd_config::text::is_forbidden_in_name(character)), "{once:?}");
            prop_assert_eq!(inert(&once), once.clone());
            prop_assert_eq!(once.matches('\n').count(), text.matches('\n').count());
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_921_481), "2025-12-05T07:58:01Z");
        assert_eq!(
            rfc3339_millis(1_764_921_481_007),
            "2025-12-05T07:58:01.007Z"
        );
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(725), "12m05s");
        assert_eq!(duration(11_220), "3h07m");
        assert_eq!(duration(187_200), "2d04h");
    }

    #[test]
    fn tables_align_columns_and_mark_empty_cells() {
        let mut table = Table::new(&["PEER", "STATE", "LAST ERROR"]);
        table.row(vec!["edge".into(), "Established".into(), String::new()]);
        table.row(vec![
            "core-router".into(),
            "Active".into(),
            "refused\u{1b}".into(),
        ]);
        assert_eq!(
            table.to_string(),
            "PEER         STATE        LAST ERROR\n\
             edge         Established  -\n\
             core-router  Active       refused\\u{1b}\n"
        );
    }

    proptest! {
        /// Every second maps to a valid date whose day count round-trips, and a day later is
        /// always a later text (the format sorts like time).
        #[test]
        fn rfc3339_is_a_valid_date_that_sorts_like_time(seconds in 0u64..253_402_300_799) {
            let text = rfc3339(seconds);
            let (year, month, day) = civil_from_days(seconds / 86_400);
            prop_assert!((1..=12).contains(&month));
            let month_days = match month {
                2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            prop_assert!((1..=month_days).contains(&day), "{}", text);
            prop_assert!(rfc3339(seconds + 86_400) > text);
        }
    }
}
