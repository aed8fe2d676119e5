//! The IRR ownership check: a `route:` (IPv4) or `route6:` (IPv6) object for the exact prefix,
//! from an accepted source, with `origin:` our ASN and the validation token in `remarks:` or
//! `descr:`.
//!
//! One TCP connection to the configured IRRd whois server (`host:port`) asks, in IRRd's
//! multiple-command mode, `!r<prefix>` (the route objects for exactly the prefix) and
//! `!r<prefix>,L` (those for it and every less specific prefix), then `!q`. The whole exchange
//! has one deadline and the answer a size limit ([`MAX_ANSWER_BYTES`]); what comes back is
//! parsed by [`whois`] and judged by [`verdict`], which is pure.
//!
//! Verdicts, first match wins: an exact object from an accepted source with our origin and the
//! token → valid; an exact accepted object with another origin → mismatch_asn; exact objects
//! only from other sources → invalid; only covering, less specific objects → invalid; an exact
//! accepted object with our origin but without the token, or nothing at all → missing; a server
//! that cannot be reached, times out, refuses the query or answers garbage → unreachable.
//!
//! Owns: the IRR settings, the whois exchange and the verdict. Must not touch: where the token
//! comes from or what is done with the evidence.

pub mod whois;

use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use topologyd_ownership::{CheckEvidence, CheckKind, CheckStatus};

use self::whois::{Answer, RpslObject, parse_answers, parse_rpsl};
use super::unix_now;

/// The most an exchange may return; a longer answer is refused (unreachable), not cut.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// At most this many lines of found objects go into the evidence.
const MAX_FOUND_LINES: usize = 40;

/// Which IRR server the check asks and which of its sources count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrrSettings {
    /// The IRRd whois server, `host:port` (port 43 in production).
    pub server: String,
    /// Accepted sources (`RIPE`, `ARIN`, `RADB`, …), compared case-insensitively; empty accepts
    /// every source the server returns.
    pub sources: Vec<String>,
    /// The deadline of the whole exchange (connect, query, answer).
    pub timeout: Duration,
}

