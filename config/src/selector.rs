//! Service topology selectors: the AST ([`Selector`]) and its parser.
//!
//! Hand-written recursive descent rather than a parser crate: the grammar is a dozen rules, no
//! crate in the tree maps its errors back to a column inside a TOML string, and the errors must
//! point at the offending token of the expression (`services.toml:7:24`), not at the whole value.
//! Owns the syntax only; whether a region, tag or location exists is checked by the topology
//! compiler against the fleet.
//!
//! Grammar (keywords are lower case; strings use double or single quotes and have no escapes):
//!
//! ```text
//! expression := conjunction ( "or" conjunction )*
//! conjunction := negation ( "and" negation )*
//! negation   := "not" negation | primary
//! primary    := "(" expression ")" | "all" | "none"
//!             | attribute ( "=" | "!=" ) string
//!             | attribute "in" "[" string ( "," string )* [","] "]"
//!             | "tag:" name                      (shorthand for tag = "name")
//! attribute  := "region" | "metro" | "country" | "location" | "state" | "tag"
//! ```
//!
//! Bounded on every input: an expression longer than [`MAX_SELECTOR_BYTES`] or nested deeper
//! than [`MAX_SELECTOR_DEPTH`] (parentheses and `not` both count) is an error at the byte where
//! the limit is crossed, so the recursion below never runs deeper than the limit, whatever a
//! pushed bundle contains. Control characters and bidirectional-override characters are errors
//! too, and every error message escapes what it quotes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::source::Span;
use crate::text::escape_text;
pub use crate::text::{is_bidirectional_control, is_forbidden_in_name, is_invisible};

/// The longest selector expression accepted, in bytes. A real topology selector is a line or
/// two; this bound keeps the token list and the parse of a hostile bundle small.
pub const MAX_SELECTOR_BYTES: usize = 4096;

/// The deepest nesting accepted: every `(` and every `not` opens one level. The parser recurses
/// once or a few times per level, so this bounds its stack use on every thread (the daemon
/// compiles pushes on small-stack worker threads).
pub const MAX_SELECTOR_DEPTH: usize = 64;

/// A location attribute a selector can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attribute {
    Region,
    Metro,
    Country,
    Location,
    State,
    Tag,
}

impl Attribute {
    pub fn keyword(self) -> &'static str {
        match self {
            Attribute::Region => "region",
            Attribute::Metro => "metro",
            Attribute::Country => "country",
            Attribute::Location => "location",
            Attribute::State => "state",
            Attribute::Tag => "tag",
        }
    }

    fn from_keyword(word: &str) -> Option<Attribute> {
        Some(match word {
            "region" => Attribute::Region,
            "metro" => Attribute::Metro,
            "country" => Attribute::Country,
            "location" => Attribute::Location,
            "state" => Attribute::State,
            "tag" => Attribute::Tag,
            _ => return None,
        })
    }
}

/// A literal inside a selector, with the span of its text in the TOML source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectorValue {
    pub value: String,
    #[serde(skip)]
    pub span: Span,
}

/// A parsed topology selector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// Every location.
    All,
    /// No location.
    None,
    /// `attribute = "v"` (one value) or `attribute in [..]` (any of the values); `negated` for `!=`.
    Match {
        attribute: Attribute,
        values: Vec<SelectorValue>,
        negated: bool,
    },
    Not(Box<Selector>),
    And(Vec<Selector>),
    Or(Vec<Selector>),
}

impl Selector {
    /// Whether the selector selects one location, evaluated at that location alone: `has`
    /// answers whether the location's `attribute` is `value` (for tags: includes it). The
    /// compile evaluates selectors over the whole fleet at once, as bitsets; this is the
    /// rollout's wave assignment, and the tests' reference.
    pub fn selects(&self, has: &dyn Fn(Attribute, &str) -> bool) -> bool {
        match self {
            Selector::All => true,
            Selector::None => false,
            Selector::Match {
                attribute,
                values,
                negated,
            } => values.iter().any(|value| has(*attribute, &value.value)) != *negated,
            Selector::Not(inner) => !inner.selects(has),
            Selector::And(items) => items.iter().all(|item| item.selects(has)),
            Selector::Or(items) => items.iter().any(|item| item.selects(has)),
        }
    }

