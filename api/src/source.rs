//! Named TOML sources: [`SourceFile`] (a file's name as diagnostics show it, and its text) and
//! [`SourceBundle`] (the files of one topology, in order, as a push carries them and the state
//! directory keeps them). The configuration parser, the topology compiler, the state store and
//! the test harness all use these; `topologyd_config::Source` is [`SourceFile`].

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One named TOML source: its name as it appears in `file:line:column` diagnostics, and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// The name (a path, or the file name a pushing client gave it).
    pub name: String,
    /// The TOML text.
    pub text: String,
}

impl SourceFile {
    /// A source from its name and text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// The sources of one topology, in the order they were pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceBundle {
    /// The TOML sources.
    pub sources: Vec<SourceFile>,
}

impl SourceBundle {
    /// The bundle a pusher sends for files read from disk: each named by its file name alone
    /// (the daemon's diagnostics then say `services.toml:3:1`, not the pusher's paths).
    pub fn from_files(sources: Vec<SourceFile>) -> SourceBundle {
        SourceBundle {
            sources: sources
                .into_iter()
                .map(|source| SourceFile {
                    name: Path::new(&source.name)
                        .file_name()
                        .map_or(source.name.clone(), |name| {
                            name.to_string_lossy().into_owned()
                        }),
                    text: source.text,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_keeps_its_wire_shape_and_refuses_unknown_fields() {
        let text = r#"{"sources":[{"name":"services.toml","text":"[[service]]\n"}]}"#;
        let bundle: SourceBundle = serde_json::from_str(text).unwrap();
        assert_eq!(
            bundle.sources,
            vec![SourceFile::new("services.toml", "[[service]]\n")]
        );
        assert_eq!(serde_json::to_string(&bundle).unwrap(), text);
        assert!(serde_json::from_str::<SourceBundle>(r#"{"sources":[],"extra":1}"#).is_err());
        assert!(serde_json::from_str::<SourceBundle>(r#"{"sources":[{"name":"a"}]}"#).is_err());
    }

    #[test]
    fn files_read_from_disk_are_named_by_their_file_name() {
        let bundle = SourceBundle::from_files(vec![SourceFile::new("/etc/topo/fleet.toml", "")]);
        assert_eq!(bundle.sources[0].name, "fleet.toml");
    }
}
