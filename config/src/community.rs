//! BGP communities as the topology writes them: standard (RFC 1997, `"ASN:VALUE"`) and large
//! (RFC 8092, `"ASN:DATA1:DATA2"`), serialised as that text. Shared by the raw model and the
//! health-check declarations (a degraded service adds communities), which read their lists
//! through [`parse_communities`].

use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diagnostic::Collector;
use crate::source::span_of;

/// A standard BGP community (RFC 1997), written (and serialised) `"ASN:VALUE"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u16, pub u16);

impl Community {
    /// Parses `"ASN:VALUE"`.
    pub fn parse(text: &str) -> Option<Community> {
        let (high, low) = text.split_once(':')?;
        Some(Community(high.parse().ok()?, low.parse().ok()?))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.0, self.1)
    }
}

/// A large BGP community (RFC 8092), written (and serialised) `"ASN:DATA1:DATA2"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity(pub u32, pub u32, pub u32);

impl LargeCommunity {
    /// Parses `"ASN:DATA1:DATA2"`.
    pub fn parse(text: &str) -> Option<LargeCommunity> {
        let mut parts = text.split(':');
        let community = LargeCommunity(
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        );
        parts.next().is_none().then_some(community)
    }
}

/// Serialises as the text form and parses it back.
macro_rules! text_serde {
    ($type:ty, $what:literal) => {
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                <$type>::parse(&text)
                    .ok_or_else(|| serde::de::Error::custom(format!("invalid {}: {text}", $what)))
            }
        }
    };
}

text_serde!(Community, "community");
text_serde!(LargeCommunity, "large community");

impl fmt::Display for LargeCommunity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}:{}", self.0, self.1, self.2)
    }
}

/// A list of communities as a topology file writes them, each text parsed with `parse`
/// ([`Community::parse`] or [`LargeCommunity::parse`]); `None` when any does not parse (each one
/// that does not is an error at the value: "invalid {what}", with `help`).
pub(crate) fn parse_communities<T>(
    source: u32,
    values: &[Spanned<String>],
    parse: fn(&str) -> Option<T>,
    what: &str,
    help: &str,
    collector: &mut Collector,
) -> Option<Vec<T>> {
    let mut parsed = Vec::with_capacity(values.len());
    let mut valid = true;
    for value in values {
        match parse(value.get_ref()) {
            Some(item) => parsed.push(item),
            None => {
                valid = false;
                collector.error(
                    Some(span_of(source, value)),
                    format!("invalid {what} \"{}\"", value.get_ref()),
                    Some(help.into()),
                );
            }
        }
    }
    valid.then_some(parsed)
}
