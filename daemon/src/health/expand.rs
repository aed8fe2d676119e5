//! Placeholder expansion of health-check targets: `{name}` in a probe target replaced by the
//! location's attributes and the daemon's `[health.vars]`, with an error naming the unknown
//! placeholder, the check and the known names.

use std::collections::BTreeMap;

use thiserror::Error;
use topologyd_config::health::{HealthSpec, ProbeSpec, is_placeholder_name};
use topologyd_topology::Location;

use super::probe_label;

/// A probe target names a placeholder nobody defines.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "service `{service}`: health check {check} ({label}) names the unknown placeholder \
     `{{{placeholder}}}` (known: {known})"
)]
pub struct ExpandError {
    pub service: String,
    /// 1-based position of the check in the service's list.
    pub check: usize,
    pub label: String,
    pub placeholder: String,
    pub known: String,
}

/// Replaces every `{name}` in the probe targets of `spec` (HTTP url, TCP address, DNS server,
/// name and expected address, exec argv) with `vars[name]`. A `{` not followed by a placeholder
/// name ([`is_placeholder_name`]: `a-z`, `0-9`, `_`) and `}` is kept as written; an unknown name
/// is an error that names it and the service. `vars` holds `location`, `region`, `metro`,
/// `country` and the daemon's `[health.vars]`: see [`placeholder_vars`].
pub fn expand(
    service: &str,
    spec: &HealthSpec,
    vars: &BTreeMap<String, String>,
) -> Result<HealthSpec, ExpandError> {
    let mut expanded = spec.clone();
    for (index, check) in expanded.checks.iter_mut().enumerate() {
        let label = probe_label(check);
        let fail = |placeholder: String| ExpandError {
            service: service.to_string(),
            check: index + 1,
            label: label.clone(),
            placeholder,
            known: if vars.is_empty() {
                "none".to_string()
            } else {
                vars.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        };
        let one = |text: &mut String| -> Result<(), ExpandError> {
            *text = expand_text(text, vars).map_err(fail)?;
            Ok(())
        };
        match check {
            ProbeSpec::Http { url, .. } => one(url)?,
            ProbeSpec::Tcp { address } => one(address)?,
            ProbeSpec::Dns {
                server,
                name,
                expect,
                ..
            } => {
                one(server)?;
                one(name)?;
                if let Some(expect) = expect {
                    one(expect)?;
                }
            }
            ProbeSpec::Exec { command } => {
                for argument in command {
                    one(argument)?;
                }
            }
        }
    }
    Ok(expanded)
}

/// The values of the placeholders at `location`: its `location` (name), `region`, `metro` and
/// `country`, plus the daemon's `[health.vars]` (which the configuration parser keeps from
/// redefining those four; should one slip through, the location's value wins).
pub fn placeholder_vars(
    location: &Location,
    vars: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all = vars.clone();
    all.insert("location".to_string(), location.name.clone());
    all.insert("region".to_string(), location.region.clone());
    all.insert("metro".to_string(), location.metro.clone());
    all.insert("country".to_string(), location.country.clone());
    all
}

/// Expands one string; `Err(name)` for the first unknown placeholder.
fn expand_text(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let placeholder = after
            .find('}')
            .map(|close| &after[..close])
            .filter(|name| is_placeholder_name(name));
        if let Some(name) = placeholder {
            let name_len = name.len();
            let value = vars.get(name).ok_or_else(|| name.to_string())?;
            out.push_str(value);
            rest = &after[name_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}