    /// Visits every literal with its attribute (for reference checks).
    pub fn for_each_value(&self, visit: &mut dyn FnMut(Attribute, &SelectorValue)) {
        match self {
            Selector::All | Selector::None => {}
            Selector::Match {
                attribute, values, ..
            } => values.iter().for_each(|value| visit(*attribute, value)),
            Selector::Not(inner) => inner.for_each_value(visit),
            Selector::And(items) | Selector::Or(items) => {
                items.iter().for_each(|item| item.for_each_value(visit));
            }
        }
    }
}

/// Canonical text: fully parenthesised compound expressions, double-quoted values. Used for
/// hashing and display, so formatting differences in the source do not matter.
impl fmt::Display for Selector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => formatter.write_str("all"),
            Selector::None => formatter.write_str("none"),
            Selector::Match {
                attribute,
                values,
                negated,
            } => {
                if let [single] = values.as_slice() {
                    let operator = if *negated { "!=" } else { "=" };
                    write!(
                        formatter,
                        "{} {operator} \"{}\"",
                        attribute.keyword(),
                        single.value
                    )
                } else {
                    if *negated {
                        formatter.write_str("not ")?;
                    }
                    write!(formatter, "{} in [", attribute.keyword())?;
                    for (index, value) in values.iter().enumerate() {
                        if index > 0 {
                            formatter.write_str(", ")?;
                        }
                        write!(formatter, "\"{}\"", value.value)?;
                    }
                    formatter.write_str("]")
                }
            }
            Selector::Not(inner) => write!(formatter, "not {inner}"),
            Selector::And(items) | Selector::Or(items) => {
                let joiner = if matches!(self, Selector::And(_)) {
                    " and "
                } else {
                    " or "
                };
                formatter.write_str("(")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str(joiner)?;
                    }
                    write!(formatter, "{item}")?;
                }
                formatter.write_str(")")
            }
        }
    }
}

/// A syntax error at byte `offset` of the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    pub offset: usize,
    pub length: usize,
    pub message: String,
    pub help: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    String(&'a str),
    Equals,
    NotEquals,
    Colon,
    Comma,
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    End,
}

fn describe(token: &Token<'_>) -> String {
    match token {
        Token::Word(word) => format!("`{word}`"),
        Token::String(text) => format!("the string \"{}\"", escape_text(text)),
        Token::Equals => "`=`".into(),
        Token::NotEquals => "`!=`".into(),
        Token::Colon => "`:`".into(),
        Token::Comma => "`,`".into(),
        Token::OpenParen => "`(`".into(),
        Token::CloseParen => "`)`".into(),
        Token::OpenBracket => "`[`".into(),
        Token::CloseBracket => "`]`".into(),
        Token::End => "the end of the expression".into(),
    }
}

fn error(offset: usize, length: usize, message: String, help: Option<&str>) -> SelectorError {
    SelectorError {
        offset,
        length: length.max(1),
        message,
        help: help.map(str::to_string),
    }
}

