//! The reverse-DNS ownership check: the validation token must be the value of a TXT record at
//! `_topologyd-challenge.<zone>` in every reverse zone that covers the prefix
//! ([`topologyd_ownership::challenge_record_names`]; a /23 has two).
//!
//! Only the configured nameservers are asked (the system's resolv.conf and hosts file are never
//! read), over UDP with TCP for truncated answers, and a fresh resolver serves each check, so no
//! answer is cached from one check to the next: a record published a second ago is seen.
//!
//! The verdict is pure ([`verdict`]) over what each name gave ([`NameAnswer`]): every name holds
//! the token → valid; any name holds only other values → invalid; any name could not be asked
//! (timeout, SERVFAIL, REFUSED) → unreachable; otherwise some name has no TXT at all → missing,
//! naming the zones still to publish in.
//!
//! Owns: the resolver settings and the lookups. Must not touch: where the token comes from or
//! what is done with the evidence.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use ipnet::IpNet;
use topologyd_ownership::{CheckEvidence, CheckKind, CheckStatus, challenge_record_names};

use super::unix_now;

/// Which nameservers the reverse-DNS check asks, and how patiently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdnsSettings {
    /// Asked in turn (the resolver moves on when one fails); usually the zone's authoritative
    /// servers, or a recursive resolver the operator trusts.
    pub nameservers: Vec<SocketAddr>,
    /// How long one query to one server may take.
    pub timeout: Duration,
    /// How many times a failed query is retried.
    pub attempts: usize,
}

impl Default for RdnsSettings {
    /// No nameserver (every check is unreachable until one is configured), 3 s, 2 attempts.
    fn default() -> RdnsSettings {
        RdnsSettings {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(3),
            attempts: 2,
        }
    }
}

/// What one challenge name gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameAnswer {
    /// TXT records, each one's character-strings joined (a long value may be split in 255-byte
    /// strings), lossily decoded as UTF-8.
    Txt(Vec<String>),
    /// The name does not exist.
    NxDomain,
    /// The name exists but has no TXT record.
    NoData,
    /// No usable answer: the response code or the transport failure, in words.
    Failed(String),
}

/// Asks the configured nameservers for the TXT records at every challenge name of `prefix` and
/// judges them against `token`.
pub async fn check_rdns(settings: &RdnsSettings, prefix: IpNet, token: &str) -> CheckEvidence {
    let names = challenge_record_names(prefix);
    let server = describe_servers(&settings.nameservers);
    let mut answers = Vec::with_capacity(names.len());
    if settings.nameservers.is_empty() {
        answers.extend(names.iter().map(|name| {
            (
                name.clone(),
                NameAnswer::Failed("no nameserver configured".into()),
            )
        }));
    } else {
        match build_resolver(settings) {
            Ok(resolver) => {
                for name in &names {
                    answers.push((name.clone(), lookup(&resolver, settings, name).await));
                }
            }
            Err(error) => answers.extend(names.iter().map(|name| {
                (
                    name.clone(),
                    NameAnswer::Failed(format!("resolver: {error}")),
                )
            })),
        }
    }
    verdict(prefix, token, &server, &answers, unix_now())
}

