//! Input bounds checked before any TOML parser sees a topology file, so that no input — a file on
//! disk or a bundle pushed to the daemon — can overflow a stack or make a compile allocate far
//! more than its size. Owns the limits and one cheap linear scan per file; owns no parsing.
//!
//! Why a pre-scan: the `toml` crate stops nesting at 80 levels, but only after it has lexed the
//! whole file into a token vector and an event vector (about 50 bytes per token, and every `[`
//! is a token), and its tables cost over a kilobyte each, so 20 MB of `[[[[…` or of `{a=1},`
//! costs gigabytes before the first error. The scan below counts nesting, values and tables
//! outside strings and comments in one pass (its only state is the stack of open brackets,
//! bounded by the nesting limit), and refuses a file whose parse
//! would cost more than [`PARSE_BYTES_PER_INPUT_BYTE`] times its size plus
//! [`PARSE_ALLOWANCE_BYTES`] before the parser starts.

use crate::diagnostic::Collector;
use crate::source::Span;
use crate::text::is_bidirectional_control;

/// The largest topology accepted, all files together: 256 MiB. A 300,000-binding topology is
/// about 26 MiB, the 1,000,000-binding one of the benchmarks 86 MiB, and the BGP benchmark's
/// 1,200,000 routes written one `[[prefix]]` and `[[binding]]` each 167 MiB; their prefix and
/// binding tables are read one at a time (`split`, `fast`: about 5 bytes of memory per input
/// byte). A pushed bundle is held to
/// the control API's smaller request limits as well.
pub const MAX_TOPOLOGY_BYTES: usize = 256 << 20;

/// The most locations a topology may have. A compile keeps one bitset over all locations per
/// attribute value, so memory grows with locations × distinct values; at 2,048 locations with
/// 32 distinct tags each that is under 20 MiB. (A fleet of 300 locations is large.)
pub const MAX_LOCATIONS: usize = 2048;

/// The most tags one location may carry (each distinct tag costs one bitset over all locations).
pub const MAX_TAGS_PER_LOCATION: usize = 32;

/// The longest name (location, region, metro, country, tag, service, owner, token) accepted.
pub const MAX_NAME_BYTES: usize = 255;

/// The deepest nesting of arrays, inline tables and dotted keys accepted in a topology file.
/// The topology schema needs three (`[service.health]` with a `degrade = { communities = [..] }`).
pub const MAX_TOML_NESTING: usize = 16;

/// Estimated bytes the general TOML parser (`toml` 1.x: tokens, events, its document tree)
/// allocates per `key = value`. This and the three weights below were measured with a counting
/// allocator (topology/tests/compile_memory.rs) on files made of one construct each, and rounded
/// up; that test fails if the parser starts to cost more than the estimate allows.
pub const PARSE_BYTES_PER_KEY: usize = 416;

/// Estimated bytes per further array element or inline-table entry (a `,`).
pub const PARSE_BYTES_PER_ELEMENT: usize = 176;

/// Estimated bytes per `[` (an array, or a table header).
pub const PARSE_BYTES_PER_BRACKET: usize = 416;

/// Estimated bytes per table opened by an inline `{` or by a dot in a key.
pub const PARSE_BYTES_PER_TABLE: usize = 1400;

/// A file parsed by the general TOML parser may cost at most this many times its size…
pub const PARSE_BYTES_PER_INPUT_BYTE: usize = 8;

/// …plus this allowance (32 MiB) per file, so that ordinary files fit: a fleet file of 2,048
/// locations, or up to about 5,000 `[[prefix]]` tables with `announce = { split = .. }` and
/// `roa = { .. }` in one file (the general parser costs some 45 times such a file's size).
/// The budget applies to what the general parser reads as one document: a file that parses
/// table by table (`split`) is held to it for its tables other than prefixes and bindings only;
/// a file that does not is parsed whole for its error, under the budget.
pub const PARSE_ALLOWANCE_BYTES: usize = 32 << 20;

/// Reports an error when the sources together exceed [`MAX_TOPOLOGY_BYTES`]; true when within.
pub fn check_total_size(sizes: impl Iterator<Item = usize>, collector: &mut Collector) -> bool {
    let total: usize = sizes.sum();
    if total <= MAX_TOPOLOGY_BYTES {
        return true;
    }
    collector.error(
        None,
        format!(
            "the topology is {total} bytes, more than the limit of {MAX_TOPOLOGY_BYTES} bytes \
             ({} MiB) for all files together",
            MAX_TOPOLOGY_BYTES >> 20
        ),
        Some(
            "remove what is not part of the topology; a 300,000-binding topology is about 20 MiB"
                .into(),
        ),
    );
    false
}

