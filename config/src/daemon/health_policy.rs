//! The daemon's `[health]` section and its `[health.vars]` placeholders: the fail-static policy,
//! the interface that receives the services' local addresses, and the values probe targets may
//! name as `{name}`, each checked with its error at the value.

use std::collections::BTreeMap;

use toml::Spanned;

use super::file::{HealthFile, checked_value, span_of};
use super::model::{DEFAULT_FAIL_STATIC_MIN_SERVICES, DEFAULT_FAIL_STATIC_SHARE, HealthConfig};
use crate::diagnostic::Collector;
use crate::health::{BUILTIN_PLACEHOLDERS, is_placeholder_name};

/// Linux network interface names are at most this long (`IFNAMSIZ` 16, with the NUL).
pub const MAX_INTERFACE_NAME_LENGTH: usize = 15;

/// `[health]` and `[health.vars]`, defaults filled in.
pub(super) fn convert_health(file: HealthFile, collector: &mut Collector) -> HealthConfig {
    let defaults = HealthConfig::default();
    let fail_static_share = checked_value(
        &file.fail_static_share,
        defaults.fail_static_share,
        collector,
        |fail_static_share| {
            (!(fail_static_share > 0.0 && fail_static_share <= 1.0)).then(|| {
            (
            format!("fail_static_share = {fail_static_share} is outside 0 < share ≤ 1"),
            Some(format!(
                "write a share such as {DEFAULT_FAIL_STATIC_SHARE} (fail static when more than \
                 half of the checked services are unhealthy at once)"
            )),
            )
        })
        },
    );
    let fail_static_min_services = checked_value(
        &file.fail_static_min_services,
        defaults.fail_static_min_services,
        collector,
        |fail_static_min_services| {
            (fail_static_min_services == 0).then(|| {
                (
                    "fail_static_min_services must be at least 1",
                    Some(format!(
                        "write fail_static_min_services = {DEFAULT_FAIL_STATIC_MIN_SERVICES} (the \
                 default): one unhealthy service alone is just down"
                    )),
                )
            })
        },
    );
    let address_interface = file
        .address_interface
        .and_then(|name| check_address_interface(name, collector));
    let vars = convert_vars(file.vars, collector);
    HealthConfig {
        enabled: file.enabled.unwrap_or(defaults.enabled),
        fail_static_share,
        fail_static_min_services,
        min_other_locations: file
            .min_other_locations
            .unwrap_or(defaults.min_other_locations),
        vars,
        address_interface,
    }
}

/// `address_interface`: a Linux interface name (1 to 15 bytes, no `/`, no spaces, not `.` or
/// `..`); `None` when it is not one.
fn check_address_interface(name: Spanned<String>, collector: &mut Collector) -> Option<String> {
    let problem = if name.get_ref().is_empty() {
        Some("address_interface is empty".to_string())
    } else if name.get_ref().len() > MAX_INTERFACE_NAME_LENGTH {
        Some(format!(
            "interface name `{}` is longer than {MAX_INTERFACE_NAME_LENGTH} bytes",
            name.get_ref()
        ))
    } else if matches!(name.get_ref().as_str(), "." | "..")
        || name
            .get_ref()
            .contains(|character: char| character == '/' || character.is_whitespace())
    {
        Some(format!(
            "`{}` is not a valid interface name",
            name.get_ref()
        ))
    } else {
        None
    };
    match problem {
        Some(message) => {
            collector.error(
                Some(span_of(&name)),
                message,
                Some(
                    "name the interface that receives the services' local addresses, such \
                         as \"lo\" (Linux names are 1 to 15 bytes without / or spaces); leave \
                         address_interface out to bind nothing"
                        .into(),
                ),
            );
            None
        }
        None => Some(name.into_inner()),
    }
}

/// `[health.vars]`: placeholder names that are valid and not filled from the topology's location.
fn convert_vars(
    file: BTreeMap<Spanned<String>, Spanned<String>>,
    collector: &mut Collector,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for (key, value) in file {
        let name = key.get_ref();
        if !is_placeholder_name(name) {
            collector.error(
                Some(span_of(&key)),
                format!("`{name}` is not a valid placeholder name"),
                Some(
                    "use lower-case letters, digits and _, such as probe_host; probe targets \
                     write it as {probe_host}"
                        .into(),
                ),
            );
        } else if BUILTIN_PLACEHOLDERS.contains(&name.as_str()) {
            collector.error(
                Some(span_of(&key)),
                format!("`{name}` is filled from the topology's location and cannot be set here"),
                Some(format!(
                    "{{{name}}} is always this location's {name}; pick another name, such as \
                     probe_{name}"
                )),
            );
        } else {
            vars.insert(key.into_inner(), value.into_inner());
        }
    }
    vars
}