/// The evidence for `prefix` from each challenge name's answer (in the order of
/// [`challenge_record_names`]). Pure.
pub fn verdict(
    prefix: IpNet,
    token: &str,
    server: &str,
    answers: &[(String, NameAnswer)],
    checked_at_unix: u64,
) -> CheckEvidence {
    let token = token.trim();
    let mut found = Vec::new();
    let mut other_token = Vec::new();
    let mut failed = Vec::new();
    let mut absent = Vec::new();
    for (name, answer) in answers {
        match answer {
            NameAnswer::Txt(values) => {
                found.extend(values.iter().map(|value| format!("{name} TXT {value:?}")));
                if !values.iter().any(|value| value.trim() == token) {
                    other_token.push(name.as_str());
                }
            }
            NameAnswer::NxDomain => {
                found.push(format!("{name} NXDOMAIN"));
                absent.push(name.as_str());
            }
            NameAnswer::NoData => {
                found.push(format!("{name} no TXT record"));
                absent.push(name.as_str());
            }
            NameAnswer::Failed(why) => {
                found.push(format!("{name} no answer: {why}"));
                failed.push(name.as_str());
            }
        }
    }
    let (status, detail) = if answers.is_empty() || token.is_empty() {
        (
            CheckStatus::Invalid,
            format!(
                "{prefix} has no reverse zone to check or the token is empty; issue a new token"
            ),
        )
    } else if !other_token.is_empty() {
        (
            CheckStatus::Invalid,
            format!(
                "the TXT record at {} holds another value than this prefix's token; replace it with the token",
                other_token.join(", ")
            ),
        )
    } else if !failed.is_empty() {
        (
            CheckStatus::Unreachable,
            format!(
                "no usable answer from {server} for {}; check the nameservers (SERVFAIL, refused or timed out) and verify again",
                failed.join(", ")
            ),
        )
    } else if !absent.is_empty() {
        let what = if absent.len() < answers.len() {
            "the token is published in some covering zones but not in"
        } else {
            "no TXT record at"
        };
        (
            CheckStatus::Missing,
            format!(
                "{what} {}; publish a TXT record with the token there and verify again",
                absent.join(", ")
            ),
        )
    } else {
        (
            CheckStatus::Valid,
            format!(
                "the token is published at all {} challenge name(s) of {prefix}",
                answers.len()
            ),
        )
    };
    CheckEvidence {
        kind: CheckKind::Rdns,
        status,
        queried: answers
            .iter()
            .map(|(name, _)| format!("{name} TXT"))
            .collect(),
        server: server.to_string(),
        found,
        checked_at_unix,
        detail,
    }
}

/// A resolver that asks only `settings.nameservers` (UDP, then TCP when truncated), reads no
/// system file, and is dropped after one check (its cache with it).
fn build_resolver(settings: &RdnsSettings) -> Result<TokioResolver, NetError> {
    let name_servers = settings
        .nameservers
        .iter()
        .map(|address| {
            let mut udp = ConnectionConfig::udp();
            udp.port = address.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = address.port();
            NameServerConfig::new(address.ip(), true, vec![udp, tcp])
        })
        .collect();
    let config = ResolverConfig::from_name_servers(name_servers);
    let mut options = ResolverOpts::default();
    options.timeout = settings.timeout;
    options.attempts = settings.attempts;
    options.use_hosts_file = ResolveHosts::Never;
    options.cache_size = 1;
    options.ndots = 0;
    options.edns0 = true;
    Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
}

/// The TXT answer for one name; never waits longer than every attempt's timeout, plus a second.
async fn lookup(resolver: &TokioResolver, settings: &RdnsSettings, name: &str) -> NameAnswer {
    let fqdn = format!("{name}.");
    let bound = settings
        .timeout
        .saturating_mul(u32::try_from(settings.attempts.saturating_add(1)).unwrap_or(u32::MAX))
        .saturating_mul(u32::try_from(settings.nameservers.len().max(1)).unwrap_or(u32::MAX))
        .saturating_add(Duration::from_secs(1));
    match tokio::time::timeout(bound, resolver.txt_lookup(fqdn.as_str())).await {
        Err(_) => NameAnswer::Failed(format!("timed out after {bound:?}")),
        Ok(Ok(lookup)) => {
            let values: Vec<String> = lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect();
            if values.is_empty() {
                NameAnswer::NoData
            } else {
                NameAnswer::Txt(values)
            }
        }
        Ok(Err(error)) => classify_error(&error),
    }
}

/// NXDOMAIN and NODATA are answers; every other failure says nothing about the record.
fn classify_error(error: &NetError) -> NameAnswer {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => match no_records.response_code {
            ResponseCode::NXDomain => NameAnswer::NxDomain,
            ResponseCode::NoError => NameAnswer::NoData,
            code => NameAnswer::Failed(format!("response code {code}")),
        },
        NetError::Dns(DnsError::ResponseCode(code)) => {
            NameAnswer::Failed(format!("response code {code}"))
        }
        NetError::Timeout => NameAnswer::Failed("timed out".to_string()),
        other => NameAnswer::Failed(other.to_string()),
    }
}

