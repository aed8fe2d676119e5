//! Positions for the daemon's start-up findings: what `topologyd` finds wrong when it looks at
//! the world a valid configuration names (a bootstrap file that is missing, TLS material that
//! does not load, a directory that is not writable, two listeners on one address) is reported at
//! the key that names it, as `file:line:column: error: … help: …`, the same as a parse error.
//!
//! Pure: the daemon does the looking (files, keys, directories) and hands its [`Finding`]s here
//! with the configuration's [`Source`]; this module only maps each [`Key`] to its span.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{Collector, Diagnostics};
use crate::source::{Source, SourceMap, Span};

/// A key of `topologyd.toml` a start-up finding is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Location,
    StateDir,
    /// The n-th file of `bootstrap_topology` (the key itself when out of range).
    BootstrapTopology(usize),
    /// The n-th `[bgp] listen` address.
    BgpListen(usize),
    /// The n-th `[bmp] listen` address.
    BmpListen(usize),
    AdminListen,
    ControlListen,
    ControlCertificate,
    ControlPrivateKey,
    ControlClientCa,
    ControlAuditLog,
    /// `md5_key_file` of the named peer.
    PeerMd5KeyFile(String),
}

/// One thing start-up would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: Key,
    pub message: String,
    pub help: Option<String>,
    /// Findings of another file that explain this one (the bootstrap topology's compile
    /// errors), listed after it with their own positions.
    pub nested: Vec<crate::diagnostic::Diagnostic>,
}

#[derive(Deserialize)]
struct File {
    location: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    bootstrap_topology: Option<Spanned<Vec<Spanned<String>>>>,
    bgp: Option<Bgp>,
    bmp: Option<Bgp>,
    admin: Option<Listen>,
    control: Option<Control>,
    #[serde(default)]
    peer: Vec<Peer>,
}

#[derive(Deserialize)]
struct Bgp {
    #[serde(default)]
    listen: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
struct Listen {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct Control {
    listen: Option<Spanned<String>>,
    certificate: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct Peer {
    name: Option<Spanned<String>>,
    md5_key_file: Option<Spanned<String>>,
}

fn span<T>(value: &Spanned<T>) -> Span {
    Span::new(0, value.span())
}

/// Renders `findings` at the positions of their keys in `source` (a finding whose key cannot be
/// found is reported without a position).
pub fn locate(source: &Source, findings: &[Finding]) -> Diagnostics {
    let file: Option<File> = toml::from_str(&source.text).ok();
    let mut peers: BTreeMap<String, Span> = BTreeMap::new();
    if let Some(file) = &file {
        for peer in &file.peer {
            if let (Some(name), Some(key)) = (&peer.name, &peer.md5_key_file) {
                peers.insert(name.get_ref().clone(), span(key));
            }
        }
    }
    let position = |key: &Key| -> Option<Span> {
        let file = file.as_ref()?;
        match key {
            Key::Location => file.location.as_ref().map(span),
            Key::StateDir => file.state_dir.as_ref().map(span),
            Key::BootstrapTopology(index) => file
                .bootstrap_topology
                .as_ref()
                .map(|list| list.get_ref().get(*index).map_or_else(|| span(list), span)),
            Key::BgpListen(index) => file.bgp.as_ref()?.listen.get(*index).map(span),
            Key::BmpListen(index) => file.bmp.as_ref()?.listen.get(*index).map(span),
            Key::AdminListen => file.admin.as_ref()?.listen.as_ref().map(span),
            Key::ControlListen => file.control.as_ref()?.listen.as_ref().map(span),
            Key::ControlCertificate => file.control.as_ref()?.certificate.as_ref().map(span),
            Key::ControlPrivateKey => file.control.as_ref()?.private_key.as_ref().map(span),
            Key::ControlClientCa => file.control.as_ref()?.client_ca.as_ref().map(span),
            Key::ControlAuditLog => file.control.as_ref()?.audit_log.as_ref().map(span),
            Key::PeerMd5KeyFile(name) => peers.get(name).copied(),
        }
    };
    let mut collector = Collector::new();
    for finding in findings {
        collector.error(
            position(&finding.key),
            finding.message.clone(),
            finding.help.clone(),
        );
    }
    let mut diagnostics = collector.finish(&SourceMap::new(vec![source.clone()]));
    for finding in findings {
        diagnostics.items.extend(finding.nested.iter().cloned());
    }
    diagnostics
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn findings_point_at_the_key_that_names_the_thing() {
        let text = "location = \"ams01\"\nstate_dir = \"/var/lib/topologyd\"\nbootstrap_topology = [\"a.toml\", \"b.toml\"]\n\n[admin]\nlisten = \"127.0.0.1:9179\"\n\n[[peer]]\nname = \"edge1\"\nmd5_key_file = \"/etc/topologyd/edge1.key\"\n";
        let source = Source::new("topologyd.toml", text);
        let finding = |key: Key| Finding {
            key,
            message: "something".into(),
            help: Some("fix it".into()),
            nested: Vec::new(),
        };
        let rendered = locate(
            &source,
            &[
                finding(Key::BootstrapTopology(1)),
                finding(Key::AdminListen),
                finding(Key::PeerMd5KeyFile("edge1".into())),
                finding(Key::Location),
                finding(Key::ControlCertificate),
            ],
        )
        .to_string();
        for expected in [
            "topologyd.toml:1:12: error: something",
            "topologyd.toml:3:33: error: something",
            "topologyd.toml:6:10: error: something",
            "topologyd.toml:10:16: error: something",
            "help: fix it",
        ] {
            assert!(rendered.contains(expected), "{expected} in\n{rendered}");
        }
        // No [control] section: reported without a position, still reported.
        assert_eq!(
            rendered.matches("error: something").count(),
            5,
            "{rendered}"
        );
    }
}
