//! Value checks every table of a topology file shares: names (length and characters), CIDR
//! text, and turning a spanned string into a [`Located`] one.

use ipnet::IpNet;
use toml::Spanned;

use crate::bounds;
use crate::diagnostic::Collector;
use crate::model::Located;
use crate::source::{Span, span_of};
use crate::text::{escape_text, is_forbidden_in_name};

/// `text` as a network; an error at the value, with the fix, when it is not one.
pub(super) fn parse_cidr(
    source: u32,
    text: &Spanned<String>,
    what: &str,
    collector: &mut Collector,
) -> Option<Located<IpNet>> {
    match text.get_ref().parse::<IpNet>() {
        Ok(network) => Some(Located::new(network, span_of(source, text))),
        Err(_) => {
            let help = if text.get_ref().contains('/') {
                "write an address and a prefix length, such as \"192.0.2.0/24\" or \"2001:db8::/48\""
                    .to_string()
            } else if text.get_ref().contains(':') {
                format!("add the prefix length, such as \"{}/48\"", text.get_ref())
            } else {
                format!("add the prefix length, such as \"{}/24\"", text.get_ref())
            };
            collector.error(
                Some(span_of(source, text)),
                format!("invalid {what} CIDR \"{}\"", text.get_ref()),
                Some(help),
            );
            None
        }
    }
}

/// Reports a name (of a location, region, metro, country, tag, service, owner or token) longer
/// than [`bounds::MAX_NAME_BYTES`] or that holds a control character or a bidirectional formatting character — written as a TOML escape,
/// since [`bounds::scan_file`] already refuses them raw. Such a name could make a plan or a
/// diagnostic display something other than what it says.
pub(super) fn check_name(span: Span, what: &str, value: &str, collector: &mut Collector) {
    if value.len() > bounds::MAX_NAME_BYTES {
        let mut shown = bounds::MAX_NAME_BYTES.min(40);
        while !value.is_char_boundary(shown) {
            shown -= 1;
        }
        collector.error(
            Some(span),
            format!(
                "{what} \"{}…\" is {} bytes long, more than the limit of {}",
                escape_text(&value[..shown]),
                value.len(),
                bounds::MAX_NAME_BYTES
            ),
            Some("use a short name; describe the thing in a comment".into()),
        );
        return;
    }
    if let Some(character) = value
        .chars()
        .find(|character| is_forbidden_in_name(*character))
    {
        collector.error(
            Some(span),
            format!(
                "{what} \"{}\" contains the invisible or control character {}",
                escape_text(value),
                character.escape_unicode()
            ),
            Some(
                "names are plain text: remove the escape sequence that writes the character".into(),
            ),
        );
    }
}

/// [`check_name`] of a name written as a TOML string, reported at the string.
pub(super) fn check_spanned_name(
    source_id: u32,
    what: &str,
    value: &Spanned<String>,
    collector: &mut Collector,
) {
    check_name(span_of(source_id, value), what, value.get_ref(), collector);
}

/// A spanned TOML string as a [`Located`] one.
pub(super) fn located_string(source: u32, value: Spanned<String>) -> Located<String> {
    let span = span_of(source, &value);
    Located::new(value.into_inner(), span)
}
