//! BGP communities as the topology writes them: standard (RFC 1997, `"ASN:VALUE"`) and large
//! (RFC 8092, `"ASN:DATA1:DATA2"`), serialised as that text. Shared by the raw model and the
//! health-check declarations (a degraded service adds communities).

use std::fmt;

use serde::{Deserialize, Serialize};

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
