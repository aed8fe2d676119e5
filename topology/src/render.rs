//! The human-readable form of a [`Plan`]: verdict, compile warnings and summary first, then
//! callouts, then guard refusals with the argument that would lift each (G3 first: when it
//! refuses, every other hint says that it is not enough), then the changes per service with
//! collapsed location lists (`ams01..ams09 (9), fra01`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::LocationSet;
use crate::plan::{Callout, Guard, GuardViolation, Plan, RouteChange};

/// At most this many routes are named in one sentence.
const NAMED_ROUTES: usize = 8;

/// At most this many binding changes are listed in the text form.
const LISTED_BINDINGS: usize = 20;
/// At most this many refusals per guard are listed in the text form.
const LISTED_VIOLATIONS: usize = 50;
/// At most this many routes per service are listed in the text form.
const LISTED_ROUTES: usize = 100;

/// Splits `ams012` into (`ams`, 12, 3 digits).
fn split_number(name: &str) -> Option<(&str, u64, usize)> {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == name.len() {
        return None;
    }
    let (stem, number) = name.split_at(name.len() - digits);
    Some((stem, number.parse().ok()?, digits))
}

/// Collapses runs of consecutively numbered names: `ams01, ams02, ams03, fra01` becomes
/// `ams01..ams03 (3), fra01`. Expects sorted names.
pub fn collapse_locations<S: AsRef<str>>(names: &[S]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < names.len() {
        let first = names[index].as_ref();
        let mut end = index;
        if let Some((stem, number, width)) = split_number(first) {
            while let Some(next) = names.get(end + 1) {
                match split_number(next.as_ref()) {
                    Some((next_stem, next_number, next_width))
                        if next_stem == stem
                            && next_width == width
                            && next_number == number + (end + 1 - index) as u64 =>
                    {
                        end += 1;
                    }
                    _ => break,
                }
            }
        }
        let run = end - index + 1;
        if run >= 3 {
            parts.push(format!("{first}..{} ({run})", names[end].as_ref()));
        } else {
            for name in &names[index..=end] {
                parts.push(name.as_ref().to_string());
            }
        }
        index = end + 1;
    }
    if parts.is_empty() {
        "(none)".to_string()
    } else {
        parts.join(", ")
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0.0%".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

impl Plan {
    /// The plan for people: summary first, then callouts, refusals, and changes per service.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        self.write_verdict(&mut out);
        self.write_summary(&mut out);
        self.write_rpki(&mut out);
        self.write_callouts(&mut out);
        self.write_refusals(&mut out);
        self.write_binding_changes(&mut out);
        self.write_changes_per_service(&mut out);
        out
    }

    /// The verdict line, compile warnings, and the overrides that allowed or did nothing.
    fn write_verdict(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "plan: generation {} ({}) -> {} ({}): {} (exit {})",
            self.old_generation,
            short(&self.old_hash),
            self.new_generation,
            short(&self.new_hash),
            self.verdict(),
            self.exit_code()
        );
        for warning in &self.warnings {
            let _ = writeln!(out, "{warning}");
        }
        write_route_sentence(out, &self.global_withdrawals_overridden, |count, names| {
            format!(
                "GLOBAL WITHDRAWAL: {count} route(s) will be announced from no live location, allowed by --override global-withdrawal: {names}"
            )
        });
        for unused in &self.unused_overrides {
            let _ = writeln!(
                out,
                "note: --override {unused} names no route this change leaves on no live location; it is ignored"
            );
        }
    }

    /// How many routes and route x location pairs change, and the blast radius of the change.
    fn write_summary(&self, out: &mut String) {
        let summary = &self.summary;
        let _ = writeln!(
            out,
            "summary: {} route(s) change; route x location: {} announced, {} withdrawn, {} updated",
            summary.routes_changed,
            summary.announced_pairs,
            summary.withdrawn_pairs,
            summary.updated_pairs
        );
        let _ = writeln!(
            out,
            "blast radius: {} route(s) lose locations ({} withdrawn everywhere{}); reach lost: {} of {} announced pairs ({}, budget {:.1}%); {} of {} announcing locations lose, net, more than {:.1}% of their routes ({}, budget {:.1}%); {} route(s) concentrate on less than half of their live locations{}",
            summary.lost_routes,
            summary.withdrawn_everywhere,
            if summary.withdrawn_everywhere > 0
                && summary.withdrawn_everywhere <= summary.small_change_routes
            {
                format!(", not counted: at most {}", summary.small_change_routes)
            } else {
                String::new()
            },
            summary.reach_lost_pairs,
            summary.announced_pairs_before,
            percent(summary.reach_lost_pairs, summary.announced_pairs_before),
            summary.max_withdrawn_pair_share * 100.0,
            summary.locations_hit,
            summary.announcing_locations_before,
            summary.max_withdrawn_pair_share * 100.0,
            percent(summary.locations_hit, summary.announcing_locations_before),
            summary.max_affected_location_share * 100.0,
            summary.concentrated_routes,
            if summary.locations_losing_routes == 1 {
                "; reach is lost at one location only, so the shares do not apply"
            } else {
                ""
            }
        );
    }

    /// RPKI validation of the routes announced after the change, when VRPs were given.
    fn write_rpki(&self, out: &mut String) {
        if let Some(rpki) = &self.rpki {
            let _ = writeln!(
                out,
                "rpki: {} VRPs; announced routes after the change: {} valid, {} invalid, {} not found",
                rpki.vrps, rpki.valid, rpki.invalid, rpki.not_found
            );
            write_route_sentence(out, &rpki.invalid_kept, |count, names| {
                format!(
                    "  ! {count} route(s) announced RPKI-invalid before and after this change (not refused, fix them): {names}"
                )
            });
            write_route_sentence(out, &rpki.not_found_new, |count, names| {
                format!(
                    "  note: {count} newly announced route(s) are not found in the RPKI (no covering ROA): {names}"
                )
            });
        }
    }

    /// Callouts: changes that are allowed but deserve a second look.
    fn write_callouts(&self, out: &mut String) {
        if !self.callouts.is_empty() {
            let _ = writeln!(out, "\ncallouts:");
            for callout in &self.callouts {
                match callout {
                    Callout::SelectorJump {
                        service,
                        before,
                        after,
                        fleet,
                        live_before,
                        live_after,
                        lost,
                        gained,
                    } => {
                        let _ = writeln!(
                            out,
                            "  ! topology of service `{service}` jumps from {before} to {after} live and test location(s) (of {fleet}; live: {live_before} -> {live_after})"
                        );
                        if !lost.is_empty() {
                            let _ = writeln!(out, "      loses: {}", collapse_locations(lost));
                        }
                        if !gained.is_empty() {
                            let _ = writeln!(out, "      gains: {}", collapse_locations(gained));
                        }
                    }
                    Callout::ServiceChangedHands { from, to, routes } => {
                        let listed: Vec<String> =
                            routes.iter().take(8).map(ToString::to_string).collect();
                        let more = if routes.len() > 8 { ", …" } else { "" };
                        let _ = writeln!(
                            out,
                            "  ! {} route(s) move from service `{from}` to `{to}`: {}{more}",
                            routes.len(),
                            listed.join(", ")
                        );
                    }
                    Callout::BoundToPendingService { service, routes } => {
                        let _ = writeln!(
                            out,
                            "  ! {} route(s) announced today become bound to pending service `{service}`, which announces nothing: {}",
                            routes.len(),
                            name_routes(routes)
                        );
                    }
                    Callout::ProductionAtTestLocations { service, locations } => {
                        let _ = writeln!(
                            out,
                            "  ! production service `{service}` is newly announced at test location(s): {}",
                            collapse_locations(locations)
                        );
                    }
                    Callout::DeclaredRoaNotInRpki {
                        prefix,
                        asn,
                        max_length,
                    } => {
                        let _ = writeln!(
                            out,
                            "  ! prefix {prefix} declares roa {{ asn = {asn}, max_length = {max_length} }}, but no VRP covering it authorises AS{asn} up to /{max_length}: the RPKI does not hold that ROA"
                        );
                    }
                    Callout::SimilarAttributeValue {
                        location,
                        attribute,
                        value,
                        similar,
                    } => {
                        let _ = writeln!(
                            out,
                            "  ! location `{location}` has {attribute} `{value}`, which the fleet did not use, and which is one slip from `{similar}`: selectors matching `{similar}` will not match it",
                        );
                    }
                }
            }
        }
    }

    /// Guard refusals, G3 first, at most `LISTED_VIOLATIONS` per guard.
    fn write_refusals(&self, out: &mut String) {
        if !self.violations.is_empty() {
            let _ = writeln!(out, "\nrefused: {}", self.refusal_message());
            let mut shown: BTreeMap<Guard, usize> = BTreeMap::new();
            // G3 first: it decides whether any other hint can help.
            let mut ordered: Vec<&GuardViolation> = self.violations.iter().collect();
            ordered.sort_by_key(|violation| violation.guard() != Guard::G3);
            for violation in ordered {
                let count = shown.entry(violation.guard()).or_default();
                *count += 1;
                if *count <= LISTED_VIOLATIONS {
                    let _ = writeln!(out, "  {}", self.describe_violation(violation));
                }
            }
            for (guard, count) in shown {
                if count > LISTED_VIOLATIONS {
                    let _ = writeln!(
                        out,
                        "  … and {} more {guard:?} refusals (see --json)",
                        count - LISTED_VIOLATIONS
                    );
                }
            }
        }
    }

    /// Binding changes, at most `LISTED_BINDINGS` of them.
    fn write_binding_changes(&self, out: &mut String) {
        if !self.binding_changes.is_empty() {
            let _ = writeln!(out, "\nbindings: {} change(s)", self.binding_changes.len());
            for change in self.binding_changes.iter().take(LISTED_BINDINGS) {
                let _ = match (&change.old_service, &change.new_service) {
                    (Some(old), Some(new)) => {
                        writeln!(out, "  {} moves from `{old}` to `{new}`", change.cidr)
                    }
                    (Some(old), None) => writeln!(out, "  {} (`{old}`) removed", change.cidr),
                    (None, Some(new)) => writeln!(out, "  {} bound to `{new}`", change.cidr),
                    (None, None) => Ok(()),
                };
            }
            if self.binding_changes.len() > LISTED_BINDINGS {
                let _ = writeln!(
                    out,
                    "  … and {} more (see --json)",
                    self.binding_changes.len() - LISTED_BINDINGS
                );
            }
        }
    }

    /// Route changes grouped by service, at most `LISTED_ROUTES` per service.
    fn write_changes_per_service<'p>(&'p self, out: &mut String) {
        let mut by_service: BTreeMap<&str, Vec<&RouteChange>> = BTreeMap::new();
        for change in &self.changes {
            by_service.entry(change.service()).or_default().push(change);
        }
        // The changes share few location sets (their services'): each is collapsed once, not
        // once a change (thousands of changes, hundreds of locations each).
        let mut collapsed: HashMap<&'p LocationSet, String> = HashMap::new();
        let mut names_of = |set: &'p LocationSet| -> String {
            collapsed
                .entry(set)
                .or_insert_with(|| collapse_locations(&self.location_names(set)))
                .clone()
        };
        for (service, changes) in by_service {
            let _ = writeln!(out, "\nservice `{service}`: {} route(s)", changes.len());
            if changes.len() > LISTED_ROUTES {
                let _ = writeln!(out, "  (first {LISTED_ROUTES} listed; see --json for all)");
            }
            for change in changes.into_iter().take(LISTED_ROUTES) {
                let _ = writeln!(out, "  {}", change.prefix);
                if !change.announce.is_empty() {
                    let _ = writeln!(out, "    announce at {}", names_of(&change.announce));
                }
                if !change.update.is_empty() {
                    let what = match (&change.old, &change.new) {
                        (Some(old), Some(new)) if old.service != new.service => {
                            format!("service `{}` -> `{}`", old.service, new.service)
                        }
                        (Some(old), Some(new)) if old.binding != new.binding => {
                            format!("binding {} -> {}", old.binding, new.binding)
                        }
                        _ => "attributes".to_string(),
                    };
                    let _ = writeln!(out, "    update ({what}) at {}", names_of(&change.update));
                }
                for withdrawal in &change.withdrawals {
                    let _ = writeln!(
                        out,
                        "    withdraw from {}: {}",
                        names_of(&withdrawal.locations),
                        withdrawal.cause
                    );
                }
            }
        }
    }
}