/// `127.0.0.1:53, [::1]:53`.
fn describe_servers(servers: &[SocketAddr]) -> String {
    if servers.is_empty() {
        return "(no nameserver configured)".to_string();
    }
    servers
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "topologyd-verify=0123456789abcdef0123456789abcdef";

    fn slash23() -> IpNet {
        "198.51.100.0/23".parse().expect("prefix")
    }

    fn answers(first: NameAnswer, second: NameAnswer) -> Vec<(String, NameAnswer)> {
        let names = challenge_record_names(slash23());
        vec![(names[0].clone(), first), (names[1].clone(), second)]
    }

    fn status(first: NameAnswer, second: NameAnswer) -> CheckEvidence {
        verdict(slash23(), TOKEN, "127.0.0.1:53", &answers(first, second), 7)
    }

    fn txt(values: &[&str]) -> NameAnswer {
        NameAnswer::Txt(values.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn valid_only_when_every_zone_holds_the_token() {
        let evidence = status(txt(&[TOKEN]), txt(&["v=spf1 -all", TOKEN]));
        assert_eq!(evidence.status, CheckStatus::Valid);
        assert_eq!(evidence.kind, CheckKind::Rdns);
        assert_eq!(evidence.queried.len(), 2);
        assert_eq!(evidence.found.len(), 3);
        assert_eq!(evidence.checked_at_unix, 7);
    }

    #[test]
    fn half_a_slash_23_is_missing_and_names_the_zone() {
        let evidence = status(txt(&[TOKEN]), NameAnswer::NxDomain);
        assert_eq!(evidence.status, CheckStatus::Missing);
        assert!(
            evidence.detail.contains("101.51.198.in-addr.arpa"),
            "{}",
            evidence.detail
        );
        assert!(
            !evidence.detail.contains("100.51.198"),
            "{}",
            evidence.detail
        );
    }

    #[test]
    fn another_token_is_invalid_even_next_to_a_failure() {
        let evidence = status(
            txt(&["topologyd-verify=other"]),
            NameAnswer::Failed("x".into()),
        );
        assert_eq!(evidence.status, CheckStatus::Invalid);
        assert!(evidence.found[0].contains("topologyd-verify=other"));
    }

    #[test]
    fn a_failure_is_unreachable_not_missing() {
        let evidence = status(NameAnswer::NoData, NameAnswer::Failed("SERVFAIL".into()));
        assert_eq!(evidence.status, CheckStatus::Unreachable);
    }

    #[test]
    fn nothing_anywhere_is_missing() {
        assert_eq!(
            status(NameAnswer::NxDomain, NameAnswer::NoData).status,
            CheckStatus::Missing
        );
    }

    #[test]
    fn an_empty_token_never_matches_an_empty_txt() {
        let evidence = verdict(slash23(), " ", "s", &answers(txt(&[""]), txt(&[""])), 0);
        assert_eq!(evidence.status, CheckStatus::Invalid);
    }

    #[tokio::test]
    async fn no_nameserver_is_unreachable_without_any_traffic() {
        let evidence = check_rdns(&RdnsSettings::default(), slash23(), TOKEN).await;
        assert_eq!(evidence.status, CheckStatus::Unreachable);
        assert_eq!(evidence.queried.len(), 2);
    }

    proptest::proptest! {
        /// Whatever the answers, valid means every name holds the token.
        #[test]
        fn valid_implies_every_name_holds_the_token(
            picks in proptest::collection::vec(0u8..5, 2),
        ) {
            let pick = |n: u8| match n {
                0 => txt(&[TOKEN]),
                1 => txt(&["other"]),
                2 => NameAnswer::NxDomain,
                3 => NameAnswer::NoData,
                _ => NameAnswer::Failed("timed out".into()),
            };
            let evidence = status(pick(picks[0]), pick(picks[1]));
            let all_token = picks.iter().all(|n| *n == 0);
            proptest::prop_assert_eq!(evidence.status == CheckStatus::Valid, all_token);
        }
    }
}
