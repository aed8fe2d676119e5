//! Characters that must not reach a terminal as they are: control characters, Unicode
//! bidirectional formatting characters and characters that print as nothing. Owns their
//! classification ([`is_forbidden_in_name`], [`is_invisible`], [`is_bidirectional_control`]) and
//! [`escape_text`], which writes them as visible escapes. A leaf: every module that checks or
//! echoes text (selectors, names, diagnostics, the size and character pre-scan) uses it.

/// `text` with every control character and every bidirectional-formatting character written as
/// a Rust escape (`\n`, `\u{1b}`, `\u{202e}`); everything else, including non-ASCII letters, is
/// kept as is.
pub fn escape_text(text: &str) -> String {
    if !text.chars().any(is_forbidden_in_name) {
        return text.to_string();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if is_invisible(character) {
            // `escape_debug` prints some of these as they are (U+00AD).
            escaped.extend(character.escape_unicode());
        } else if is_forbidden_in_name(character) {
            escaped.extend(character.escape_debug());
        } else {
            escaped.push(character);
        }
    }
    escaped
}

/// Whether `character` may not appear in a name, a tag or a selector value: a control
/// character, or a Unicode bidirectional override, isolate or mark, which can make text display
/// differently from what it is (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C).
pub fn is_forbidden_in_name(character: char) -> bool {
    character.is_control() || is_bidirectional_control(character) || is_invisible(character)
}

/// Characters that print as nothing or as a line break: zero-width space, non-joiner and
/// joiner (U+200B–U+200D), word joiner (U+2060), the byte-order mark (U+FEFF), soft hyphen
/// (U+00AD), Mongolian vowel separator (U+180E), and the line and paragraph separators
/// (U+2028, U+2029). In a name they make two names look alike (`cdn` and `cdn` + U+200B).
pub fn is_invisible(character: char) -> bool {
    matches!(
        character,
        '\u{200B}'
            ..='\u{200D}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{00AD}'
                | '\u{180E}'
                | '\u{2028}'
                | '\u{2029}'
    )
}

/// Unicode bidirectional formatting characters: embeddings and overrides (U+202A–U+202E),
/// isolates (U+2066–U+2069) and the left-to-right, right-to-left and Arabic letter marks
/// (U+200E, U+200F, U+061C).
pub fn is_bidirectional_control(character: char) -> bool {
    matches!(
        character,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}