impl Default for IrrSettings {
    /// No server (every check is unreachable until one is configured), every source, 10 s.
    fn default() -> IrrSettings {
        IrrSettings {
            server: String::new(),
            sources: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The queries one check sends for `prefix`.
pub fn queries(prefix: IpNet) -> [String; 2] {
    let prefix = prefix.trunc();
    [format!("!r{prefix}"), format!("!r{prefix},L")]
}

/// Asks the IRR server for the route objects of `prefix` and judges them against `origin_asn`
/// and `token`.
pub async fn check_irr(
    settings: &IrrSettings,
    prefix: IpNet,
    origin_asn: u32,
    token: &str,
) -> CheckEvidence {
    let queries = queries(prefix);
    let outcome = if settings.server.trim().is_empty() {
        Err("no IRR server configured".to_string())
    } else {
        match tokio::time::timeout(settings.timeout, exchange(&settings.server, &queries)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no complete answer within {:?}", settings.timeout)),
        }
    };
    let answers = outcome.and_then(|bytes| {
        parse_answers(&bytes).map_err(|error| format!("not an IRRd answer: {error}"))
    });
    verdict(
        &Query {
            prefix,
            origin_asn,
            token,
            settings,
            queries: &queries,
        },
        answers,
        unix_now(),
    )
}

/// One connection: `!!`, the queries, `!q`; reads until the server closes, at most
/// [`MAX_ANSWER_BYTES`].
async fn exchange(server: &str, queries: &[String]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|error| format!("cannot connect to {server}: {error}"))?;
    let mut request = String::from("!!\n");
    for query in queries {
        request.push_str(query);
        request.push('\n');
    }
    request.push_str("!q\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("cannot send the query to {server}: {error}"))?;
    let mut answer = Vec::new();
    let mut limited = (&mut stream).take(MAX_ANSWER_BYTES as u64 + 1);
    limited
        .read_to_end(&mut answer)
        .await
        .map_err(|error| format!("reading the answer from {server}: {error}"))?;
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(format!("the answer exceeds {MAX_ANSWER_BYTES} bytes"));
    }
    Ok(answer)
}

/// What one check asked about.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub prefix: IpNet,
    pub origin_asn: u32,
    pub token: &'a str,
    pub settings: &'a IrrSettings,
    pub queries: &'a [String],
}

/// The evidence from the server's answers to [`queries`] (or why there are none). Pure.
pub fn verdict(
    query: &Query<'_>,
    answers: Result<Vec<Answer>, String>,
    checked_at_unix: u64,
) -> CheckEvidence {
    let evidence = |status, found, detail| CheckEvidence {
        kind: CheckKind::Irr,
        status,
        queried: query.queries.to_vec(),
        server: query.settings.server.clone(),
        found,
        checked_at_unix,
        detail,
    };
    let objects = match answers.and_then(|answers| route_objects(&answers)) {
        Ok(objects) => objects,
        Err(why) => {
            return evidence(
                CheckStatus::Unreachable,
                Vec::new(),
                format!("{why}; check the IRR server setting and verify again"),
            );
        }
    };
    let judged = judge(query, &objects);
    let mut found = Vec::new();
    for object in judged.shown.iter().take(8) {
        describe(object, query.token, &mut found);
    }
    found.truncate(MAX_FOUND_LINES);
    evidence(judged.status, found, judged.detail)
}

/// The objects of the exact and the less-specific query, or why the answers are unusable.
fn route_objects(answers: &[Answer]) -> Result<[Vec<RpslObject>; 2], String> {
    let mut sets: [Vec<RpslObject>; 2] = [Vec::new(), Vec::new()];
    if answers.len() < 2 {
        return Err(format!(
            "the server answered {} of 2 queries",
            answers.len()
        ));
    }
    for (set, answer) in sets.iter_mut().zip(answers) {
        match answer {
            Answer::Data(text) => {
                let (objects, skipped) = parse_rpsl(text);
                if objects.is_empty() && skipped > 0 {
                    return Err("the server's answer holds no RPSL object".to_string());
                }
                *set = objects;
            }
            Answer::Empty | Answer::NotFound => {}
            Answer::Multiple => return Err("the server answered E (multiple keys)".into()),
            Answer::Error(message) => {
                return Err(format!("the server refused the query: {message}"));
            }
        }
    }
    Ok(sets)
}

struct Judged<'a> {
    status: CheckStatus,
    detail: String,
    /// The objects the verdict rests on, most relevant first.
    shown: Vec<&'a RpslObject>,
}

fn judge<'a>(query: &Query<'_>, [exact, covering]: &'a [Vec<RpslObject>; 2]) -> Judged<'a> {
    let prefix = query.prefix.trunc();
    let class = match prefix {
        IpNet::V4(_) => "route",
        IpNet::V6(_) => "route6",
    };
    let ours_exact: Vec<&RpslObject> = exact
        .iter()
        .chain(covering.iter())
        .filter(|object| object_prefix(object, class) == Some(prefix))
        .collect();
    let accepted: Vec<&RpslObject> = ours_exact
        .iter()
        .copied()
        .filter(|object| source_accepted(object, &query.settings.sources))
        .collect();
    let with_origin: Vec<&RpslObject> = accepted
        .iter()
        .copied()
        .filter(|object| object_origin(object) == Some(query.origin_asn))
        .collect();
    if let Some(object) = with_origin
        .iter()
        .find(|object| carries_token(object, query.token))
    {
        return Judged {
            status: CheckStatus::Valid,
            detail: format!(
                "{class} object {prefix} from {} has origin AS{} and carries the token",
                object.first_bare("source").unwrap_or("?"),
                query.origin_asn
            ),
            shown: vec![object],
        };
    }
    if !with_origin.is_empty() {
        return Judged {
            status: CheckStatus::Missing,
            detail: format!(
                "the {class} object {prefix} with origin AS{} does not carry the token; add `remarks: <token>` to it and verify again",
                query.origin_asn
            ),
            shown: with_origin,
        };
    }
    if !accepted.is_empty() {
        let origins: Vec<&str> = accepted
            .iter()
            .filter_map(|object| object.first_bare("origin"))
            .collect();
        return Judged {
            status: CheckStatus::MismatchAsn,
            detail: format!(
                "the {class} object {prefix} names origin {} instead of AS{}; create one with origin AS{} and the token",
                origins.join(", "),
                query.origin_asn,
                query.origin_asn
            ),
            shown: accepted,
        };
    }
    if !ours_exact.is_empty() {
        let sources: Vec<&str> = ours_exact
            .iter()
            .filter_map(|object| object.first_bare("source"))
            .collect();
        return Judged {
            status: CheckStatus::Invalid,
            detail: format!(
                "the {class} object {prefix} is only in source(s) {} which are not accepted ({}); publish it in an accepted one",
                sources.join(", "),
                query.settings.sources.join(", ")
            ),
            shown: ours_exact,
        };
    }
    let covering_only: Vec<&RpslObject> = covering
        .iter()
        .chain(exact.iter())
        .filter(|object| {
            matches!(object.class(), Some("route" | "route6"))
                && object_prefix(object, class)
                    .is_some_and(|other| other != prefix && other.contains(&prefix))
        })
        .collect();
    if !covering_only.is_empty() {
        return Judged {
            status: CheckStatus::Invalid,
            detail: format!(
                "only less specific {class} objects cover {prefix}; create a {class} object for exactly {prefix} with origin AS{} and the token",
                query.origin_asn
            ),
            shown: covering_only,
        };
    }
    Judged {
        status: CheckStatus::Missing,
        detail: format!(
            "no {class} object for {prefix}; create one with origin AS{} and `remarks: <token>`, then verify again",
            query.origin_asn
        ),
        shown: Vec::new(),
    }
}