/// What the scan of one file found: its estimated general-parser cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// `=` signs: keys with a value.
    pub keys: usize,
    /// `,` outside strings: further array elements and inline-table entries.
    pub elements: usize,
    /// `[` outside strings: arrays and table headers.
    pub brackets: usize,
    /// `{` and dots in keys: inline and dotted tables.
    pub tables: usize,
}

impl Scan {
    /// The estimated bytes the general TOML parser allocates for this file.
    pub fn parse_cost(&self) -> usize {
        [
            (self.keys, PARSE_BYTES_PER_KEY),
            (self.elements, PARSE_BYTES_PER_ELEMENT),
            (self.brackets, PARSE_BYTES_PER_BRACKET),
            (self.tables, PARSE_BYTES_PER_TABLE),
        ]
        .into_iter()
        .fold(0usize, |total, (count, weight)| {
            total.saturating_add(count.saturating_mul(weight))
        })
    }
}

/// The most the general parser may cost on a text of `length` bytes.
pub fn parse_budget(length: usize) -> usize {
    length
        .saturating_mul(PARSE_BYTES_PER_INPUT_BYTE)
        .saturating_add(PARSE_ALLOWANCE_BYTES)
}

/// Whether the estimated parse cost of a file of `length` bytes fits its budget; reports an
/// error at the file's start when it does not.
pub fn check_parse_cost(source: u32, length: usize, scan: Scan, collector: &mut Collector) -> bool {
    let budget = parse_budget(length);
    if scan.parse_cost() <= budget {
        return true;
    }
    collector.error(
        Some(Span::new(source, 0..0)),
        format!(
            "the file holds {} keys, {} further values and {} arrays and tables in {length} \
             bytes: parsing it would take about {} MiB, more than the {} MiB allowed for a file \
             of its size",
            scan.keys,
            scan.elements,
            scan.brackets + scan.tables,
            scan.parse_cost() >> 20,
            budget >> 20
        ),
        Some(
            "move the [[prefix]] and [[binding]] tables into a file of their own: such a file \
             is read by a fast path without this budget (plain values, announce = { split = N } \
             and roa = { asn = N, max_length = N } included); a file holding other tables is \
             parsed in full and may cost at most 8 times its size plus 32 MiB"
                .into(),
        ),
    );
    false
}

/// One pass over `text`: reports (and returns `None` for) the first forbidden character — a
/// control character other than tab, line feed and carriage return, or a bidirectional
/// formatting character, anywhere, comments included — and the first place where arrays,
/// inline tables and dotted keys nest deeper than [`MAX_TOML_NESTING`]. Otherwise returns the
/// counts the parse cost is estimated from. Strings and comments are skipped as TOML defines
/// them; an unterminated one simply ends the scan of that construct (the parser reports it).
pub fn scan_file(source: u32, text: &str, collector: &mut Collector) -> Option<Scan> {
    if let Some((offset, character)) = text.char_indices().find(|(_, character)| {
        (character.is_control() && !matches!(character, '\t' | '\n' | '\r'))
            || is_bidirectional_control(*character)
    }) {
        collector.error(
            Some(Span::new(source, offset..offset + character.len_utf8())),
            format!(
                "the invisible or control character {} is not allowed in a topology file",
                character.escape_unicode()
            ),
            Some(
                "remove it: control and bidirectional-override characters can make a file \
                 display differently from what it says"
                    .into(),
            ),
        );
        return None;
    }
    let bytes = text.as_bytes();
    let mut scan = Scan {
        keys: 0,
        elements: 0,
        brackets: 0,
        tables: 0,
    };
    // Open containers: true for an array (its commas separate values), false for an inline
    // table (its commas start a new key).
    let mut containers: Vec<bool> = Vec::new();
    // Dots in the key being read (a dotted key nests one table per dot).
    let mut key_dots = 0usize;
    let mut in_key = true;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'#' => {
                index = skip_to_line_end(bytes, index);
                continue;
            }
            b'"' | b'\'' => {
                index = skip_string(bytes, index);
                continue;
            }
            b'\n' if containers.is_empty() => {
                in_key = true;
                key_dots = 0;
            }
            b'=' => {
                scan.keys += 1;
                in_key = false;
                key_dots = 0;
            }
            b',' => {
                scan.elements += 1;
                if containers.last() == Some(&false) {
                    in_key = true;
                    key_dots = 0;
                }
            }
            b'.' if in_key => {
                key_dots += 1;
                scan.tables += 1;
            }
            b'[' | b'{' => {
                if byte == b'[' {
                    scan.brackets += 1;
                } else {
                    scan.tables += 1;
                }
                // A `[` in key position opens a table header (`[a.b]`, `[[a.b]]`), whose dots
                // count like a dotted key's; one after `=` opens an array of values.
                containers.push(byte == b'[');
                in_key = byte == b'{' || in_key;
                key_dots = 0;
            }
            b']' | b'}' => {
                containers.pop();
                if containers.is_empty() && byte == b']' {
                    in_key = true;
                }
            }
            _ => {}
        }
        if containers.len() + key_dots > MAX_TOML_NESTING {
            collector.error(
                Some(Span::new(source, index..index + 1)),
                format!(
                    "arrays, inline tables and dotted keys nest deeper than {MAX_TOML_NESTING} \
                     levels here"
                ),
                Some(format!(
                    "a topology needs at most three levels; flatten the value (the limit of \
                     {MAX_TOML_NESTING} keeps parsing cheap on every input)"
                )),
            );
            return None;
        }
        index += 1;
    }
    Some(scan)
}

