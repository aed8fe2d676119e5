//! The document that replaces a Letter of Agency: for one verified prefix, who may originate it
//! (the authorised origin ASN), the checks performed with their evidence and times, the ROAs
//! seen, and the signature with the onboarding key's fingerprint — so that an adjacent network
//! can accept the route and check the claim. Rendered as a PDF (A4, the built-in Helvetica and
//! Courier fonts, nothing embedded) and as JSON with the same content.
//!
//! Owns: the document's content and layout. Must not touch: the store, the checks.

use pdf_writer::{Content, Finish as _, Name, Pdf, Rect, Ref, Str};
use serde::Serialize;
use topologyd_ownership::evidence::{SigningKey, check_name, key_fingerprint, key_text};
use topologyd_ownership::{CheckEvidence, CheckKind, CheckStatus, Onboarding, OnboardingState};

use crate::render::rfc3339;

/// A4 in points, and the margins.
const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
/// Characters per line for body text (Helvetica 10 pt) and for evidence (Courier 8 pt).
const BODY_COLUMNS: usize = 92;
const MONO_COLUMNS: usize = 100;

/// Everything the document states.
#[derive(Debug, Clone, Serialize)]
pub struct LoaContent {
    pub prefix: String,
    pub owner: String,
    pub authorised_origin_asn: u32,
    pub operator: String,
    pub operator_asn: u32,
    pub state: &'static str,
    pub verified_at: String,
    pub token_sha256: String,
    pub checks: Vec<CheckEvidence>,
    pub roas_seen: Vec<String>,
    pub key_id: String,
    pub public_key: String,
    pub key_fingerprint: String,
    pub signature: String,
    /// The exact text the signature covers (UTF-8, one `name=value` per line).
    pub signed_message: String,
    pub generated_at: String,
}

