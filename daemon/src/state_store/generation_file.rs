//! The generation file's format: what format 2 (sources named by digest) and format 1 (texts
//! inline) hold, and reading one — whole, with its texts checked against their digests, or
//! only its header (metadata, names and digests) for listing and pruning.
//!
//! Owns: the serde shapes of a generation file and the checks every file passes (a format
//! this daemon reads, with that format's shape, digests that are digests, the generation its
//! name says). Must not touch: where files live or when they are written (the parent module),
//! the texts' own files (`sources.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::sources::{self, SourceRef, SourceTexts};
use super::{
    FORMAT_INLINE, FORMAT_VERSION, GENERATIONS_DIR, GenerationMeta, SourceBundle, SourceFile,
    StateError, StoredGeneration, io_error,
};

/// The on-disk wrapper of a generation file: format 2 names its sources (`files`), format 1
/// holds them (`bundle`, read as `B`: the whole bundle, or only its names).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "B: Deserialize<'de>"))]
pub(super) struct GenerationFileOf<B> {
    pub(super) format: u32,
    pub(super) meta: GenerationMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) bundle: Option<B>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) files: Option<Vec<SourceRef>>,
}

/// A generation file as written, and as read whole.
pub(super) type GenerationFile = GenerationFileOf<SourceBundle>;

/// A generation file read without its sources' texts: what listing and pruning need.
pub(super) type GenerationHeader = GenerationFileOf<BundleNames>;

/// The file names of a format-1 bundle (its texts skipped while reading).
#[derive(Debug, Deserialize)]
pub(super) struct BundleNames {
    sources: Vec<NameOnly>,
}

#[derive(Debug, Deserialize)]
struct NameOnly {
    name: String,
    #[serde(rename = "text")]
    _text: serde::de::IgnoredAny,
}

pub(super) fn read_generation(
    path: &Path,
    generation: u64,
    texts: &SourceTexts,
) -> Result<StoredGeneration, StateError> {
    read_generation_digested(path, generation, texts).map(|(stored, _)| stored)
}

/// [`read_generation`], with the SHA-256 of each text (lower-case hex, in order) when the file
/// names them (format 2; each text was checked against its digest while read).
pub(super) fn read_generation_digested(
    path: &Path,
    generation: u64,
    texts: &SourceTexts,
) -> Result<(StoredGeneration, Option<Vec<String>>), StateError> {
    let file: GenerationFile = read_checked(path, generation)?;
    let (sources, digests) = match (file.bundle, file.files) {
        (Some(bundle), None) => (bundle.sources, None),
        (None, Some(refs)) => {
            let digests = refs.iter().map(|file| file.sha256.clone()).collect();
            (texts.load(path, generation, refs)?, Some(digests))
        }
        _ => (unreachable_shape(path)?, None),
    };
    let stored = StoredGeneration {
        meta: file.meta,
        bundle: SourceBundle { sources },
    };
    Ok((stored, digests))
}

fn unreachable_shape(path: &Path) -> Result<Vec<SourceFile>, StateError> {
    Err(StateError::Corrupt {
        path: path.to_path_buf(),
        reason: "holds both or neither of `bundle` and `files`".to_owned(),
    })
}

/// Whether the file at `path` starts as this daemon writes a format-1 file (`{"format":1,`):
/// such a file names no text, and need not be parsed to know it. Anything else (another
/// layout, an unreadable file) is `false`.
pub(super) fn is_inline(path: &Path) -> bool {
    use std::io::Read as _;
    const INLINE: &[u8] = br#"{"format":1,"#;
    let mut start = [0_u8; INLINE.len()];
    fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut start))
        .is_ok_and(|()| start == INLINE)
}

/// Reads a generation file without its texts (a format-1 file's texts are skipped).
pub(super) fn read_header(path: &Path, generation: u64) -> Result<GenerationHeader, StateError> {
    read_checked(path, generation)
}

/// Reads and parses the generation file at `path` (as a whole file or as its header) and
/// runs the checks every generation file passes.
fn read_checked<B: DeserializeOwned>(
    path: &Path,
    generation: u64,
) -> Result<GenerationFileOf<B>, StateError> {
    let bytes = fs::read(path).map_err(io_error("reading", path))?;
    let file: GenerationFileOf<B> =
        serde_json::from_slice(&bytes).map_err(|error| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    check_file(
        path,
        generation,
        file.format,
        &file.meta,
        file.bundle.is_some(),
        file.files.is_some(),
    )?;
    check_refs(path, file.files.as_deref())?;
    Ok(file)
}

/// A format-2 file names every text by a SHA-256 (a path never comes from a file).
fn check_refs(path: &Path, refs: Option<&[SourceRef]>) -> Result<(), StateError> {
    match refs
        .into_iter()
        .flatten()
        .find(|file| !sources::is_digest(&file.sha256))
    {
        Some(file) => Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "names source `{}` by `{}`, which is not a SHA-256",
                file.name, file.sha256
            ),
        }),
        None => Ok(()),
    }
}

impl GenerationHeader {
    pub(super) fn source_names(&self) -> Vec<String> {
        match (&self.bundle, &self.files) {
            (Some(bundle), _) => bundle
                .sources
                .iter()
                .map(|file| file.name.clone())
                .collect(),
            (None, Some(refs)) => refs.iter().map(|file| file.name.clone()).collect(),
            (None, None) => Vec::new(),
        }
    }

    /// The digests of the texts a format-2 file names (none for format 1).
    pub(super) fn digests(&self) -> impl Iterator<Item = &str> {
        self.files.iter().flatten().map(|file| file.sha256.as_str())
    }
}

/// The checks every generation file passes: a format this daemon reads, with the shape that
/// format has, and the generation its name says.
fn check_file(
    path: &Path,
    generation: u64,
    format: u32,
    meta: &GenerationMeta,
    has_bundle: bool,
    has_files: bool,
) -> Result<(), StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    match (format, has_bundle, has_files) {
        (FORMAT_INLINE, true, false) | (FORMAT_VERSION, false, true) => {}
        (FORMAT_INLINE | FORMAT_VERSION, _, _) => {
            return Err(corrupt(format!(
                "a format-{format} file must hold {} only",
                if format == FORMAT_INLINE {
                    "`bundle`"
                } else {
                    "`files`"
                }
            )));
        }
        _ => {
            return Err(corrupt(format!(
                "format version {format} (this topologyd reads {FORMAT_INLINE} and {FORMAT_VERSION})"
            )));
        }
    }
    if meta.generation != generation {
        return Err(corrupt(format!(
            "file name says generation {generation} but it holds generation {}",
            meta.generation
        )));
    }
    Ok(())
}

/// The generation files of the state directory `dir`, newest first, found without opening the
/// store (no lock taken, nothing created or moved): for `topologyd --check`, which looks at what
/// start-up would recover. Read one with [`read_stored_generation`].
pub fn stored_generations(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir.join(GENERATIONS_DIR)) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name.to_str()?.strip_suffix(".json")?;
            if number.len() != 20 || !number.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            Some((number.parse().ok()?, entry.path()))
        })
        .collect();
    files.sort_unstable_by_key(|(generation, _)| std::cmp::Reverse(*generation));
    files
}

/// Reads one generation file found by [`stored_generations`] (read-only; the texts of a
/// format-2 file are read from the `sources/` directory beside `generations/`).
pub fn read_stored_generation(
    path: &Path,
    generation: u64,
) -> Result<StoredGeneration, StateError> {
    let state_dir = path
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new("."));
    read_generation(path, generation, &SourceTexts::at(state_dir))
}
