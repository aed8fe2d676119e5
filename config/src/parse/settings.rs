//! The topology's one `[settings]` table: announce-length ranges per family and the blast-radius
//! thresholds, each checked with its error at the value.

use toml::Spanned;

use super::values::check_spanned_name;
use crate::diagnostic::Collector;
use crate::file::SettingsFile;
use crate::model::{LengthLimits, OnboardingPolicy, Settings};
use crate::source::{Span, span_of};

/// Reads one file's `[settings]` into `settings_out`; a second `[settings]` in another file
/// (`settings_seen` remembers the first) is an error.
pub(super) fn convert_settings(
    source_id: u32,
    settings: Spanned<SettingsFile>,
    settings_seen: &mut Option<Span>,
    settings_out: &mut Settings,
    collector: &mut Collector,
) {
    let span = span_of(source_id, &settings);
    if settings_seen.is_some() {
        collector.error(
            Some(span),
            "[settings] is defined in more than one file",
            Some("keep one [settings] table for the whole topology".into()),
        );
    }
    *settings_seen = Some(span);
    let settings = settings.into_inner();
    if let Some(limits) = settings.ipv4_announce_lengths {
        settings_out.ipv4_announce_lengths = LengthLimits {
            shortest: limits.shortest,
            longest: limits.longest,
        };
    }
    if let Some(limits) = settings.ipv6_announce_lengths {
        settings_out.ipv6_announce_lengths = LengthLimits {
            shortest: limits.shortest,
            longest: limits.longest,
        };
    }
    for (limits, family_bits, family) in [
        (settings_out.ipv4_announce_lengths, 32, "ipv4"),
        (settings_out.ipv6_announce_lengths, 128, "ipv6"),
    ] {
        if limits.shortest > limits.longest || limits.longest > family_bits {
            collector.error(
                Some(span),
                format!(
                    "{family}_announce_lengths {{ shortest = {}, longest = {} }} is not a \
                         valid range",
                    limits.shortest, limits.longest
                ),
                Some(format!(
                    "shortest must not exceed longest, and longest must be at most {family_bits}"
                )),
            );
        }
    }
    if let Some(onboarding) = settings.onboarding {
        let span = span_of(source_id, &onboarding);
        let onboarding = onboarding.into_inner();
        check_spanned_name(
            source_id,
            "operator_owner",
            &onboarding.operator_owner,
            collector,
        );
        settings_out.onboarding = Some(OnboardingPolicy {
            operator_owner: onboarding.operator_owner.into_inner(),
            evidence_keys: onboarding
                .evidence_keys
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            revoked: onboarding
                .revoked
                .iter()
                .map(|digest| digest.to_ascii_lowercase())
                .collect(),
            span,
        });
    }
    if let Some(blast_radius) = settings.blast_radius {
        if let Some(routes) = &blast_radius.small_change_routes {
            settings_out.small_change_routes = *routes.get_ref();
        }
        for (value, target) in [
            (
                blast_radius.max_withdrawn_pair_share,
                &mut settings_out.max_withdrawn_pair_share,
            ),
            (
                blast_radius.max_affected_location_share,
                &mut settings_out.max_affected_location_share,
            ),
        ] {
            if let Some(value) = value {
                let share = *value.get_ref();
                if (0.0..=1.0).contains(&share) {
                    *target = share;
                } else {
                    collector.error(
                        Some(span_of(source_id, &value)),
                        format!("blast-radius share {share} is outside 0.0..=1.0"),
                        Some("write a share such as 0.10 for ten percent".into()),
                    );
                }
            }
        }
    }
}
