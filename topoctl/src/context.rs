//! `topoctl` contexts, like kubeconfig's: a TOML file naming daemons with the address and the
//! credentials to reach each (`$TOPOCTL_CONTEXTS`, else `~/.config/topoctl/contexts.toml`),
//! chosen with `--context NAME` (or `$TOPOCTL_CONTEXT`, or the file's `default`). Relative
//! paths in the file are relative to the file's directory.
//!
//! ```toml
//! default = "ams01"
//!
//! [context.ams01]
//! daemon = "ams01.example.net:9180"   # host name or address, with the port
//! cert = "alice.pem"
//! key = "alice-key.pem"
//! ca = "ca.pem"
//! # server_name = "ams01.example.net"  # the name the daemon's certificate must carry
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The contexts file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contexts {
    /// The context used without `--context`.
    #[serde(default)]
    pub default: Option<String>,
    /// By name.
    #[serde(default)]
    pub context: BTreeMap<String, Context>,
}

/// One daemon and the credentials to call it with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// `HOST:PORT` (a host name or an IP address).
    pub daemon: String,
    /// The name the daemon's certificate must carry (default: the host name of `daemon`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Our client certificate (PEM).
    pub cert: PathBuf,
    /// Our client private key (PEM).
    pub key: PathBuf,
    /// The CA that signed the daemon's certificate (PEM).
    pub ca: PathBuf,
}

/// Where the contexts file is: `$TOPOCTL_CONTEXTS`, else `$XDG_CONFIG_HOME/topoctl/
/// contexts.toml`, else `~/.config/topoctl/contexts.toml`.
pub fn contexts_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOPOCTL_CONTEXTS") {
        return Some(PathBuf::from(path));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("topoctl").join("contexts.toml"))
}

/// Reads and parses a contexts file; relative paths become relative to its directory.
pub fn load(path: &Path) -> Result<Contexts, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("contexts file {}: {error}", path.display()))?;
    let mut contexts: Contexts = toml::from_str(&text)
        .map_err(|error| format!("contexts file {}: {error}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for context in contexts.context.values_mut() {
        for file in [&mut context.cert, &mut context.key, &mut context.ca] {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
    }
    Ok(contexts)
}

/// The context to use: `name` if given (an error if the file or the name is missing), else the
/// file's default if there is a file with one, else none.
pub fn select(name: Option<&str>) -> Result<Option<Context>, String> {
    let path = contexts_path();
    let exists = path.as_deref().is_some_and(Path::exists);
    let Some(path) = path.filter(|_| exists) else {
        return match name {
            Some(name) => Err(format!(
                "--context {name}: no contexts file (set $TOPOCTL_CONTEXTS or write ~/.config/topoctl/contexts.toml)"
            )),
            None => Ok(None),
        };
    };
    let mut contexts = load(&path)?;
    let Some(wanted) = name.map(str::to_owned).or_else(|| contexts.default.clone()) else {
        return Ok(None);
    };
    match contexts.context.remove(&wanted) {
        Some(context) => Ok(Some(context)),
        None => Err(format!(
            "context `{wanted}` is not in {} (it has: {})",
            path.display(),
            if contexts.context.is_empty() {
                "none".to_string()
            } else {
                contexts
                    .context
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contexts_file_resolves_relative_paths_and_names_its_default() {
        let directory = tempfile::tempdir().ok();
        let Some(directory) = directory else {
            panic!("a temporary directory")
        };
        let path = directory.path().join("contexts.toml");
        std::fs::write(
            &path,
            "default = \"ams01\"\n[context.ams01]\ndaemon = \"localhost:9180\"\ncert = \"a.pem\"\nkey = \"/k/a-key.pem\"\nca = \"ca.pem\"\n",
        )
        .ok();
        let contexts = load(&path).unwrap_or_default();
        assert_eq!(contexts.default.as_deref(), Some("ams01"));
        let context = &contexts.context["ams01"];
        assert_eq!(context.cert, directory.path().join("a.pem"));
        assert_eq!(context.key, PathBuf::from("/k/a-key.pem"));
        std::fs::write(&path, "[context.x]\ndaemon = \"a:1\"\n").ok();
        let error = load(&path).err().unwrap_or_default();
        assert!(error.contains("missing field `cert`"), "{error}");
    }
}
