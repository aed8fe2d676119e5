//! Entry point shared by the cargo-fuzz target `parse_selector` (`fuzz/fuzz_targets/`, nightly)
//! and the stable corpus replay (`topology/tests/fuzz_corpus_replay.rs`), so both run exactly
//! the same checks. Panics only when an invariant of this crate is broken, never because the
//! input is malformed.
//!
//! Owns: the selector parser's properties on arbitrary bytes — no panic and no deep recursion
//! (the depth and length limits hold for whatever parses), error offsets inside the text, error
//! messages free of control and bidirectional characters, and the canonical text of a parsed
//! selector parsing back to the same canonical text. Must not touch: anything stateful.

use crate::selector::{
    MAX_SELECTOR_BYTES, MAX_SELECTOR_DEPTH, Selector, is_bidirectional_control, parse_selector,
};
use crate::source::Span;

fn parse(text: &str) -> Result<Selector, crate::SelectorError> {
    parse_selector(text, &|offset, length| {
        Span::new(0, offset..offset + length)
    })
}

/// Nesting of `selector` in the parser's terms: a `not`, and a compound inside another.
fn depth(selector: &Selector) -> usize {
    match selector {
        Selector::All | Selector::None | Selector::Match { .. } => 0,
        Selector::Not(inner) => 1 + depth(inner),
        Selector::And(items) | Selector::Or(items) => items.iter().map(depth).max().unwrap_or(0),
    }
}

/// Whether `text` can be shown on a terminal as it is: no control character other than a line
/// break, no bidirectional formatting character.
pub fn is_inert(text: &str) -> bool {
    !text.chars().any(|character| {
        (character.is_control() && character != '\n') || is_bidirectional_control(character)
    })
}

/// Parses `data` (when it is UTF-8) as a selector and checks the properties above.
pub fn selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(selector) => {
            assert!(
                text.len() <= MAX_SELECTOR_BYTES,
                "accepted {} bytes",
                text.len()
            );
            assert!(
                depth(&selector) <= MAX_SELECTOR_DEPTH,
                "accepted depth {}",
                depth(&selector)
            );
            let canonical = selector.to_string();
            let mut quoted_quote = false;
            selector.for_each_value(&mut |_, value| quoted_quote |= value.value.contains('"'));
            // The canonical text double-quotes every value, so a value holding `"` (written
            // with single quotes) has no canonical text that parses; every other one must.
            if !quoted_quote && canonical.len() <= MAX_SELECTOR_BYTES {
                let again = parse(&canonical)
                    .unwrap_or_else(|failure| panic!("canonical {canonical:?}: {failure}"));
                assert_eq!(again.to_string(), canonical);
            }
        }
        Err(failure) => {
            assert!(
                failure.offset <= text.len(),
                "offset {} past the end",
                failure.offset
            );
            assert!(is_inert(&failure.message), "message {:?}", failure.message);
            if let Some(help) = &failure.help {
                assert!(is_inert(help), "help {help:?}");
            }
        }
    }
}