fn skip_to_line_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|byte| *byte == b'\n')
        .map_or(bytes.len(), |position| start + position)
}

/// The index after the string starting at `start` (basic or literal, one-line or multi-line).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let multi_line = bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote);
    let mut index = start + if multi_line { 3 } else { 1 };
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'\\' && quote == b'"' {
            index += 2;
            continue;
        }
        if byte == b'\n' && !multi_line {
            return index;
        }
        if byte == quote {
            if !multi_line {
                return index + 1;
            }
            if bytes.get(index + 1) == Some(&quote) && bytes.get(index + 2) == Some(&quote) {
                // Up to two more quotes may end a multi-line string's content.
                let mut end = index + 3;
                while end < bytes.len() && bytes[end] == quote && end < index + 5 {
                    end += 1;
                }
                return end;
            }
        }
        index += 1;
    }
    bytes.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Result<Scan, String> {
        let mut collector = Collector::new();
        let result = scan_file(0, text, &mut collector);
        let sources =
            crate::source::SourceMap::new(vec![crate::source::Source::new("t.toml", text)]);
        result.ok_or_else(|| collector.finish(&sources).to_string())
    }

    #[test]
    fn ordinary_files_pass_with_their_counts() {
        let counted = scan(
            "[[location]]\nname = \"a[b{\" # [[[\ntags = ['x', \"\"\"y]\"\"\"]\n\
             [service.health]\ndegrade = { communities = [\"1:2\"] }\n",
        )
        .unwrap();
        assert_eq!((counted.keys, counted.elements), (4, 1), "{counted:?}");
        assert_eq!((counted.brackets, counted.tables), (5, 2), "{counted:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_where_it_crosses_the_limit() {
        let error = scan(&format!("x = {}", "[".repeat(3000))).unwrap_err();
        assert!(error.starts_with("t.toml:1:21: error: arrays"), "{error}");
        let error = scan(&format!("x = {}", "{a = ".repeat(100))).unwrap_err();
        assert!(error.contains("nest deeper than 16"), "{error}");
        let error = scan(&format!("{} = 1", vec!["a"; 40].join("."))).unwrap_err();
        assert!(error.contains("nest deeper than 16"), "{error}");
        let error = scan(&format!("[{}]\n", vec!["a"; 40].join("."))).unwrap_err();
        assert!(error.contains("nest deeper than 16"), "{error}");
        // Dots in values and strings are not keys.
        scan(&format!(
            "x = [{}]\ny = \"{}\"\n",
            "1.5,".repeat(100),
            ".".repeat(100)
        ))
        .unwrap();
    }

    #[test]
    fn control_and_bidirectional_characters_are_errors_anywhere() {
        let error = scan("name = \"ok\" # \u{202E}evil\n").unwrap_err();
        assert!(error.starts_with("t.toml:1:15: error:"), "{error}");
        assert!(error.contains("\\u{202e}"), "{error}");
        assert!(!error.contains('\u{202E}'));
        let error = scan("a = 1\nname = \"\u{1b}[2J\"\n").unwrap_err();
        assert!(error.starts_with("t.toml:2:9:"), "{error}");
        for mark in [
            '\u{200E}', '\u{200F}', '\u{061C}', '\u{2066}', '\u{2069}', '\u{202A}',
        ] {
            assert!(scan(&format!("a = 'x{mark}'\n")).is_err(), "{mark:?}");
        }
        scan("a = 1\r\n\tb = 'é'\n").unwrap();
    }
}