fn name_routes(routes: &[ipnet::IpNet]) -> String {
    name_first(routes, ToString::to_string)
}

/// Writes the line `sentence` makes of how many `routes` there are and their first names, unless
/// there are none.
fn write_route_sentence(
    out: &mut String,
    routes: &[ipnet::IpNet],
    sentence: impl FnOnce(usize, String) -> String,
) {
    if !routes.is_empty() {
        let _ = writeln!(out, "{}", sentence(routes.len(), name_routes(routes)));
    }
}

/// The first `NAMED_ROUTES` of `items`, shown by `show`, and how many more there are.
fn name_first<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let listed: Vec<String> = items.iter().take(NAMED_ROUTES).map(show).collect();
    let more = if items.len() > NAMED_ROUTES {
        format!(" and {} more", items.len() - NAMED_ROUTES)
    } else {
        String::new()
    };
    format!("{}{more}", listed.join(", "))
}

impl Plan {
    /// One sentence on what lifts the refusals, G3 first.
    pub fn refusal_message(&self) -> String {
        // G3 and G5 are lifted by no intent and no blast-radius override: they speak alone.
        for guard in [Guard::G3, Guard::G5] {
            let routes: Vec<ipnet::IpNet> = self
                .violations_of(guard)
                .filter_map(GuardViolation::route)
                .collect();
            if routes.is_empty() {
                continue;
            }
            let (count, names) = (routes.len(), name_routes(&routes));
            return if guard == Guard::G3 {
                format!(
                    "G3 refuses {count} route(s) that would be announced from no live location ({names}); no --intent and no --override blast-radius lifts that: each such route needs its own --override global-withdrawal:CIDR, given only if its withdrawal from every location is meant"
                )
            } else {
                format!(
                    "G5 refuses {count} route(s) that would be announced RPKI-invalid ({names}); no argument lifts that: publish ROAs that authorise them first"
                )
            };
        }
        let arguments: Vec<String> = self.unlock_arguments().into_values().flatten().collect();
        format!(
            "every refusal is lifted by intent or override; check each before adding: {}",
            arguments.join(" ")
        )
    }

