//! Named TOML sources: [`SourceFile`] (a file's name as diagnostics show it, and its [`Text`])
//! and [`SourceBundle`] (the files of one topology, in order, as a push carries them and the
//! state directory keeps them). The configuration parser, the topology compiler, the state store
//! and the test harness all use these; `topologyd_config::Source` is [`SourceFile`].

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A source's text, read as a `str`: owned, or shared with an owner that keeps it unchanged for
/// as long as it lives ([`SharedText`]). The daemon maps the large texts of its state directory
/// (files written once and never changed) instead of copying them: a delta push that changes
/// one file of a 27 MB bundle used to read the other 27 MB into memory each time. A clone of a
/// shared text shares it; equality and the wire form are the `str`'s.
#[derive(Clone, Default)]
pub struct Text {
    /// The text, when it is held (empty when shared).
    owned: String,
    /// Its owner, when it is shared.
    shared: Option<Arc<dyn SharedText>>,
}

/// A text its owner keeps: [`SharedText::text`] gives the same `str` every time, for as long as
/// the owner lives (a read-only mapping of a file nobody changes, for one).
pub trait SharedText: Send + Sync {
    /// The text.
    fn text(&self) -> &str;
}

impl Text {
    /// A text kept by `owner` (see [`SharedText`]).
    pub fn shared(owner: Arc<dyn SharedText>) -> Text {
        Text {
            owned: String::new(),
            shared: Some(owner),
        }
    }

    /// The text as a `str`.
    pub fn as_str(&self) -> &str {
        match &self.shared {
            Some(owner) => owner.text(),
            None => &self.owned,
        }
    }

    /// Whether the text is shared with an owner rather than held (and copied when cloned).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The text to change in place (a shared text is copied first, as `Cow::to_mut` does).
    pub fn to_mut(&mut self) -> &mut String {
        if let Some(owner) = self.shared.take() {
            self.owned = owner.text().to_owned();
        }
        &mut self.owned
    }

    /// A second handle on the text without a copy: a held text becomes shared first (its
    /// `String` moved behind an `Arc`), so that this one and the handle returned share it.
    pub fn share(&mut self) -> Text {
        if self.shared.is_none() {
            let held: Arc<dyn SharedText> = Arc::new(HeldText(std::mem::take(&mut self.owned)));
            self.shared = Some(held);
        }
        self.clone()
    }

    /// The text as a `String`: moved out when held, copied when shared.
    pub fn into_string(self) -> String {
        match self.shared {
            Some(owner) => owner.text().to_owned(),
            None => self.owned,
        }
    }
}

/// A text made shared by [`Text::share`]: the `String` it held.
struct HeldText(String);

impl SharedText for HeldText {
    fn text(&self) -> &str {
        &self.0
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl From<String> for Text {
    fn from(owned: String) -> Text {
        Text {
            owned,
            shared: None,
        }
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text::from(text.to_owned())
    }
}

impl From<&String> for Text {
    fn from(text: &String) -> Text {
        Text::from(text.clone())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), formatter)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        String::deserialize(deserializer).map(Text::from)
    }
}

/// One named TOML source: its name as it appears in `file:line:column` diagnostics, and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// The name (a path, or the file name a pushing client gave it).
    pub name: String,
    /// The TOML text.
    pub text: Text,
}

impl SourceFile {
    /// A source from its name and text.
    pub fn new(name: impl Into<String>, text: impl Into<Text>) -> SourceFile {
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
                    name: SourceBundle::name_of(&source.name),
                    text: source.text,
                })
                .collect(),
        }
    }

    /// The name a file read from `path` is sent under: its file name alone.
    pub fn name_of(path: &str) -> String {
        Path::new(path)
            .file_name()
            .map_or(path.to_owned(), |name| name.to_string_lossy().into_owned())
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

    /// A text kept elsewhere, for the tests.
    struct Kept(String);

    impl SharedText for Kept {
        fn text(&self) -> &str {
            &self.0
        }
    }

    #[test]
    fn a_shared_text_reads_compares_and_travels_as_the_same_text_held() {
        let held = Text::from("[[prefix]]\ncidr = \"198.51.100.0/24\"\n");
        let shared = Text::shared(Arc::new(Kept(held.as_str().to_owned())));
        assert!(shared.is_shared() && !held.is_shared());
        assert_eq!(shared, held);
        assert_eq!(shared.len(), held.len());
        assert_eq!(format!("{shared:?}"), format!("{held:?}"));
        let file = SourceFile::new("p.toml", shared.clone());
        let json = serde_json::to_string(&file).unwrap();
        assert_eq!(
            json,
            serde_json::to_string(&SourceFile::new("p.toml", held.clone())).unwrap()
        );
        let back: SourceFile = serde_json::from_str(&json).unwrap();
        assert_eq!(back.text, held);
        assert!(!back.text.is_shared());
        // A clone shares; a change copies first and leaves the other as it was.
        let mut changed = shared.clone();
        assert_eq!(changed.as_ptr(), shared.as_ptr());
        changed.to_mut().push_str("# more\n");
        assert!(!changed.is_shared());
        assert_eq!(shared, held);
        assert!(changed.ends_with("# more\n"));
        assert_eq!(shared.into_string(), held.clone().into_string());
        assert_eq!(Text::default(), "");
    }

    #[test]
    fn a_held_text_shared_moves_behind_one_owner_and_reads_the_same() {
        let mut held = Text::from("[[binding]]\ncidr = \"198.51.100.0/25\"\n");
        let before = held.as_ptr();
        let second = held.share();
        assert!(held.is_shared() && second.is_shared());
        assert_eq!(held.as_ptr(), before, "moved, not copied");
        assert_eq!(second.as_ptr(), before);
        assert_eq!(second, "[[binding]]\ncidr = \"198.51.100.0/25\"\n");
        // A shared text shares again as it is.
        let mut shared = second.clone();
        assert_eq!(shared.share().as_ptr(), before);
        drop((held, second));
        assert_eq!(shared, "[[binding]]\ncidr = \"198.51.100.0/25\"\n");
    }

    #[test]
    fn files_read_from_disk_are_named_by_their_file_name() {
        let bundle = SourceBundle::from_files(vec![SourceFile::new("/etc/topo/fleet.toml", "")]);
        assert_eq!(bundle.sources[0].name, "fleet.toml");
    }
}
