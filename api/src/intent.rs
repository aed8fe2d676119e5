//! What a plan request means to do and what a plan concludes: [`Intent`] (the services a change
//! deliberately affects and the guard exceptions it asks for), [`Override`], [`Verdict`] and the
//! exit codes `topoctl` maps verdicts to. Intent travels as lines on the wire (`service:NAME`,
//! `blast-radius`, `global-withdrawal:CIDR`) and is parsed once, where a request arrives
//! ([`Intent::from_lines`]); the [`lines`] module is that wire form for serde.

use std::collections::BTreeSet;
use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Exit code: the plan changes nothing.
pub const EXIT_NO_CHANGE: i32 = 0;
/// Exit code for callers: bad usage or unreadable files (never produced by a plan).
pub const EXIT_USAGE: i32 = 1;
/// Exit code: the plan changes routes and every guard allows it.
pub const EXIT_CHANGES_ALLOWED: i32 = 2;
/// Exit code: a guard refuses the plan.
pub const EXIT_REFUSED: i32 = 3;
/// Exit code: a topology does not compile (no plan could be made), or a request names what
/// does not exist (a generation not kept, an unknown service or peer).
pub const EXIT_INVALID: i32 = 4;
/// Exit code: the compare-and-swap failed (another generation runs than expected), or the
/// fleet lock or a deadline refused the change. Nothing changed.
pub const EXIT_CONFLICT: i32 = 5;
/// Exit code: the daemon could not be reached or could not act: connection, TLS, time-out,
/// a certificate without the role, the daemon busy or its state disk full. Nothing changed.
pub const EXIT_UNREACHABLE: i32 = 6;
/// Exit code of `topoctl rollout`: a gate failed (or an apply was refused) and every applied
/// location was rolled back.
pub const EXIT_ROLLED_BACK: i32 = 7;
/// Exit code of `topoctl rollout`: paused (or interrupted), or aborted and rolled back.
pub const EXIT_PAUSED: i32 = 8;
/// Exit code: changes were made (an apply, a rollback, a drain): the same as
/// [`EXIT_CHANGES_ALLOWED`], for commands that act rather than plan.
pub const EXIT_CHANGES_MADE: i32 = EXIT_CHANGES_ALLOWED;

/// The outcome of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    NoChange,
    ChangesAllowed,
    Refused,
    /// For callers whose topology did not compile; [`plan`] never returns it.
    Invalid,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::NoChange => EXIT_NO_CHANGE,
            Verdict::ChangesAllowed => EXIT_CHANGES_ALLOWED,
            Verdict::Refused => EXIT_REFUSED,
            Verdict::Invalid => EXIT_INVALID,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Verdict::NoChange => "no change",
            Verdict::ChangesAllowed => "changes allowed",
            Verdict::Refused => "REFUSED",
            Verdict::Invalid => "invalid",
        })
    }
}

/// An explicit exception to a guard.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    /// G3: allow this route to be withdrawn from every live location.
    GlobalWithdrawal(IpNet),
    /// G4: allow a change beyond the blast-radius budget.
    BlastRadius,
}

impl fmt::Display for Override {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Override::GlobalWithdrawal(route) => write!(formatter, "global-withdrawal:{route}"),
            Override::BlastRadius => formatter.write_str("blast-radius"),
        }
    }
}

/// An intent or override argument that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    #[error("invalid intent `{0}`: expected service:NAME")]
    Intent(String),
    #[error("invalid override `{0}`: expected global-withdrawal:CIDR or blast-radius")]
    Override(String),
}

/// What a change means to do: the services it deliberately affects (G2) and the guard
/// exceptions it asks for (G3, G4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub services: BTreeSet<String>,
    pub overrides: BTreeSet<Override>,
}

impl Intent {
    /// An intent from `--intent` arguments (`service:NAME`) and `--override` arguments.
    pub fn from_arguments(intents: &[String], overrides: &[String]) -> Result<Intent, IntentError> {
        let mut intent = Intent::default();
        for argument in intents {
            intent.parse_arg(argument)?;
        }
        for argument in overrides {
            intent.parse_override(argument)?;
        }
        Ok(intent)
    }

