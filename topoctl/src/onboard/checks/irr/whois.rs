//! What an IRRd whois server says, parsed: the framing of its `!`-command answers and the RPSL
//! objects inside them. Pure, bounded and total: any bytes give a value or an error, never a
//! panic, and nothing grows past the limits below whatever the server sends.
//!
//! Framing (IRRd's "ripe-less" protocol): each query gets one of `A<length>\n<length bytes>C\n`
//! (data), `C\n` (success, nothing to return), `D\n` (no such key), `E\n` (several copies of
//! the key) or `F <message>\n` (an error). Blank lines between answers are skipped.
//!
//! RPSL (RFC 2622 §2): objects are separated by blank lines; an attribute line is
//! `name: value`; a line starting with a space, a tab or `+` continues the previous attribute;
//! lines starting with `%` or `#` are comments. Attribute names are case-insensitive (kept in
//! lower case here); values keep their text, end-of-line comments included
//! ([`RpslObject::first_bare`] drops them where a key is compared).
//!
//! Owns: [`parse_answers`], [`parse_rpsl`]. Must not touch: the network or the verdict.

/// At most this many objects are kept from one answer; the rest are dropped.
pub const MAX_OBJECTS: usize = 1000;
/// At most this many attributes are kept per object.
pub const MAX_ATTRIBUTES: usize = 500;
/// An attribute value is cut at this many bytes (on a character boundary).
pub const MAX_VALUE_BYTES: usize = 4096;
/// At most this many answers are read from one exchange.
pub const MAX_ANSWERS: usize = 16;

/// One answer of an IRRd `!` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `A`: the data block (lossily decoded as UTF-8).
    Data(String),
    /// `C` alone: the query succeeded and there is nothing to return.
    Empty,
    /// `D`: the key was not found.
    NotFound,
    /// `E`: several copies of the key.
    Multiple,
    /// `F`: the server refused or failed the query, with its message.
    Error(String),
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("the answer ends inside a data block (announced {announced} bytes, {available} sent)")]
    Truncated { announced: usize, available: usize },
    #[error("unexpected line {line:?} where an IRRd answer should start")]
    Unexpected { line: String },
    #[error("a data block is not followed by its closing `C` line (got {line:?})")]
    Unterminated { line: String },
    #[error("more than {MAX_ANSWERS} answers")]
    TooMany,
}

/// Splits a whole IRRd exchange into its answers, in order.
pub fn parse_answers(bytes: &[u8]) -> Result<Vec<Answer>, FramingError> {
    let mut answers = Vec::new();
    let mut rest = bytes;
    while let Some((line, after)) = next_line(rest) {
        rest = after;
        let line = trim_line(line);
        if line.is_empty() {
            continue;
        }
        if answers.len() >= MAX_ANSWERS {
            return Err(FramingError::TooMany);
        }
        let answer = match line[0] {
            b'A' => {
                let announced = std::str::from_utf8(&line[1..])
                    .ok()
                    .and_then(|digits| digits.trim().parse::<usize>().ok())
                    .ok_or_else(|| unexpected(line))?;
                let data = rest.get(..announced).ok_or(FramingError::Truncated {
                    announced,
                    available: rest.len(),
                })?;
                rest = &rest[announced..];
                // The closing `C`, possibly after the newline the data lacked.
                let closing = loop {
                    match next_line(rest) {
                        Some((next, after)) => {
                            rest = after;
                            if !trim_line(next).is_empty() {
                                break trim_line(next);
                            }
                        }
                        None => break &[][..],
                    }
                };
                if closing != b"C" {
                    return Err(FramingError::Unterminated {
                        line: lossy(closing),
                    });
                }
                Answer::Data(String::from_utf8_lossy(data).into_owned())
            }
            b'C' if line.len() == 1 => Answer::Empty,
            b'D' if line.len() == 1 => Answer::NotFound,
            b'E' if line.len() == 1 => Answer::Multiple,
            b'F' if line.len() == 1 || line[1] == b' ' => {
                Answer::Error(lossy(&line[1..]).trim().to_string())
            }
            _ => return Err(unexpected(line)),
        };
        answers.push(answer);
    }
    Ok(answers)
}