    /// The G3 warning that opens every other hint when G3 refuses too.
    fn g3_prefix(&self, what: &str) -> String {
        let count = self.violations_of(Guard::G3).count();
        if count == 0 {
            String::new()
        } else {
            format!(
                "even with {what} the change is refused by G3 ({count} route(s) announced from no live location, see above); "
            )
        }
    }

    fn describe_violation(&self, violation: &GuardViolation) -> String {
        // The arguments that lift it, as `Plan::unlock` (and the JSON form) gives them.
        let arguments = self.unlock(violation).arguments;
        match violation {
            GuardViolation::UndeclaredWithdrawal {
                route,
                binding,
                services,
                locations,
                ..
            } => {
                format!(
                    "G2 route {route}, still bound (via {binding}), would be withdrawn from {} live location(s): {}; {}the intent must name {}: {}",
                    locations.len(),
                    collapse_locations(locations),
                    self.g3_prefix("this intent"),
                    services
                        .iter()
                        .map(|service| format!("`{service}`"))
                        .collect::<Vec<_>>()
                        .join(" and "),
                    arguments.join(" ")
                )
            }
            GuardViolation::UndeclaredServiceChange {
                route,
                binding,
                from,
                to,
                ..
            } => {
                format!(
                    "G2 route {route} (binding {binding}) would move from service `{from}` to `{to}`; {}declare it with {}",
                    self.g3_prefix("this intent"),
                    arguments.join(" ")
                )
            }
            GuardViolation::GlobalWithdrawal {
                route,
                service,
                binding,
                bound_to,
                causes,
                locations_lost,
            } => {
                let bound = match (binding, bound_to) {
                    (Some(binding), Some(bound_to)) => {
                        format!("still bound via {binding} to `{bound_to}`")
                    }
                    _ => "no longer bound".to_string(),
                };
                let causes: Vec<String> = causes.iter().map(ToString::to_string).collect();
                format!(
                    "G3 route {route} (service `{service}`, {bound}) would be announced from no live location, losing {} location(s): {}{}; neither intent nor blast-radius lifts this, only --override global-withdrawal:{route}",
                    locations_lost.len(),
                    collapse_locations(locations_lost),
                    if causes.is_empty() {
                        String::new()
                    } else {
                        format!(" (because: {})", causes.join("; "))
                    }
                )
            }
            GuardViolation::BlastRadius {
                withdrawn_pairs,
                announced_pairs,
                max_withdrawn_pair_share,
                affected_locations,
                announcing_locations,
                max_affected_location_share,
                lost_routes,
                small_change_routes,
                locations_losing_routes,
                over_shares,
                concentrated,
            } => {
                let mut reasons = Vec::new();
                if *over_shares {
                    reasons.push(format!(
                        "reach lost: {withdrawn_pairs} of {announced_pairs} route x location pairs ({}, budget {:.1}%); {affected_locations} of {announcing_locations} locations lose, net, more than {:.1}% of their routes ({}, budget {:.1}%); {lost_routes} route(s) lose locations at {locations_losing_routes} locations (withdrawals from every location count beyond {small_change_routes})",
                        percent(*withdrawn_pairs, *announced_pairs),
                        max_withdrawn_pair_share * 100.0,
                        max_withdrawn_pair_share * 100.0,
                        percent(*affected_locations, *announcing_locations),
                        max_affected_location_share * 100.0
                    ));
                }
                if !concentrated.is_empty() {
                    let routes = name_first(concentrated, |item| {
                        format!(
                            "{} ({} -> {} live locations)",
                            item.route, item.live_before, item.live_after
                        )
                    });
                    reasons.push(format!(
                        "{} route(s) would concentrate on less than half of their live locations: {routes}",
                        concentrated.len()
                    ));
                }
                format!(
                    "G4 blast radius: {}; {}split the change or pass --override blast-radius",
                    reasons.join("; "),
                    self.g3_prefix("--override blast-radius")
                )
            }
            GuardViolation::RpkiInvalid {
                route,
                origin_asn,
                state,
                covering,
                locations,
            } => {
                let vrps: Vec<String> = covering
                    .iter()
                    .take(NAMED_ROUTES)
                    .map(ToString::to_string)
                    .collect();
                format!(
                    "G5 route {route} from AS{origin_asn} would be RPKI-{state} at {} location(s) where it was not before: {}; covering VRPs: {}; no argument lifts this: publish a ROA authorising AS{origin_asn} for {route}, or do not announce it",
                    locations.len(),
                    collapse_locations(locations),
                    vrps.join(", ")
                )
            }
            GuardViolation::RpkiNotFound {
                route,
                origin_asn,
                locations,
            } => format!(
                "G5 route {route} from AS{origin_asn} would be announced RPKI-not-found (no VRP covers it) at {} location(s) where it was not before, and its prefix says rpki = \"refuse\": {}; publish a ROA authorising AS{origin_asn} for {route}, or set rpki = \"warn\" on the prefix",
                locations.len(),
                collapse_locations(locations)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_numbered_runs() {
        let names = ["ams01", "ams02", "ams03", "fra01", "fra02", "lhr7", "tst"];
        assert_eq!(
            collapse_locations(&names),
            "ams01..ams03 (3), fra01, fra02, lhr7, tst"
        );
        assert_eq!(collapse_locations::<&str>(&[]), "(none)");
    }
}