/// The document's content for a valid onboarding; `None` for any other (nothing to attest).
pub fn content(
    onboarding: &Onboarding,
    key: &SigningKey,
    operator: &str,
    operator_asn: u32,
    now_unix: u64,
) -> Option<LoaContent> {
    if onboarding.state != OnboardingState::Valid {
        return None;
    }
    let evidence = onboarding.evidence.as_ref()?;
    let public = key.verifying_key();
    Some(LoaContent {
        prefix: onboarding.token.prefix.to_string(),
        owner: onboarding.token.owner.clone(),
        authorised_origin_asn: onboarding.token.origin_asn,
        operator: operator.to_string(),
        operator_asn,
        state: onboarding.state.as_str(),
        verified_at: rfc3339(evidence.claim.verified_at_unix),
        token_sha256: evidence.claim.token_sha256.clone(),
        checks: onboarding.checks.clone(),
        roas_seen: onboarding
            .checks
            .iter()
            .filter(|check| check.kind == CheckKind::Roa)
            .flat_map(|check| check.found.iter().cloned())
            .collect(),
        key_id: evidence.key_id.clone(),
        public_key: key_text(&public),
        key_fingerprint: key_fingerprint(&public),
        signature: evidence.signature.clone(),
        signed_message: String::from_utf8_lossy(&evidence.claim.message()).into_owned(),
        generated_at: rfc3339(now_unix),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Title,
    Heading,
    Body,
    Mono,
}

impl Style {
    fn font(self) -> (Name<'static>, f32, f32) {
        match self {
            Style::Title => (Name(b"FB"), 16.0, 24.0),
            Style::Heading => (Name(b"FB"), 11.0, 18.0),
            Style::Body => (Name(b"FR"), 10.0, 13.0),
            Style::Mono => (Name(b"FM"), 8.0, 10.0),
        }
    }
}

/// The document as styled lines, wrapped to the page width.
fn lines(content: &LoaContent) -> Vec<(Style, String)> {
    let mut lines: Vec<(Style, String)> = Vec::new();
    let mut push = |style: Style, text: String| {
        let columns = if style == Style::Mono {
            MONO_COLUMNS
        } else {
            BODY_COLUMNS
        };
        for line in wrap(&text, columns) {
            lines.push((style, line));
        }
    };
    push(
        Style::Title,
        format!("Route origin authorisation: {}", content.prefix),
    );
    push(
        Style::Body,
        format!(
            "{} (AS{}) states that the holder \"{}\" of {} has proven control of the prefix and has authorised AS{} to originate it. This document replaces a Letter of Agency; its claims are signed and can be checked with the public key below.",
            content.operator,
            content.operator_asn,
            content.owner,
            content.prefix,
            content.authorised_origin_asn
        ),
    );
    push(Style::Heading, "Authorisation".into());
    for (name, value) in [
        ("Prefix", content.prefix.clone()),
        ("Holder", content.owner.clone()),
        (
            "Authorised origin ASN",
            format!("AS{}", content.authorised_origin_asn),
        ),
        ("State", content.state.to_string()),
        ("Verified at", content.verified_at.clone()),
        ("Validation token (SHA-256)", content.token_sha256.clone()),
    ] {
        push(Style::Body, format!("{name}: {value}"));
    }
    push(Style::Heading, "Checks performed".into());
    for check in &content.checks {
        push(
            Style::Body,
            format!(
                "{} - {} at {} from {}",
                check_name(check.kind),
                status_name(check.status),
                rfc3339(check.checked_at_unix),
                if check.server.is_empty() {
                    "-"
                } else {
                    &check.server
                }
            ),
        );
        push(Style::Mono, format!("  {}", check.detail));
        for query in &check.queried {
            push(Style::Mono, format!("  asked: {query}"));
        }
        for found in &check.found {
            push(Style::Mono, format!("  found: {found}"));
        }
    }
    push(Style::Heading, "ROAs seen".into());
    if content.roas_seen.is_empty() {
        push(Style::Body, "none".into());
    }
    for roa in &content.roas_seen {
        push(Style::Mono, format!("  {roa}"));
    }
    push(Style::Heading, "Signature".into());
    push(Style::Body, format!("Key id: {}", content.key_id));
    push(
        Style::Body,
        "Key fingerprint (SHA-256 of the Ed25519 public key):".into(),
    );
    push(Style::Mono, format!("  {}", content.key_fingerprint));
    push(Style::Body, "Public key:".into());
    push(Style::Mono, format!("  {}", content.public_key));
    push(Style::Body, "Ed25519 signature of the evidence:".into());
    push(Style::Mono, format!("  {}", content.signature));
    push(Style::Body, "The signed text:".into());
    for line in content.signed_message.lines() {
        push(Style::Mono, format!("  {line}"));
    }
    push(
        Style::Body,
        format!("Generated at {} by topoctl.", content.generated_at),
    );
    lines
}

/// A check's status as the JSON writes it.
pub(crate) fn status_name(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Valid => "valid",
        CheckStatus::Missing => "missing",
        CheckStatus::Invalid => "invalid",
        CheckStatus::MismatchAsn => "mismatch_asn",
        CheckStatus::Unreachable => "unreachable",
    }
}

/// `text` in lines of at most `columns` characters, broken at spaces where possible; only
/// printable ASCII is kept (the base fonts' standard encoding), anything else becomes `?`.
fn wrap(text: &str, columns: usize) -> Vec<String> {
    let clean: String = text
        .chars()
        .map(|character| {
            if character == ' ' || character.is_ascii_graphic() {
                character
            } else {
                '?'
            }
        })
        .collect();
    let mut lines = Vec::new();
    let mut rest = clean.as_str();
    while rest.len() > columns {
        let cut = rest[..columns]
            .rfind(' ')
            .filter(|cut| *cut > columns / 2)
            .unwrap_or(columns);
        lines.push(rest[..cut].to_string());
        rest = rest[cut..].trim_start();
    }
    lines.push(rest.to_string());
    lines
}

/// The document as a PDF, as many A4 pages as it needs.
pub fn render_pdf(content: &LoaContent) -> Vec<u8> {
    let lines = lines(content);
    let mut pages: Vec<Vec<(Style, String)>> = vec![Vec::new()];
    let mut used = 0.0_f32;
    for line in lines {
        let (_, _, leading) = line.0.font();
        if used + leading > PAGE_HEIGHT - 2.0 * MARGIN {
            pages.push(Vec::new());
            used = 0.0;
        }
        used += leading;
        if let Some(page) = pages.last_mut() {
            page.push(line);
        }
    }
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let fonts = [
        (Name(b"FR"), Ref::new(3), b"Helvetica".as_slice()),
        (Name(b"FB"), Ref::new(4), b"Helvetica-Bold"),
        (Name(b"FM"), Ref::new(5), b"Courier"),
    ];
    let first_page = 6;
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|index| Ref::new(first_page + 2 * i32::try_from(index).unwrap_or(0)))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(i32::try_from(page_ids.len()).unwrap_or(i32::MAX));
    for (_, id, base) in fonts {
        pdf.type1_font(id).base_font(Name(base));
    }
    let total = pages.len();
    for (index, (page_lines, page_id)) in pages.into_iter().zip(&page_ids).enumerate() {
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT));
        page.parent(tree);
        page.contents(content_id);
        {
            let mut resources = page.resources();
            let mut font_map = resources.fonts();
            for (name, id, _) in fonts {
                font_map.pair(name, id);
            }
        }
        page.finish();
        let mut stream = Content::new();
        let mut y = PAGE_HEIGHT - MARGIN;
        for (style, text) in &page_lines {
            let (font, size, leading) = style.font();
            y -= leading;
            stream.begin_text();
            stream.set_font(font, size);
            stream.next_line(MARGIN, y);
            stream.show(Str(text.as_bytes()));
            stream.end_text();
        }
        let footer = format!("{} - page {} of {}", content.prefix, index + 1, total);
        stream.begin_text();
        stream.set_font(Name(b"FR"), 8.0);
        stream.next_line(MARGIN, MARGIN / 2.0);
        stream.show(Str(footer.as_bytes()));
        stream.end_text();
        pdf.stream(content_id, &stream.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_wrap_at_spaces_and_non_ascii_is_replaced() {
        let lines = wrap(&format!("{} {}", "a".repeat(60), "b".repeat(60)), 92);
        assert_eq!(lines, ["a".repeat(60), "b".repeat(60)]);
        assert_eq!(wrap("café", 10), ["caf?"]);
        assert_eq!(wrap(&"x".repeat(250), 100).len(), 3);
    }
}
