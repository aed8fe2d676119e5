//! Reading topology files into [`Source`] values: [`load_sources`] (the only file access in the
//! crate, refusing a file over [`MAX_TOPOLOGY_BYTES`] without reading it whole, and reading
//! several regular files on a few threads at once) and
//! [`decode_source`], which turns bytes into a [`Source`] or says where the first byte that is
//! not UTF-8 is. Both report with a [`Diagnostic`] at `file:line:column`.

use std::path::Path;

use crate::bounds::MAX_TOPOLOGY_BYTES;
use crate::diagnostic::{Diagnostic, Severity};
use crate::source::{Source, SourceLocation};
use crate::text::escape_text;

/// A failure to read a topology file: the file cannot be read, or (with `invalid` set) its
/// bytes are not UTF-8, which is an invalid topology rather than an I/O failure.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {error}")]
pub struct LoadError {
    pub path: String,
    #[source]
    pub error: std::io::Error,
    /// Set when the file was read but is not UTF-8: the error at its first bad byte.
    pub invalid: Option<Diagnostic>,
}

/// Reads each path into a [`Source`] named by the path as given. The only file access in this
/// crate; everything after it works on strings.
///
/// With several regular files and cores, the files are shared out among up to four threads,
/// each reading whole files (a topology is a few files of tens of megabytes and many small
/// ones, read at every `topoctl push`). The answer is the same as one after the other: every
/// source in order, or the error of the first file in order that cannot be read; once a file
/// has failed, no file after it is started. A list with anything else in it (a missing file,
/// a FIFO, `/dev/stdin`) is read one file after the other, so that nothing after a failure is
/// opened.
pub fn load_sources<P: AsRef<Path> + Sync>(paths: &[P]) -> Result<Vec<Source>, LoadError> {
    Ok(load_sources_stamped(paths)?
        .into_iter()
        .map(|(source, _)| source)
        .collect())
}

/// A source with the metadata of the file it was read from.
pub type StampedSource = (Source, std::fs::Metadata);

/// [`load_sources`], each source with the metadata of the file it was read from (taken from the
/// file opened, before it was read): what a pusher keys the digests it remembers by.
pub fn load_sources_stamped<P: AsRef<Path> + Sync>(
    paths: &[P],
) -> Result<Vec<StampedSource>, LoadError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(paths.len());
    let regular = || {
        paths
            .iter()
            .all(|path| std::fs::metadata(path.as_ref()).is_ok_and(|metadata| metadata.is_file()))
    };
    if workers < 2 || !regular() {
        return paths
            .iter()
            .map(|path| load_source(path.as_ref()))
            .collect();
    }
    // Each thread takes the next file not taken yet (the large ones are spread out without
    // knowing their sizes first), until the files run out or one before it failed.
    let next = AtomicUsize::new(0);
    let first_failed = AtomicUsize::new(usize::MAX);
    let mut loaded: Vec<(usize, Result<StampedSource, LoadError>)> = std::thread::scope(|scope| {
        let take = || {
            let mut taken = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(index) else {
                    return taken;
                };
                if index > first_failed.load(Ordering::Relaxed) {
                    return taken;
                }
                let source = load_source(path.as_ref());
                if source.is_err() {
                    first_failed.fetch_min(index, Ordering::Relaxed);
                }
                taken.push((index, source));
            }
        };
        // A thread that cannot be made (the process's limit reached) leaves its files to the
        // others and to the calling thread.
        let handles: Vec<_> = (1..workers)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, take).ok())
            .collect();
        let mut loaded = take();
        for handle in handles {
            // A reading thread does not panic; were it to, its files are read again below.
            loaded.extend(handle.join().unwrap_or_default());
        }
        loaded
    });
    loaded.sort_unstable_by_key(|(index, _)| *index);
    let mut sources = Vec::with_capacity(paths.len());
    let mut loaded = loaded.into_iter().peekable();
    for (index, path) in paths.iter().enumerate() {
        // Every file before the first failure was taken (none is skipped before it); one that
        // was not is read here.
        let source = match loaded.next_if(|(taken, _)| *taken == index) {
            Some((_, source)) => source,
            None => load_source(path.as_ref()),
        };
        sources.push(source?);
    }
    Ok(sources)
}

/// Reads one file into a [`Source`] named by the path as given, with the file's metadata.
fn load_source(path: &Path) -> Result<StampedSource, LoadError> {
    let name = path.display().to_string();
    // Read at most one byte past the limit: a huge file (or /dev/zero) is refused
    // without being read whole.
    let limit = MAX_TOPOLOGY_BYTES;
    let mut bytes = Vec::new();
    let metadata = std::fs::File::open(path)
        .and_then(|file| {
            let metadata = file.metadata()?;
            // Sized from the file's length: a buffer grown by doubling while it reads
            // would hold up to twice the text at the compile's peak.
            let length = metadata.len();
            bytes.reserve_exact(usize::try_from(length.min(limit as u64 + 1)).unwrap_or(0));
            std::io::Read::read_to_end(
                &mut std::io::Read::take(file, limit as u64 + 1),
                &mut bytes,
            )?;
            Ok(metadata)
        })
        .map_err(|error| LoadError {
            path: name.clone(),
            error,
            invalid: None,
        })?;
    if bytes.len() > limit {
        let diagnostic = Diagnostic {
            severity: Severity::Error,
            location: Some(SourceLocation {
                file: escape_text(&name),
                line: 1,
                column: 1,
            }),
            message: format!(
                "the file holds more than {} MiB, the most a whole topology may hold",
                limit >> 20
            ),
            help: Some(
                "check that this is the topology file meant; a topology larger than that \
                 is refused"
                    .to_string(),
            ),
        };
        return Err(LoadError {
            path: name.clone(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, diagnostic.to_string()),
            invalid: Some(diagnostic),
        });
    }
    decode_source(&name, bytes)
        .map(|source| (source, metadata))
        .map_err(|diagnostic| LoadError {
            path: name.clone(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, diagnostic.to_string()),
            invalid: Some(diagnostic),
        })
}