/// The object's prefix if it is of `class` (`route` or `route6`) and its key parses.
fn object_prefix(object: &RpslObject, class: &str) -> Option<IpNet> {
    if object.class() != Some(class) {
        return None;
    }
    let prefix: IpNet = object.first_bare(class)?.parse().ok()?;
    // A key with host bits set is not the prefix it looks like.
    (prefix.trunc() == prefix).then_some(prefix)
}

/// `origin: AS64500` as 64500.
fn object_origin(object: &RpslObject) -> Option<u32> {
    let origin = object.first_bare("origin")?;
    let digits = origin
        .strip_prefix("AS")
        .or_else(|| origin.strip_prefix("as"))
        .or_else(|| origin.strip_prefix("As"))
        .or_else(|| origin.strip_prefix("aS"))?;
    digits.parse().ok()
}

fn source_accepted(object: &RpslObject, sources: &[String]) -> bool {
    sources.is_empty()
        || object.first_bare("source").is_some_and(|source| {
            sources
                .iter()
                .any(|accepted| accepted.trim().eq_ignore_ascii_case(source))
        })
}

/// The token as a whole word of a `remarks:` or `descr:` value.
fn carries_token(object: &RpslObject, token: &str) -> bool {
    let token = token.trim();
    !token.is_empty()
        && object
            .values("remarks")
            .chain(object.values("descr"))
            .any(|value| value.split_whitespace().any(|word| word == token))
}

/// The lines of `object` that bear on the verdict, for the evidence: its key, origin and
/// source, then the `remarks:`/`descr:` values holding the token (at most three) or, failing
/// that, mentioning topologyd (at most three).
fn describe(object: &RpslObject, token: &str, found: &mut Vec<String>) {
    let token = token.trim();
    for name in ["route", "route6", "origin", "source"] {
        if let Some(value) = object.values(name).next() {
            found.push(format!("{name}: {}", shorten(value, token)));
        }
    }
    let texts = || {
        object
            .attributes
            .iter()
            .filter(|(name, _)| name == "remarks" || name == "descr")
    };
    let with_token: Vec<_> = texts()
        .filter(|(_, value)| {
            !token.is_empty() && value.split_whitespace().any(|word| word == token)
        })
        .take(3)
        .collect();
    let shown = if with_token.is_empty() {
        texts()
            .filter(|(_, value)| value.contains("topologyd"))
            .take(3)
            .collect()
    } else {
        with_token
    };
    for (name, value) in shown {
        found.push(format!("{name}: {}", shorten(value, token)));
    }
}

/// At most 200 characters of `value`; a longer one that holds the token shows the token.
fn shorten(value: &str, token: &str) -> String {
    if value.chars().count() <= 200 {
        value.to_string()
    } else if !token.is_empty() && value.split_whitespace().any(|word| word == token) {
        format!("… {token} …")
    } else {
        let head: String = value.chars().take(200).collect();
        format!("{head}…")
    }
}

