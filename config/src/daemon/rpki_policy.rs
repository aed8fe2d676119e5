//! The daemon's `[rpki]` section: the RTR caches it keeps its VRP set in sync with (address and
//! preference) and what it does with an announced route that turns RPKI-invalid at run time,
//! each checked with its error at the value.

use std::collections::BTreeSet;

use serde::Deserialize;
use toml::Spanned;

use super::file::span_of;
use super::model::{DEFAULT_RPKI_CACHE_PREFERENCE, InvalidPolicy, RpkiCacheConfig, RpkiConfig};
use crate::diagnostic::Collector;

/// `[rpki]` as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RpkiFile {
    pub(super) caches: Spanned<Vec<RpkiCacheFile>>,
    pub(super) invalid_policy: Option<Spanned<String>>,
}

/// One `caches` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RpkiCacheFile {
    pub(super) address: Spanned<String>,
    pub(super) preference: Option<u8>,
}

/// `[rpki]`, defaults filled in.
pub(super) fn convert_rpki(file: RpkiFile, collector: &mut Collector) -> RpkiConfig {
    if file.caches.get_ref().is_empty() {
        collector.error(
            Some(span_of(&file.caches)),
            "[rpki] names no cache",
            Some(
                "add e.g. `caches = [{ address = \"127.0.0.1:3323\", preference = 1 }]`, or remove [rpki]"
                    .into(),
            ),
        );
    }
    let mut seen = BTreeSet::new();
    let mut caches = Vec::new();
    for cache in file.caches.into_inner() {
        let address = cache.address.get_ref().trim().to_owned();
        if let Some(problem) = address_problem(&address) {
            collector.error(
                Some(span_of(&cache.address)),
                format!("RTR cache address `{address}` {problem}"),
                Some("write HOST:PORT, e.g. \"127.0.0.1:3323\" or \"[::1]:3323\"".into()),
            );
            continue;
        }
        if !seen.insert(address.clone()) {
            collector.error(
                Some(span_of(&cache.address)),
                format!("RTR cache `{address}` is named twice"),
                Some("name each cache once".into()),
            );
            continue;
        }
        caches.push(RpkiCacheConfig {
            address,
            preference: cache.preference.unwrap_or(DEFAULT_RPKI_CACHE_PREFERENCE),
        });
    }
    let invalid_policy = match &file.invalid_policy {
        None => InvalidPolicy::Keep,
        Some(text) => match text.get_ref().as_str() {
            "keep" => InvalidPolicy::Keep,
            "withdraw" => InvalidPolicy::Withdraw,
            other => {
                collector.error(
                    Some(span_of(text)),
                    format!("invalid_policy `{other}` is not a policy"),
                    Some(
                        "write \"keep\" (the default: an announced route that turns invalid stays announced and raises the alarm) or \"withdraw\""
                            .into(),
                    ),
                );
                InvalidPolicy::Keep
            }
        },
    };
    RpkiConfig {
        caches,
        invalid_policy,
    }
}

/// What is wrong with `HOST:PORT`, if anything.
fn address_problem(address: &str) -> Option<&'static str> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Some("has no port");
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Some("has no valid port (1-65535)"),
        Ok(_) => {}
    }
    if host.is_empty() || host == "[]" {
        return Some("has no host");
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Some("is an IPv6 address without brackets");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::address_problem;

    #[test]
    fn addresses_need_a_host_and_a_port() {
        assert_eq!(address_problem("127.0.0.1:3323"), None);
        assert_eq!(address_problem("[::1]:3323"), None);
        assert_eq!(address_problem("rtr.example.net:323"), None);
        assert!(address_problem("127.0.0.1").is_some());
        assert!(address_problem("::1:3323").is_some());
        assert!(address_problem(":3323").is_some());
        assert!(address_problem("127.0.0.1:0").is_some());
        assert!(address_problem("127.0.0.1:99999").is_some());
    }
}