/// The [`Source`] `name` with text `bytes`, or an error at `file:line:column` of the first byte
/// that is not UTF-8 (the column counts the characters before it on its line).
pub fn decode_source(name: &str, bytes: Vec<u8>) -> Result<Source, Diagnostic> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(name, text)),
        Err(failure) => {
            let bytes = failure.as_bytes();
            let offset = failure.utf8_error().valid_up_to();
            let valid = String::from_utf8_lossy(&bytes[..offset]);
            let line_start = valid.rfind('\n').map_or(0, |newline| newline + 1);
            let line = valid.matches('\n').count() + 1;
            let column = valid[line_start..].chars().count() + 1;
            Err(Diagnostic {
                severity: Severity::Error,
                location: Some(SourceLocation {
                    file: escape_text(name),
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    column: u32::try_from(column).unwrap_or(u32::MAX),
                }),
                message: format!(
                    "the file is not UTF-8: byte 0x{:02X} at byte offset {offset} does not \
                     start or continue a UTF-8 character",
                    bytes[offset]
                ),
                help: Some(
                    "topology files must be UTF-8: convert the file (for example with \
                     `iconv -f LATIN1 -t UTF-8`) or remove the stray byte"
                        .into(),
                ),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What one generated file is: a UTF-8 text of some size, bytes that are not UTF-8, or no
    /// file at all.
    #[derive(Debug, Clone)]
    enum File {
        Text(usize),
        NotUtf8,
        Missing,
    }

    fn file() -> impl Strategy<Value = File> {
        prop_oneof![
            6 => prop_oneof![0usize..64, 1usize..(3 << 20)].prop_map(File::Text),
            1 => Just(File::NotUtf8),
            1 => Just(File::Missing),
        ]
    }

    /// A directory of its own under the system's temporary directory, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("topologyd-config-load-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A FIFO after a file that cannot be read is never opened (opening it would wait for a
    /// writer), as when the files were read one after the other.
    #[test]
    fn nothing_after_a_missing_file_is_opened() {
        let scratch = Scratch::new();
        let fifo = scratch.0.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|status| status.success()), "mkfifo");
        std::fs::write(scratch.0.join("a.toml"), "# a\n").unwrap();
        let paths = vec![
            scratch.0.join("a.toml"),
            scratch.0.join("missing.toml"),
            fifo,
        ];
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(load_sources(&paths).map(|sources| sources.len()));
        });
        let answer = receiver
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("load_sources returns without opening the FIFO");
        let error = answer.expect_err("a missing file");
        assert!(error.path.ends_with("missing.toml"), "{error}");
        assert!(error.invalid.is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Read in parallel, the files give what reading them one after the other gives: every
        /// source in order, or the first file's error in order.
        #[test]
        fn files_read_in_parallel_are_read_as_one_after_the_other(
            files in proptest::collection::vec(file(), 0..12),
        ) {
            let scratch = Scratch::new();
            let mut paths = Vec::new();
            for (index, file) in files.iter().enumerate() {
                let path = scratch.0.join(format!("{index}.toml"));
                match file {
                    File::Text(size) => {
                        let line = format!("# file {index}\n");
                        let text: String = line.chars().cycle().take(*size).collect();
                        std::fs::write(&path, text).unwrap();
                    }
                    File::NotUtf8 => std::fs::write(&path, b"a = 1\n\xff\n").unwrap(),
                    File::Missing => {}
                }
                paths.push(path);
            }
            let sequential: Result<Vec<Source>, LoadError> = paths
                .iter()
                .map(|path| load_source(path).map(|(source, _)| source))
                .collect();
            match (load_sources(&paths), sequential) {
                (Ok(parallel), Ok(sequential)) => {
                    prop_assert_eq!(parallel.len(), files.len());
                    for (parallel, sequential) in parallel.iter().zip(&sequential) {
                        prop_assert_eq!(&parallel.name, &sequential.name);
                        prop_assert_eq!(&parallel.text, &sequential.text);
                    }
                }
                (Err(parallel), Err(sequential)) => {
                    prop_assert_eq!(&parallel.path, &sequential.path);
                    prop_assert_eq!(parallel.to_string(), sequential.to_string());
                    prop_assert_eq!(parallel.invalid.is_some(), sequential.invalid.is_some());
                }
                (parallel, sequential) => prop_assert!(
                    false,
                    "parallel {:?}, one after the other {:?}",
                    parallel.map(|sources| sources.len()),
                    sequential.map(|sources| sources.len())
                ),
            }
        }
    }

    #[test]
    fn non_utf8_bytes_are_located_by_line_and_character_column() {
        let failure =
            decode_source("a.toml", b"x = 1\ny = \"\xC3\xA9\xFF\"\n".to_vec()).unwrap_err();
        assert_eq!(failure.location.unwrap().to_string(), "a.toml:2:7");
        assert!(failure.message.contains("0xFF"), "{}", failure.message);
        let failure = decode_source("b.toml", vec![0x80]).unwrap_err();
        assert_eq!(failure.location.unwrap().to_string(), "b.toml:1:1");
        assert_eq!(decode_source("c.toml", b"ok".to_vec()).unwrap().text, "ok");
    }
}