/// Entry point for the fuzz target and the corpus replay: any bytes as a server's answer go
/// through framing, parsing and the verdict without a panic, and a verdict of valid always rests
/// on an exact object with our origin and the token.
pub fn fuzz_whois_answer(data: &[u8]) -> CheckStatus {
    let settings = IrrSettings {
        server: "fuzz:43".to_string(),
        sources: vec!["TEST".to_string()],
        timeout: Duration::from_secs(1),
    };
    let prefix = IpNet::V4(ipnet::Ipv4Net::new([198, 51, 100, 0].into(), 24).unwrap_or_default());
    let queries = queries(prefix);
    let query = Query {
        prefix,
        origin_asn: 64500,
        token: "topologyd-fuzz-token",
        settings: &settings,
        queries: &queries,
    };
    let answers = parse_answers(data).map_err(|error| error.to_string());
    let evidence = verdict(&query, answers, 0);
    if evidence.status == CheckStatus::Valid {
        assert!(
            evidence
                .found
                .iter()
                .any(|line| line.to_ascii_lowercase().starts_with("origin: as64500")),
            "valid without our origin: {:?}",
            evidence.found
        );
        assert!(
            evidence
                .found
                .iter()
                .any(|line| line.contains("topologyd-fuzz-token")),
            "valid without the token: {:?}",
            evidence.found
        );
    }
    evidence.status
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "topologyd-verify=abc123";

    fn settings() -> IrrSettings {
        IrrSettings {
            server: "127.0.0.1:43".to_string(),
            sources: vec!["TEST".to_string()],
            timeout: Duration::from_secs(1),
        }
    }

    fn route(prefix: &str, origin: &str, source: &str, remarks: &str) -> String {
        let class = if prefix.contains(':') {
            "route6"
        } else {
            "route"
        };
        format!(
            "{class}: {prefix}\ndescr: customer\nremarks: {remarks}\norigin: {origin}\nsource: {source}\n"
        )
    }

    fn judge_text(prefix: &str, exact: &[String], covering: &[String]) -> CheckEvidence {
        let prefix: IpNet = prefix.parse().expect("prefix");
        let settings = settings();
        let queries = queries(prefix);
        let block = |objects: &[String]| {
            if objects.is_empty() {
                Answer::NotFound
            } else {
                Answer::Data(objects.join("\n"))
            }
        };
        verdict(
            &Query {
                prefix,
                origin_asn: 64500,
                token: TOKEN,
                settings: &settings,
                queries: &queries,
            },
            Ok(vec![block(exact), block(covering)]),
            9,
        )
    }

    #[test]
    fn exact_object_with_origin_and_token_is_valid() {
        let object = route("198.51.100.0/24", "AS64500", "TEST", TOKEN);
        let evidence = judge_text(
            "198.51.100.0/24",
            std::slice::from_ref(&object),
            std::slice::from_ref(&object),
        );
        assert_eq!(evidence.status, CheckStatus::Valid, "{}", evidence.detail);
        assert!(evidence.found.contains(&format!("remarks: {TOKEN}")));
        assert_eq!(
            evidence.queried,
            ["!r198.51.100.0/24", "!r198.51.100.0/24,L"]
        );
    }

    #[test]
    fn token_in_descr_counts_but_not_as_a_substring() {
        let object =
            format!("route: 198.51.100.0/24\ndescr: ours {TOKEN}\norigin: AS64500\nsource: test\n");
        assert_eq!(
            judge_text("198.51.100.0/24", &[object], &[]).status,
            CheckStatus::Valid
        );
        let longer = route("198.51.100.0/24", "AS64500", "TEST", &format!("{TOKEN}0"));
        assert_eq!(
            judge_text("198.51.100.0/24", &[longer], &[]).status,
            CheckStatus::Missing
        );
    }

    #[test]
    fn wrong_origin_is_a_mismatch() {
        let object = route("198.51.100.0/24", "AS64999", "TEST", TOKEN);
        let evidence = judge_text("198.51.100.0/24", &[object], &[]);
        assert_eq!(evidence.status, CheckStatus::MismatchAsn);
        assert!(evidence.detail.contains("AS64999"), "{}", evidence.detail);
    }

    #[test]
    fn covering_but_not_exact_is_invalid() {
        let object = route("198.51.0.0/16", "AS64500", "TEST", TOKEN);
        let evidence = judge_text("198.51.100.0/24", &[], &[object]);
        assert_eq!(evidence.status, CheckStatus::Invalid);
        assert!(evidence.found.contains(&"route: 198.51.0.0/16".to_string()));
    }

    #[test]
    fn unaccepted_source_is_invalid_and_nothing_is_missing() {
        let object = route("198.51.100.0/24", "AS64500", "OTHER", TOKEN);
        assert_eq!(
            judge_text("198.51.100.0/24", &[object], &[]).status,
            CheckStatus::Invalid
        );
        assert_eq!(
            judge_text("198.51.100.0/24", &[], &[]).status,
            CheckStatus::Missing
        );
    }

    #[test]
    fn route6_objects_for_v6_and_never_route_for_v6() {
        let v6 = route("2001:db8:1000::/36", "AS64500", "TEST", TOKEN);
        assert_eq!(
            judge_text("2001:db8:1000::/36", &[v6], &[]).status,
            CheckStatus::Valid
        );
        let host_bits = route("198.51.100.1/24", "AS64500", "TEST", TOKEN);
        assert_eq!(
            judge_text("198.51.100.0/24", &[host_bits], &[]).status,
            CheckStatus::Missing
        );
    }

    #[test]
    fn server_errors_are_unreachable() {
        let prefix: IpNet = "198.51.100.0/24".parse().expect("prefix");
        let settings = settings();
        let queries = queries(prefix);
        let query = Query {
            prefix,
            origin_asn: 64500,
            token: TOKEN,
            settings: &settings,
            queries: &queries,
        };
        for answers in [
            Err("cannot connect".to_string()),
            Ok(vec![
                Answer::Error("Invalid input".into()),
                Answer::NotFound,
            ]),
            Ok(vec![Answer::NotFound]),
            Ok(vec![
                Answer::Data("<html>garbage</html>".into()),
                Answer::NotFound,
            ]),
        ] {
            assert_eq!(verdict(&query, answers, 0).status, CheckStatus::Unreachable);
        }
    }

    #[test]
    fn fuzz_entry_on_a_valid_answer() {
        let object = route("198.51.100.0/24", "AS64500", "TEST", "topologyd-fuzz-token");
        let framed = format!("A{}\n{object}C\nD\n", object.len());
        assert_eq!(fuzz_whois_answer(framed.as_bytes()), CheckStatus::Valid);
        assert_eq!(
            fuzz_whois_answer(b"\x00\xff garbage"),
            CheckStatus::Unreachable
        );
    }

    #[tokio::test]
    async fn no_server_is_unreachable() {
        let prefix: IpNet = "198.51.100.0/24".parse().expect("prefix");
        let evidence = check_irr(&IrrSettings::default(), prefix, 64500, TOKEN).await;
        assert_eq!(evidence.status, CheckStatus::Unreachable);
    }

    proptest::proptest! {
        /// Whatever objects the server returns, valid means an exact, accepted object with our
        /// origin and the token exists among them.
        #[test]
        fn valid_only_with_an_exact_accepted_object(
            picks in proptest::collection::vec((0usize..3, 0usize..3, 0usize..2, 0usize..3), 0..5),
        ) {
            let prefixes = ["198.51.100.0/24", "198.51.0.0/16", "198.51.100.0/25"];
            let origins = ["AS64500", "AS64999", "as64500"];
            let sources = ["TEST", "OTHER"];
            let remarks = [TOKEN, "something else", ""];
            let objects: Vec<String> = picks
                .iter()
                .map(|(p, o, s, r)| route(prefixes[*p], origins[*o], sources[*s], remarks[*r]))
                .collect();
            let evidence = judge_text("198.51.100.0/24", &objects, &objects);
            let expected_valid = picks.iter().any(|(p, o, s, r)| *p == 0 && *o != 1 && *s == 0 && *r == 0);
            proptest::prop_assert_eq!(evidence.status == CheckStatus::Valid, expected_valid);
        }
    }
}