fn unexpected(line: &[u8]) -> FramingError {
    FramingError::Unexpected { line: lossy(line) }
}

/// At most 80 characters of `bytes`, for messages.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(80).collect()
}

/// The next line (without its `\n`) and what follows it; `None` at the end.
fn next_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    if bytes.is_empty() {
        return None;
    }
    Some(match bytes.iter().position(|byte| *byte == b'\n') {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (bytes, &[][..]),
    })
}

fn trim_line(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One RPSL object: its attributes in order, names in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpslObject {
    pub attributes: Vec<(String, String)>,
}

impl RpslObject {
    /// The class: the first attribute's name (`route`, `route6`, …).
    pub fn class(&self) -> Option<&str> {
        self.attributes.first().map(|(name, _)| name.as_str())
    }

    /// The values of every attribute called `name`.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.attributes
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of `name` without its end-of-line comment, trimmed.
    pub fn first_bare(&self, name: &str) -> Option<&str> {
        self.values(name)
            .next()
            .map(|value| value.split('#').next().unwrap_or("").trim())
    }
}

/// The objects in an RPSL text, at most [`MAX_OBJECTS`]; lines that are neither attributes,
/// continuations nor comments are skipped and counted in the second value.
pub fn parse_rpsl(text: &str) -> (Vec<RpslObject>, usize) {
    let mut objects = Vec::new();
    let mut current = RpslObject::default();
    let mut skipped = 0usize;
    for line in text.lines() {
        if objects.len() >= MAX_OBJECTS {
            break;
        }
        if line.trim().is_empty() {
            if !current.attributes.is_empty() {
                objects.push(std::mem::take(&mut current));
            }
            continue;
        }
        let first = line.as_bytes()[0];
        if first == b'%' || first == b'#' {
            continue;
        }
        if matches!(first, b' ' | b'\t' | b'+') {
            match current.attributes.last_mut() {
                Some((_, value)) => {
                    let more = line[1..].trim();
                    if !more.is_empty() {
                        if !value.is_empty() {
                            value.push(' ');
                        }
                        value.push_str(more);
                        truncate(value);
                    }
                }
                None => skipped += 1,
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if is_attribute_name(name) => {
                if current.attributes.len() < MAX_ATTRIBUTES {
                    let mut value = value.trim().to_string();
                    truncate(&mut value);
                    current.attributes.push((name.to_ascii_lowercase(), value));
                }
            }
            _ => skipped += 1,
        }
    }
    if !current.attributes.is_empty() && objects.len() < MAX_OBJECTS {
        objects.push(current);
    }
    (objects, skipped)
}

fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

fn truncate(value: &mut String) {
    if value.len() > MAX_VALUE_BYTES {
        let mut end = MAX_VALUE_BYTES;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROUTE: &str = "route:          198.51.100.0/24\ndescr:          Example\n  continued\n+               plus\nremarks:        tok-1 # a comment\norigin:         AS64500\nsource:         TEST\n";

    #[test]
    fn framing_of_a_real_exchange() {
        let exchange = format!(
            "A{}\n{ROUTE}C\nD\nF Invalid input for route search: x\n\nC\n",
            ROUTE.len()
        );
        let answers = parse_answers(exchange.as_bytes()).expect("framing");
        assert_eq!(answers.len(), 4);
        assert_eq!(answers[0], Answer::Data(ROUTE.to_string()));
        assert_eq!(answers[1], Answer::NotFound);
        assert_eq!(
            answers[2],
            Answer::Error("Invalid input for route search: x".into())
        );
        assert_eq!(answers[3], Answer::Empty);
    }

    #[test]
    fn framing_refuses_garbage_and_short_blocks() {
        assert!(matches!(
            parse_answers(b"HTTP/1.1 400 Bad\r\n"),
            Err(FramingError::Unexpected { .. })
        ));
        assert!(matches!(
            parse_answers(b"A500\nroute: x\n"),
            Err(FramingError::Truncated { .. })
        ));
        assert!(matches!(
            parse_answers(b"A3\nabcX\n"),
            Err(FramingError::Unterminated { .. })
        ));
        assert!(matches!(
            parse_answers(b"A-1\n"),
            Err(FramingError::Unexpected { .. })
        ));
        assert_eq!(parse_answers(b"").expect("empty"), Vec::new());
    }

    #[test]
    fn continuation_lines_and_comments() {
        let (objects, skipped) = parse_rpsl(&format!(
            "% comment\n{ROUTE}\n\nroute6: 2001:db8::/32\nORIGIN: AS1\nnot an attribute line\n"
        ));
        assert_eq!(skipped, 1);
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].class(), Some("route"));
        assert_eq!(
            objects[0].values("descr").next(),
            Some("Example continued plus")
        );
        assert_eq!(objects[0].first_bare("remarks"), Some("tok-1"));
        assert_eq!(objects[1].first_bare("origin"), Some("AS1"));
        assert_eq!(objects[1].first_bare("route6"), Some("2001:db8::/32"));
    }

    #[test]
    fn limits_hold() {
        let many = "route: 192.0.2.0/24\n\n".repeat(MAX_OBJECTS + 10);
        assert_eq!(parse_rpsl(&many).0.len(), MAX_OBJECTS);
        let long = format!("descr: {}\n{}", "x".repeat(10_000), " y\n".repeat(100));
        assert_eq!(
            parse_rpsl(&long).0[0].attributes[0].1.len(),
            MAX_VALUE_BYTES
        );
        assert!(matches!(
            parse_answers("C\n".repeat(MAX_ANSWERS + 1).as_bytes()),
            Err(FramingError::TooMany)
        ));
    }

    fn attribute() -> impl Strategy<Value = (String, String)> {
        ("[a-z][a-z0-9-]{0,10}", "[ -~&&[^#]]{0,40}")
            .prop_map(|(name, value)| (name, value.trim().to_string()))
    }

    proptest! {
        /// Any bytes: framing and RPSL parsing return, within their limits.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(answers) = parse_answers(&bytes) {
                prop_assert!(answers.len() <= MAX_ANSWERS);
            }
            let (objects, _) = parse_rpsl(&String::from_utf8_lossy(&bytes));
            prop_assert!(objects.len() <= MAX_OBJECTS);
        }

        /// Objects written out (each value split over continuation lines at random) and framed
        /// as an `A` block read back as the same attributes.
        #[test]
        fn written_objects_read_back(
            objects in proptest::collection::vec(proptest::collection::vec(attribute(), 1..6), 1..4),
            split in any::<u64>(),
        ) {
            let mut text = String::new();
            for (n, object) in objects.iter().enumerate() {
                for (m, (name, value)) in object.iter().enumerate() {
                    let words: Vec<&str> = value.split_whitespace().collect();
                    let cut = if words.is_empty() { 0 } else { (split as usize + n + m) % (words.len() + 1) };
                    text.push_str(&format!("{name}: {}\n", words[..cut].join(" ")));
                    if cut < words.len() {
                        let marker = if (split >> (m % 60)) & 1 == 1 { "+" } else { " " };
                        text.push_str(&format!("{marker}   {}\n", words[cut..].join(" ")));
                    }
                }
                text.push('\n');
            }
            let framed = format!("A{}\n{text}C\n", text.len());
            let answers = parse_answers(framed.as_bytes()).expect("framed");
            let Answer::Data(data) = &answers[0] else { panic!("not data") };
            let (parsed, skipped) = parse_rpsl(data);
            prop_assert_eq!(skipped, 0);
            let expected: Vec<Vec<(String, String)>> = objects
                .iter()
                .map(|object| object.iter().map(|(name, value)| (name.clone(), value.split_whitespace().collect::<Vec<_>>().join(" "))).collect())
                .collect();
            let got: Vec<Vec<(String, String)>> = parsed.into_iter().map(|object| object.attributes).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