/// (token, byte offset, byte length)
fn tokenize(text: &str) -> Result<Vec<(Token<'_>, usize, usize)>, SelectorError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let single = |token| (token, index, 1);
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {
                index += 1;
                continue;
            }
            b'=' => tokens.push(single(Token::Equals)),
            b':' => tokens.push(single(Token::Colon)),
            b',' => tokens.push(single(Token::Comma)),
            b'(' => tokens.push(single(Token::OpenParen)),
            b')' => tokens.push(single(Token::CloseParen)),
            b'[' => tokens.push(single(Token::OpenBracket)),
            b']' => tokens.push(single(Token::CloseBracket)),
            b'!' if bytes.get(index + 1) == Some(&b'=') => {
                tokens.push((Token::NotEquals, index, 2));
                index += 2;
                continue;
            }
            b'"' | b'\'' => {
                let close = text[index + 1..].find(byte as char).ok_or_else(|| {
                    error(
                        index,
                        text.len() - index,
                        "unterminated string in selector".into(),
                        Some("close the string with the same quote it opens with"),
                    )
                })?;
                let content = &text[index + 1..index + 1 + close];
                if let Some((position, character)) = content
                    .char_indices()
                    .find(|(_, character)| is_forbidden_in_name(*character))
                {
                    return Err(error(
                        index + 1 + position,
                        character.len_utf8(),
                        format!(
                            "selector value \"{}\" contains the invisible or control character {}",
                            escape_text(content),
                            character.escape_unicode()
                        ),
                        Some("remove the character; names are plain text"),
                    ));
                }
                tokens.push((Token::String(content), index, close + 2));
                index += close + 2;
                continue;
            }
            _ if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || byte == b'.' => {
                let length = bytes[index..]
                    .iter()
                    .take_while(|byte| {
                        byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')
                    })
                    .count();
                tokens.push((Token::Word(&text[index..index + length]), index, length));
                index += length;
                continue;
            }
            _ => {
                let character = text[index..].chars().next().unwrap_or('?');
                return Err(error(
                    index,
                    character.len_utf8(),
                    format!(
                        "unexpected character `{}` in selector",
                        character.escape_debug()
                    ),
                    Some("selectors use words, quoted strings, =, !=, in [..], and, or, not, ( )"),
                ));
            }
        }
        index += 1;
    }
    tokens.push((Token::End, text.len(), 1));
    Ok(tokens)
}

struct Parser<'a, 'l> {
    tokens: Vec<(Token<'a>, usize, usize)>,
    position: usize,
    /// Open levels (`(` and `not`) around the current token; at most [`MAX_SELECTOR_DEPTH`].
    depth: usize,
    locate: &'l dyn Fn(usize, usize) -> Span,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> &(Token<'a>, usize, usize) {
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[self.position.min(last)]
    }

