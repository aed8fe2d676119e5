//! `[[location]]` tables: every name and tag checked (length, characters), the tag count bounded.

use super::values::{check_spanned_name, located_string};
use crate::bounds;
use crate::diagnostic::Collector;
use crate::file::LocationFile;
use crate::model::{Located, RawLocation};
use crate::source::span_of;
use crate::text::escape_text;

/// Appends one file's locations to `locations`.
pub(super) fn convert_locations(
    source_id: u32,
    files: Vec<LocationFile>,
    locations: &mut Vec<RawLocation>,
    collector: &mut Collector,
) {
    for location in files {
        for (what, value) in [
            ("location name", &location.name),
            ("region", &location.region),
            ("metro", &location.metro),
            ("country", &location.country),
        ]
        .into_iter()
        .chain(location.tags.iter().map(|tag| ("tag", tag)))
        {
            check_spanned_name(source_id, what, value, collector);
        }
        if location.tags.len() > bounds::MAX_TAGS_PER_LOCATION {
            collector.error(
                Some(span_of(source_id, &location.name)),
                format!(
                    "location `{}` has {} tags, more than the limit of {}",
                    escape_text(location.name.get_ref()),
                    location.tags.len(),
                    bounds::MAX_TAGS_PER_LOCATION
                ),
                Some("tag locations by role; a selector can combine tags".into()),
            );
        }
        locations.push(RawLocation {
            name: located_string(source_id, location.name),
            region: located_string(source_id, location.region),
            metro: located_string(source_id, location.metro),
            country: located_string(source_id, location.country),
            tags: location
                .tags
                .into_iter()
                .map(|tag| located_string(source_id, tag))
                .collect(),
            state: Located::new(
                *location.state.get_ref(),
                span_of(source_id, &location.state),
            ),
        });
    }
}
