//! `[[prefix]]` and `[[binding]]` tables, the bulk of a large topology (the fast path reads most of
//! them): CIDR text, announce modes, ROAs, and the owner, token and service names checked.

use super::values::{check_name, check_spanned_name, parse_cidr};
use crate::diagnostic::Collector;
use crate::file::{BindingFile, PrefixFile};
use crate::model::{
    AnnounceMode, Located, Names, PrefixEvidence, RawBinding, RawOwnership, RawPrefix, Roa,
    ValueSpans,
};
use crate::source::span_of;
use crate::split::Tables;

/// One file's prefix and binding tables converted as the per-table reader hands them over.
/// Their findings are kept apart, prefixes' and bindings', and [`Self::finish`] adds them to
/// the parse's findings in the order converting the whole file at once reports them (which
/// decides which findings are kept past the limit). A file the reader gives up on is rolled
/// back, items and findings ([`Self::roll_back`]), and read again whole.
pub(super) struct StreamedTables<'a> {
    source_id: u32,
    prefixes: &'a mut Vec<RawPrefix>,
    bindings: &'a mut Vec<RawBinding>,
    names: &'a mut Names,
    /// The lengths of `prefixes` and `bindings` before this file.
    before: (usize, usize),
    prefix_findings: Collector,
    binding_findings: Collector,
}

impl<'a> StreamedTables<'a> {
    pub(super) fn new(
        source_id: u32,
        prefixes: &'a mut Vec<RawPrefix>,
        bindings: &'a mut Vec<RawBinding>,
        names: &'a mut Names,
    ) -> Self {
        let before = (prefixes.len(), bindings.len());
        StreamedTables {
            source_id,
            prefixes,
            bindings,
            names,
            before,
            prefix_findings: Collector::new(),
            binding_findings: Collector::new(),
        }
    }

    /// Forgets every table taken from this file.
    pub(super) fn roll_back(&mut self) {
        self.prefixes.truncate(self.before.0);
        self.bindings.truncate(self.before.1);
        self.prefix_findings = Collector::new();
        self.binding_findings = Collector::new();
    }

    /// Adds the findings of the tables taken to `collector`: prefixes', then bindings'.
    pub(super) fn finish(self, collector: &mut Collector) {
        collector.append(self.prefix_findings);
        collector.append(self.binding_findings);
    }
}

impl Tables for StreamedTables<'_> {
    fn take(&mut self, prefixes: &mut Vec<PrefixFile>, bindings: &mut Vec<BindingFile>) {
        convert_prefixes(
            self.source_id,
            prefixes.drain(..),
            self.prefixes,
            self.names,
            &mut self.prefix_findings,
        );
        convert_bindings(
            self.source_id,
            bindings.drain(..),
            self.bindings,
            self.names,
            &mut self.binding_findings,
        );
    }

    /// Sized exactly for the first file that holds tables; grown as usual (doubling) for
    /// later ones, so many large files do not copy the list once each.
    fn expect(&mut self, prefixes: usize, bindings: usize) {
        reserve_for(self.prefixes, prefixes);
        reserve_for(self.bindings, bindings);
    }
}

/// Room in `list` for `coming` more items.
fn reserve_for<T>(list: &mut Vec<T>, coming: usize) {
    if list.is_empty() {
        list.reserve_exact(coming);
    } else {
        list.reserve(coming);
    }
}