    fn advance(&mut self) -> (Token<'a>, usize, usize) {
        let token = self.peek().clone();
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn unexpected(&self, expected: &str, help: Option<&str>) -> SelectorError {
        let (token, offset, length) = self.peek();
        error(
            *offset,
            *length,
            format!("expected {expected}, found {}", describe(token)),
            help,
        )
    }

    /// Opens one nesting level at the current token (a `(` or a `not`), or fails there when it
    /// would cross [`MAX_SELECTOR_DEPTH`].
    fn enter(&mut self) -> Result<(), SelectorError> {
        if self.depth >= MAX_SELECTOR_DEPTH {
            let (_, offset, length) = self.peek();
            return Err(error(
                *offset,
                *length,
                format!(
                    "selector nests deeper than {MAX_SELECTOR_DEPTH} levels (each `(` and each \
                     `not` is a level)"
                ),
                Some(
                    "remove redundant parentheses and double negations (`not not X` is X), or \
                     tag the locations and select by tag:NAME",
                ),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn expression(&mut self) -> Result<Selector, SelectorError> {
        let mut items = vec![self.conjunction()?];
        while self.peek().0 == Token::Word("or") {
            self.advance();
            items.push(self.conjunction()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Selector::Or(items)
        })
    }

    fn conjunction(&mut self) -> Result<Selector, SelectorError> {
        let mut items = vec![self.negation()?];
        while self.peek().0 == Token::Word("and") {
            self.advance();
            items.push(self.negation()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Selector::And(items)
        })
    }

    fn negation(&mut self) -> Result<Selector, SelectorError> {
        if self.peek().0 == Token::Word("not") {
            self.enter()?;
            self.advance();
            let inner = self.negation()?;
            self.depth -= 1;
            return Ok(Selector::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn string(&mut self) -> Result<SelectorValue, SelectorError> {
        match self.peek().clone() {
            (Token::String(content), offset, _) => {
                self.advance();
                Ok(SelectorValue {
                    value: content.to_string(),
                    span: (self.locate)(offset + 1, content.len()),
                })
            }
            _ => Err(self.unexpected(
                "a quoted value",
                Some("quote values inside the selector: region = \"eu\" (or region = 'eu')"),
            )),
        }
    }

    fn primary(&mut self) -> Result<Selector, SelectorError> {
        let (token, offset, length) = self.peek().clone();
        match token {
            Token::OpenParen => {
                self.enter()?;
                self.advance();
                let inner = self.expression()?;
                if self.peek().0 != Token::CloseParen {
                    return Err(self.unexpected("`)`", Some("close every `(` with a `)`")));
                }
                self.advance();
                self.depth -= 1;
                Ok(inner)
            }
            Token::Word("all") => {
                self.advance();
                Ok(Selector::All)
            }
            Token::Word("none") => {
                self.advance();
                Ok(Selector::None)
            }
            Token::Word(word) => {
                let Some(attribute) = Attribute::from_keyword(word) else {
                    return Err(error(
                        offset,
                        length,
                        format!("unknown selector attribute `{}`", escape_text(word)),
                        Some(
                            "use all, none, region, metro, country, location, state or tag \
                             (for example region = \"eu\" or tag:canary)",
                        ),
                    ));
                };
                self.advance();
                match self.peek().0 {
                    Token::Colon if attribute == Attribute::Tag => {
                        self.advance();
                        match self.peek().clone() {
                            (Token::Word(name), name_offset, name_length) => {
                                self.advance();
                                Ok(Selector::Match {
                                    attribute,
                                    values: vec![SelectorValue {
                                        value: name.to_string(),
                                        span: (self.locate)(name_offset, name_length),
                                    }],
                                    negated: false,
                                })
                            }
                            _ => Err(self.unexpected("a tag name after `tag:`", None)),
                        }
                    }
                    Token::Equals | Token::NotEquals => {
                        let negated = self.advance().0 == Token::NotEquals;
                        let value = self.string()?;
                        Ok(Selector::Match {
                            attribute,
                            values: vec![value],
                            negated,
                        })
                    }
                    Token::Word("in") => {
                        self.advance();
                        if self.peek().0 != Token::OpenBracket {
                            return Err(self.unexpected("`[` after `in`", None));
                        }
                        self.advance();
                        let mut values = vec![self.string()?];
                        loop {
                            match self.peek().0 {
                                Token::Comma => {
                                    self.advance();
                                    if self.peek().0 == Token::CloseBracket {
                                        self.advance();
                                        break;
                                    }
                                    values.push(self.string()?);
                                }
                                Token::CloseBracket => {
                                    self.advance();
                                    break;
                                }
                                _ => return Err(self.unexpected("`,` or `]`", None)),
                            }
                        }
                        Ok(Selector::Match {
                            attribute,
                            values,
                            negated: false,
                        })
                    }
                    _ => Err(self.unexpected(
                        "`=`, `!=` or `in` after the attribute",
                        Some("write region = \"eu\" or region in [\"eu\", \"us\"]"),
                    )),
                }
            }
            _ => Err(self.unexpected(
                "a selector",
                Some("start with all, none, not, `(`, or an attribute such as region = \"eu\""),
            )),
        }
    }
}

/// Parses a selector expression. `locate(offset, length)` maps a byte range of `text` to a
/// [`Span`] in the source file, so that values keep positions for later reference checks.
pub fn parse_selector(
    text: &str,
    locate: &dyn Fn(usize, usize) -> Span,
) -> Result<Selector, SelectorError> {
    if text.len() > MAX_SELECTOR_BYTES {
        let mut boundary = MAX_SELECTOR_BYTES;
        while !text.is_char_boundary(boundary) {
            boundary -= 1;
        }
        return Err(error(
            boundary,
            1,
            format!(
                "selector is {} bytes long, more than the limit of {MAX_SELECTOR_BYTES} bytes \
                 (the limit is crossed here)",
                text.len()
            ),
            Some(
                "shorten the expression: tag the locations it lists and select by tag:NAME, or \
                 use one `in [..]` list instead of many `or` terms",
            ),
        ));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        depth: 0,
        locate,
    };
    let selector = parser.expression()?;
    if parser.peek().0 != Token::End {
        return Err(parser.unexpected(
            "`and`, `or` or the end of the expression",
            Some("join conditions with and / or"),
        ));
    }
    Ok(selector)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Selector, SelectorError> {
        parse_selector(text, &|offset, length| {
            Span::new(0, offset..offset + length)
        })
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let selector = parse("region = \"eu\" or tag:canary and not state = 'test'").unwrap();
        assert_eq!(
            selector.to_string(),
            "(region = \"eu\" or (tag = \"canary\" and not state = \"test\"))"
        );
    }

    #[test]
    fn in_lists_and_parentheses() {
        let selector = parse("(region in [\"eu\", \"us\",]) and metro != \"AMS\"").unwrap();
        assert_eq!(
            selector.to_string(),
            "(region in [\"eu\", \"us\"] and metro != \"AMS\")"
        );
    }

    #[test]
    fn values_keep_their_offsets() {
        let selector = parse("tag = \"dls\"").unwrap();
        let mut spans = Vec::new();
        selector.for_each_value(&mut |_, value| spans.push(value.span));
        assert_eq!(spans, vec![Span::new(0, 7..10)]);
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let failure = parse("region = \"eu\" and regoin = \"us\"").unwrap_err();
        assert_eq!(failure.offset, 18);
        assert!(failure.message.contains("regoin"));
        let failure = parse("region = eu").unwrap_err();
        assert_eq!(failure.offset, 9);
        let failure = parse("(all").unwrap_err();
        assert_eq!(failure.offset, 4);
        let failure = parse("all all").unwrap_err();
        assert_eq!(failure.offset, 4);
        let failure = parse("tag = \"x").unwrap_err();
        assert_eq!(failure.offset, 6);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_an_error_at_the_crossing_token() {
        let inside = MAX_SELECTOR_DEPTH;
        let accepted = format!("{}all{}", "(".repeat(inside), ")".repeat(inside));
        assert_eq!(parse(&accepted).unwrap(), Selector::All);
        let refused = format!("{}all{}", "(".repeat(3000), ")".repeat(3000));
        let failure = parse(&refused[..MAX_SELECTOR_BYTES]).unwrap_err();
        assert_eq!(failure.offset, MAX_SELECTOR_DEPTH);
        assert!(
            failure.message.contains("deeper than 64"),
            "{}",
            failure.message
        );
        assert!(failure.help.unwrap().contains("redundant parentheses"));
        let negations = format!("{}all", "not ".repeat(1000));
        let failure = parse(&negations).unwrap_err();
        assert_eq!(failure.offset, 4 * MAX_SELECTOR_DEPTH);
        let mixed = format!("{}all{}", "not (".repeat(40), ")".repeat(40));
        assert!(parse(&mixed).unwrap_err().message.contains("deeper"));
        // Long flat chains are not nesting.
        let chain = vec!["tag:a"; 400].join(" or ");
        assert!(matches!(parse(&chain).unwrap(), Selector::Or(items) if items.len() == 400));
    }

    #[test]
    fn longer_than_the_limit_is_an_error_where_it_is_crossed() {
        let long = format!("tag = \"{}\"", "é".repeat(MAX_SELECTOR_BYTES));
        let failure = parse(&long).unwrap_err();
        assert!(failure.offset <= MAX_SELECTOR_BYTES && long.is_char_boundary(failure.offset));
        assert!(
            failure.message.contains("limit of 4096 bytes"),
            "{}",
            failure.message
        );
        assert!(failure.help.is_some());
    }

    #[test]
    fn control_and_bidirectional_characters_are_refused_and_escaped() {
        let failure = parse("tag = \"ab\u{202E}cd\"").unwrap_err();
        assert_eq!(failure.offset, 9);
        assert!(failure.message.contains("\\u{202e}"), "{}", failure.message);
        assert!(!failure.message.contains('\u{202E}'));
        let failure = parse("tag = \"\u{1b}[2J\"").unwrap_err();
        assert!(!failure.message.contains('\u{1b}'), "{}", failure.message);
        let failure = parse("tag:x \u{2066}and all").unwrap_err();
        assert!(!failure.message.contains('\u{2066}'), "{}", failure.message);
    }
}