    /// Adds one `--intent` argument: `service:NAME`.
    pub fn parse_arg(&mut self, argument: &str) -> Result<(), IntentError> {
        match argument.split_once(':') {
            Some(("service", name)) if !name.is_empty() => {
                self.services.insert(name.to_string());
                Ok(())
            }
            _ => Err(IntentError::Intent(argument.to_string())),
        }
    }

    /// Adds one `--override` argument: `global-withdrawal:CIDR` or `blast-radius`.
    pub fn parse_override(&mut self, argument: &str) -> Result<(), IntentError> {
        if argument == "blast-radius" {
            self.overrides.insert(Override::BlastRadius);
            return Ok(());
        }
        match argument.split_once(':') {
            Some(("global-withdrawal", cidr)) => {
                let route: IpNet = cidr
                    .parse()
                    .map_err(|_| IntentError::Override(argument.to_string()))?;
                self.overrides
                    .insert(Override::GlobalWithdrawal(route.trunc()));
                Ok(())
            }
            _ => Err(IntentError::Override(argument.to_string())),
        }
    }

    /// The intent of a request's lines, as the control API carries them: `service:NAME` lines
    /// name services, every other line is an override.
    pub fn from_lines<S: AsRef<str>>(lines: &[S]) -> Result<Intent, IntentError> {
        let mut intent = Intent::default();
        for line in lines {
            let line = line.as_ref();
            if line.starts_with("service:") {
                intent.parse_arg(line)?;
            } else {
                intent.parse_override(line)?;
            }
        }
        Ok(intent)
    }

    /// The lines of this intent: `service:NAME` for each service, then each override.
    pub fn to_lines(&self) -> Vec<String> {
        self.services
            .iter()
            .map(|service| format!("service:{service}"))
            .chain(self.overrides.iter().map(ToString::to_string))
            .collect()
    }

    pub fn with_service(mut self, name: &str) -> Intent {
        self.services.insert(name.to_string());
        self
    }

    pub fn with_override(mut self, item: Override) -> Intent {
        self.overrides.insert(item);
        self
    }
}

/// Serde for an [`Intent`] in its wire form, a list of lines (`#[serde(with = "lines")]`).
pub mod lines {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Intent;

    /// Writes the intent as its lines.
    pub fn serialize<S: Serializer>(intent: &Intent, serializer: S) -> Result<S::Ok, S::Error> {
        intent.to_lines().serialize(serializer)
    }

    /// Reads lines and parses them; a line that does not parse is an error naming it.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Intent, D::Error> {
        let lines = Vec::<String>::deserialize(deserializer)?;
        Intent::from_lines(&lines).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_once_into_services_and_overrides_and_write_back() {
        let intent = Intent::from_lines(&[
            "service:web",
            "blast-radius",
            "global-withdrawal:192.0.2.1/24",
        ])
        .unwrap();
        assert_eq!(intent.services, BTreeSet::from(["web".to_string()]));
        assert!(intent.overrides.contains(&Override::BlastRadius));
        // The override's route is truncated to its network once, here.
        assert!(
            intent
                .overrides
                .contains(&Override::GlobalWithdrawal("192.0.2.0/24".parse().unwrap()))
        );
        assert_eq!(
            intent.to_lines(),
            vec![
                "service:web",
                "global-withdrawal:192.0.2.0/24",
                "blast-radius"
            ]
        );
        assert_eq!(Intent::from_lines(&intent.to_lines()).unwrap(), intent);
    }

    #[test]
    fn a_line_that_does_not_parse_is_an_error_naming_it() {
        assert_eq!(
            Intent::from_lines(&["service:"]),
            Err(IntentError::Intent("service:".into()))
        );
        assert_eq!(
            Intent::from_lines(&["everything"]),
            Err(IntentError::Override("everything".into()))
        );
    }
}