/// Appends one file's prefixes to `prefixes`; a prefix whose CIDR does not parse is left out.
pub(super) fn convert_prefixes(
    source_id: u32,
    files: impl ExactSizeIterator<Item = PrefixFile>,
    prefixes: &mut Vec<RawPrefix>,
    names: &mut Names,
    collector: &mut Collector,
) {
    prefixes.reserve(files.len());
    for prefix in files {
        // `owner` and the tokens keep no span of their own: reported at the prefix's cidr.
        let prefix_span = span_of(source_id, &prefix.cidr);
        check_name(prefix_span, "owner", &prefix.owner, collector);
        for token in [&prefix.irr_token, &prefix.rdns_token]
            .into_iter()
            .flatten()
        {
            check_name(prefix_span, "token", token, collector);
        }
        let Some(cidr) = parse_cidr(source_id, &prefix.cidr, "prefix", collector) else {
            continue;
        };
        let (announce, announce_span) = match &prefix.announce {
            Some(announce) => (announce.get_ref().0, span_of(source_id, announce)),
            None => (AnnounceMode::Aggregate, cidr.span),
        };
        let (roa, roa_span) = match prefix.roa {
            Some(roa) => {
                let span = span_of(source_id, &roa);
                let roa = roa.into_inner();
                let roa = Roa {
                    asn: roa.asn,
                    max_length: roa.max_length,
                };
                (Some(roa), span)
            }
            None => (None, cidr.span),
        };
        prefixes.push(RawPrefix {
            cidr: cidr.value,
            origin_asn: *prefix.origin_asn.get_ref(),
            owner: names.intern(&prefix.owner),
            advertise: prefix.advertise,
            announce,
            roa,
            spans: ValueSpans::new([
                cidr.span,
                span_of(source_id, &prefix.origin_asn),
                announce_span,
                roa_span,
            ]),
            rpki: prefix.rpki.unwrap_or_default(),
            ownership: RawOwnership::boxed(
                prefix.irr_token,
                prefix.rdns_token,
                prefix.evidence.map(|evidence| {
                    let span = span_of(source_id, &*evidence);
                    let evidence = evidence.into_inner();
                    Located::new(
                        PrefixEvidence {
                            longest_announced: evidence.longest_announced,
                            token_sha256: evidence.token_sha256,
                            checks: evidence.checks,
                            verified_at: evidence.verified_at,
                            key: evidence.key,
                            signature: evidence.signature,
                        },
                        span,
                    )
                }),
            ),
        });
    }
}

/// Appends one file's bindings to `bindings`; a binding whose CIDR does not parse is left out.
pub(super) fn convert_bindings(
    source_id: u32,
    files: impl ExactSizeIterator<Item = BindingFile>,
    bindings: &mut Vec<RawBinding>,
    names: &mut Names,
    collector: &mut Collector,
) {
    bindings.reserve(files.len());
    for binding in files {
        check_spanned_name(source_id, "service name", &binding.service, collector);
        let Some(cidr) = parse_cidr(source_id, &binding.cidr, "binding", collector) else {
            continue;
        };
        bindings.push(RawBinding {
            cidr: cidr.value,
            service: names.intern(binding.service.get_ref()),
            spans: ValueSpans::new([cidr.span, span_of(source_id, &binding.service)]),
        });
    }
}

/// The bindings of the tables in `ranges` of `text` (each range starting at a line's start,
/// spans counted from the start of `text`, the file being source `source_id`), read by the line
/// scanner: `None` unless every range is ASCII and holds only `[[binding]]` tables in its
/// simple subset (`fast.rs`) that convert without a finding. What an incremental compile
/// reads of a large file of bindings of which a push changed a few tables: for those tables,
/// when each range starts at the top level of the file (not inside a multi-line value), the
/// items, spans and names a parse of the whole file gives, the names interned in `names`.
pub fn read_binding_tables(
    source_id: u32,
    text: &str,
    ranges: &[std::ops::Range<usize>],
    names: &mut Names,
) -> Option<Vec<RawBinding>> {
    let mut prefix_files = Vec::new();
    let mut binding_files = Vec::new();
    for range in ranges {
        if !text.get(range.clone())?.is_ascii() {
            return None;
        }
        crate::fast::read_until(text, range.clone(), &mut prefix_files, &mut binding_files).ok()?;
        if !prefix_files.is_empty() {
            return None;
        }
    }
    let mut bindings = Vec::new();
    let mut findings = Collector::new();
    convert_bindings(
        source_id,
        binding_files.into_iter(),
        &mut bindings,
        names,
        &mut findings,
    );
    findings.is_empty().then_some(bindings)
}
