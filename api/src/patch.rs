//! Patched files in a delta push: a changed file of the new bundle sent as edits of the running
//! generation's file of the same name instead of whole. A bindings file of 15 MB changed in a
//! few thousand tables (a 1 % change) travels as those tables, not as 15 MB of JSON-escaped
//! TOML that the daemon must parse before anything else.
//!
//! The pusher makes the edits ([`edits_between`]) from a copy of the base text it keeps (the
//! daemon never sends texts for this); the daemon applies them ([`FilePatch::apply`]) to the
//! running text and checks the result against the digest the delta lists for the file, as it
//! checks a file sent whole. Edits are cut at line starts, so that an edit's text reads as the
//! lines it replaces, but [`FilePatch::apply`] takes any edits within the text and on character
//! boundaries.
//!
//! Owns: [`FilePatch`], [`TextEdit`], making the edits between two texts and applying them, and
//! the reasons a patch does not apply ([`PatchError`]).
//!
//! Must not touch: I/O. Pure functions over texts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One run of the base text replaced: `remove` bytes from byte `at`, replaced by `insert`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextEdit {
    /// Where the run starts in the base text, in bytes.
    pub at: u64,
    /// How many bytes of the base text it replaces.
    pub remove: u64,
    /// What goes in their place.
    pub insert: String,
}

/// A file of the new bundle as edits of the base generation's file of the same name and digest
/// `base_sha256`. The edits are in order of `at` and do not overlap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePatch {
    /// The file's name (in the base and in the new bundle).
    pub name: String,
    /// The SHA-256 of the base file's text, lower-case hex.
    pub base_sha256: String,
    /// The edits, in order.
    pub edits: Vec<TextEdit>,
}

/// Why edits do not apply to a text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// An edit starts before the end of the one before it.
    #[error(
        "edit {index} starts at byte {at}, before the end of the edit before it (byte {previous_end})"
    )]
    OutOfOrder {
        /// The edit's place in the list, from 0.
        index: usize,
        /// Where it starts.
        at: u64,
        /// Where the edit before it ends.
        previous_end: u64,
    },
    /// An edit reaches past the end of the text.
    #[error("edit {index} reaches past the end of the base text ({length} bytes)")]
    PastEnd {
        /// The edit's place in the list, from 0.
        index: usize,
        /// The base text's length.
        length: u64,
    },
    /// An edit starts or ends inside a UTF-8 character.
    #[error("edit {index} cuts the base text inside a character, at byte {at}")]
    NotCharBoundary {
        /// The edit's place in the list, from 0.
        index: usize,
        /// Where it cuts.
        at: u64,
    },
    /// The edits apply, but make a text of another digest than the one listed for the file.
    #[error("the edited text has SHA-256 {actual}, not the {listed} listed for the file")]
    OtherText {
        /// The digest listed.
        listed: String,
        /// The edited text's.
        actual: String,
    },
}

impl FilePatch {
    /// The patch of file `name` that makes `new` of `base`, when it weighs less than a quarter
    /// of `new` (else the file is better sent whole); checked to make `new` before it is
    /// handed out.
    /// `base_sha256` is the base's digest, as the base generation lists it.
    pub fn between(name: &str, base_sha256: &str, base: &str, new: &str) -> Option<FilePatch> {
        let patch = FilePatch {
            name: name.to_owned(),
            base_sha256: base_sha256.to_owned(),
            edits: edits_between(base, new),
        };
        (patch.weight() < new.len() / 4 && patch.apply(base).is_ok_and(|text| text == new))
            .then_some(patch)
    }

    /// The text these edits make of `base` (the base file's text).
    pub fn apply(&self, base: &str) -> Result<String, PatchError> {
        apply_edits(base, &self.edits)
    }

    /// [`FilePatch::apply`], the text built by `build` (see [`apply_edits_built`]).
    pub fn apply_built<T>(
        &self,
        base: &str,
        build: impl FnOnce(usize, &mut Pieces<'_>) -> T,
    ) -> Result<T, PatchError> {
        apply_edits_built(base, &self.edits, build)
    }

    /// [`FilePatch::apply`], and the text's SHA-256 (see [`apply_edits_hashed`]).
    pub fn apply_hashed(&self, base: &str) -> Result<(String, [u8; 32]), PatchError> {
        apply_edits_hashed(base, &self.edits)
    }

    /// How many bytes this patch weighs as it travels, roughly: each edit's text and a few
    /// dozen bytes of framing per edit (escapes not counted).
    pub fn weight(&self) -> usize {
        self.edits
            .iter()
            .map(|edit| edit.insert.len().saturating_add(EDIT_FRAMING))
            .fold(self.name.len(), usize::saturating_add)
    }
}

/// An edit's framing as JSON: `{"at":…,"remove":…,"insert":""},`.
const EDIT_FRAMING: usize = 48;

/// The text `edits` make of `base`: every edit checked (in order, within the text, on character
/// boundaries) before the first byte is copied.
pub fn apply_edits(base: &str, edits: &[TextEdit]) -> Result<String, PatchError> {
    let (runs, size) = checked_runs(base, edits)?;
    Ok(build(base, edits, &runs, size))
}

/// The pieces of a text made by edits, in order: the base's kept runs and the edits' texts.
pub type Pieces<'a> = dyn Iterator<Item = &'a str> + 'a;

/// [`apply_edits`], the text built by `build` from its size in bytes and its pieces (every
/// edit checked first): a caller may put a large text in memory of its own choosing.
pub fn apply_edits_built<T>(
    base: &str,
    edits: &[TextEdit],
    build: impl FnOnce(usize, &mut Pieces<'_>) -> T,
) -> Result<T, PatchError> {
    let (runs, size) = checked_runs(base, edits)?;
    let mut pieces = pieces(base, edits, &runs);
    Ok(build(size, &mut pieces))
}

/// [`apply_edits`], and the SHA-256 of the text it makes. The text is hashed from its pieces
/// (the base's kept runs and the edits' texts) on a thread of its own while it is copied
/// together: a 17 MB file took the copy's time plus the hash's one after the other.
pub fn apply_edits_hashed(
    base: &str,
    edits: &[TextEdit],
) -> Result<(String, [u8; 32]), PatchError> {
    let (runs, size) = checked_runs(base, edits)?;
    let hash = || -> [u8; 32] {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        for piece in pieces(base, edits, &runs) {
            hasher.update(piece.as_bytes());
        }
        hasher.finalize().into()
    };
    if size < crate::delta::PARALLEL_HASH_BYTES {
        return Ok((build(base, edits, &runs, size), hash()));
    }
    std::thread::scope(|scope| {
        let hashing = std::thread::Builder::new().spawn_scoped(scope, hash);
        let text = build(base, edits, &runs, size);
        let digest = match hashing {
            Ok(hashing) => hashing
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had: hashed after.
            Err(_) => hash(),
        };
        Ok((text, digest))
    })
}

/// Each edit's run of the base (`from..to`), checked, and the size of the text they make.
fn checked_runs(
    base: &str,
    edits: &[TextEdit],
) -> Result<(Vec<(usize, usize)>, usize), PatchError> {
    let length = base.len() as u64;
    let mut previous_end = 0_u64;
    let mut size = base.len();
    let mut runs = Vec::with_capacity(edits.len());
    for (index, edit) in edits.iter().enumerate() {
        if edit.at < previous_end {
            return Err(PatchError::OutOfOrder {
                index,
                at: edit.at,
                previous_end,
            });
        }
        let end = edit
            .at
            .checked_add(edit.remove)
            .filter(|end| *end <= length)
            .ok_or(PatchError::PastEnd { index, length })?;
        // Both fit in usize: they are at most the text's length.
        let (from, to) = (
            usize::try_from(edit.at).map_err(|_| PatchError::PastEnd { index, length })?,
            usize::try_from(end).map_err(|_| PatchError::PastEnd { index, length })?,
        );
        for cut in [from, to] {
            if !base.is_char_boundary(cut) {
                return Err(PatchError::NotCharBoundary {
                    index,
                    at: cut as u64,
                });
            }
        }
        size = size
            .saturating_sub(to - from)
            .saturating_add(edit.insert.len());
        runs.push((from, to));
        previous_end = end;
    }
    Ok((runs, size))
}

/// The pieces of the text checked `runs` make: the base up to each run, the run's edit's text,
/// and the base after the last.
fn pieces<'a>(
    base: &'a str,
    edits: &'a [TextEdit],
    runs: &'a [(usize, usize)],
) -> impl Iterator<Item = &'a str> {
    let kept_from = std::iter::once(0).chain(runs.iter().map(|(_, to)| *to));
    let kept_to = runs.iter().map(|(from, _)| *from).chain([base.len()]);
    let inserts = edits.iter().map(|edit| edit.insert.as_str()).map(Some);
    kept_from
        .zip(kept_to)
        .zip(inserts.chain([None]))
        .flat_map(move |((from, to), insert)| {
            [base.get(from..to).unwrap_or_default()]
                .into_iter()
                .chain(insert)
        })
}

/// The text of `size` bytes checked `runs` make.
fn build(base: &str, edits: &[TextEdit], runs: &[(usize, usize)], size: usize) -> String {
    let mut text = String::with_capacity(size);
    for piece in pieces(base, edits, runs) {
        text.push_str(piece);
    }
    text
}

/// The most lines either side a search for where two texts agree again looks at, after a
/// difference; past it the rest of both texts is one edit.
const MOST_SEARCHED_LINES: usize = 1 << 14;

/// A line met more often than this in a search's window (a blank line, a `[[binding]]` header)
/// is no place to agree again from: its places are not tried (the search would otherwise try
/// every pair of them).
const MOST_PLACES_A_LINE: usize = 32;

/// How many lines in a row must agree for the texts to count as agreeing again: a lone `}` or
/// blank line agrees everywhere.
const AGREEING_LINES: usize = 3;

/// The edits that make `new` of `old`, each cut at line starts. Not the shortest edit script
/// (a Myers diff costs time in proportion to the texts' lengths times the edits'): after each
/// difference, the nearest place (fewest lines skipped on both sides together) where
/// [`AGREEING_LINES`] lines agree, searched in windows that grow up to [`MOST_SEARCHED_LINES`].
/// What agrees is found a memory compare at a time, so texts of tens of megabytes changed in
/// a few thousand places take milliseconds. Whatever the texts, [`apply_edits`]`(old, edits)`
/// is `new`: a property test checks it over generated texts.
pub fn edits_between(old: &str, new: &str) -> Vec<TextEdit> {
    let old_lines = LineStarts::of(old);
    let new_lines = LineStarts::of(new);
    let mut edits = Vec::new();
    // Both positions are line starts where the texts agree so far.
    let (mut old_at, mut new_at) = (0_usize, 0_usize);
    loop {
        let agreeing = agreeing_length(&old.as_bytes()[old_at..], &new.as_bytes()[new_at..]);
        if old_at + agreeing == old.len() && new_at + agreeing == new.len() {
            return edits;
        }
        // Back to the start of the line the difference is in (bytes before it agree, so its
        // line starts at the same distance in both).
        let line_start = old.as_bytes()[old_at..old_at + agreeing]
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |newline| newline + 1);
        let (old_line, new_line) = (
            old_lines.index_of(old_at + line_start),
            new_lines.index_of(new_at + line_start),
        );
        let (old_agrees, new_agrees) = resync(&old_lines, &new_lines, old_line, new_line)
            .unwrap_or((old_lines.count(), new_lines.count()));
        let (from, to) = (old_lines.start(old_line), old_lines.start(old_agrees));
        let insert = &new[new_lines.start(new_line)..new_lines.start(new_agrees)];
        edits.push(TextEdit {
            at: from as u64,
            remove: (to - from) as u64,
            insert: insert.to_owned(),
        });
        (old_at, new_at) = (to, new_lines.start(new_agrees));
    }
}

/// How many leading bytes `old` and `new` share, compared a block at a time (a memory compare
/// of 4 KiB, then byte by byte in the block that differs). The topology's table diff walks two
/// texts with it too.
pub fn agreeing_length(old: &[u8], new: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let shorter = old.len().min(new.len());
    let mut agreeing = 0;
    while agreeing + BLOCK <= shorter
        && old[agreeing..agreeing + BLOCK] == new[agreeing..agreeing + BLOCK]
    {
        agreeing += BLOCK;
    }
    agreeing
        + old[agreeing..shorter]
            .iter()
            .zip(&new[agreeing..shorter])
            .take_while(|(old, new)| old == new)
            .count()
}

/// The nearest pair of lines at or after `old_line` and `new_line` from which the two texts
/// agree for [`AGREEING_LINES`] lines (or to both ends), `None` when none is within
/// [`MOST_SEARCHED_LINES`] of both.
fn resync(
    old: &LineStarts<'_>,
    new: &LineStarts<'_>,
    old_line: usize,
    new_line: usize,
) -> Option<(usize, usize)> {
    let mut window = 8;
    loop {
        let old_end = (old_line + window).min(old.count());
        let new_end = (new_line + window).min(new.count());
        let mut at_new: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for line in new_line..new_end {
            at_new.entry(new.line(line)).or_default().push(line);
        }
        at_new.retain(|_, places| places.len() <= MOST_PLACES_A_LINE);
        // Both ends agree: the rest of both texts as one edit, if nothing nearer agrees.
        let mut best = (old_end == old.count() && new_end == new.count())
            .then_some((old.count(), new.count()));
        let cost = |(old_at, new_at): (usize, usize)| (old_at - old_line) + (new_at - new_line);
        for old_at in old_line..old_end {
            if best.is_some_and(|best| cost(best) <= old_at - old_line) {
                break;
            }
            // In ascending order: past the best's cost, none nearer follows.
            for new_at in at_new.get(old.line(old_at)).into_iter().flatten() {
                let candidate = (old_at, *new_at);
                if best.is_some_and(|best| cost(candidate) >= cost(best)) {
                    break;
                }
                if agree_from(old, new, old_at, *new_at) {
                    best = Some(candidate);
                }
            }
        }
        if best.is_some() || window >= MOST_SEARCHED_LINES {
            return best;
        }
        window = (window * 4).min(MOST_SEARCHED_LINES);
    }
}

/// Whether the texts agree for [`AGREEING_LINES`] lines from `old_at` and `new_at`, or from
/// there to both ends.
fn agree_from(old: &LineStarts<'_>, new: &LineStarts<'_>, old_at: usize, new_at: usize) -> bool {
    let old_end = (old_at + AGREEING_LINES).min(old.count());
    let new_end = (new_at + AGREEING_LINES).min(new.count());
    let whole = old_end - old_at == AGREEING_LINES && new_end - new_at == AGREEING_LINES;
    let to_both_ends = old_end == old.count() && new_end == new.count();
    (whole || to_both_ends)
        && old.text[old.start(old_at)..old.start(old_end)]
            == new.text[new.start(new_at)..new.start(new_end)]
}

/// A text's lines: where each starts, and the text's length after the last.
struct LineStarts<'a> {
    text: &'a [u8],
    starts: Vec<usize>,
}

impl<'a> LineStarts<'a> {
    fn of(text: &'a str) -> LineStarts<'a> {
        let mut starts = vec![0];
        starts.extend(
            text.match_indices('\n')
                .map(|(newline, _)| newline + 1)
                .filter(|start| *start < text.len()),
        );
        if text.is_empty() {
            starts.clear();
        }
        starts.push(text.len());
        LineStarts {
            text: text.as_bytes(),
            starts,
        }
    }

    /// How many lines.
    fn count(&self) -> usize {
        self.starts.len() - 1
    }

    /// Where line `index` starts (the text's length for [`LineStarts::count`]).
    fn start(&self, index: usize) -> usize {
        self.starts[index]
    }

    /// Line `index`, its newline included.
    fn line(&self, index: usize) -> &'a [u8] {
        &self.text[self.starts[index]..self.starts[index + 1]]
    }

    /// The line that starts at `at`, a line start or the text's length.
    fn index_of(&self, at: usize) -> usize {
        self.starts.partition_point(|start| *start < at)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn edit(at: u64, remove: u64, insert: &str) -> TextEdit {
        TextEdit {
            at,
            remove,
            insert: insert.to_owned(),
        }
    }

    #[test]
    fn edits_apply_in_order_and_bad_ones_are_refused_naming_the_edit() {
        let base = "a\nbé\nc\n";
        assert_eq!(
            apply_edits(base, &[edit(0, 2, "x\n"), edit(6, 2, "")]).unwrap(),
            "x\nbé\n"
        );
        assert_eq!(apply_edits(base, &[]).unwrap(), base);
        assert_eq!(
            apply_edits(base, &[edit(2, 3, ""), edit(3, 0, "")]),
            Err(PatchError::OutOfOrder {
                index: 1,
                at: 3,
                previous_end: 5
            })
        );
        assert_eq!(
            apply_edits(base, &[edit(7, 2, "")]),
            Err(PatchError::PastEnd {
                index: 0,
                length: 8
            })
        );
        assert_eq!(
            apply_edits(base, &[edit(u64::MAX, 2, "")]),
            Err(PatchError::PastEnd {
                index: 0,
                length: 8
            })
        );
        assert_eq!(
            apply_edits(base, &[edit(0, 0, ""), edit(4, 1, "")]),
            Err(PatchError::NotCharBoundary { index: 1, at: 4 })
        );
    }

    #[test]
    fn a_text_changed_in_a_few_lines_is_edited_in_those_lines() {
        let old: String = (0..10_000)
            .map(|index| {
                format!(
                    "[[binding]]\ncidr = \"10.{}.{}.0/24\"\nservice = \"svc{:04}\"\n\n",
                    index / 256,
                    index % 256,
                    index % 7
                )
            })
            .collect();
        let new = old
            .replacen(
                "service = \"svc0003\"\n\n[[binding]]\ncidr = \"10.0.11",
                "service = \"svc9999\"\n\n[[binding]]\ncidr = \"10.0.11",
                1,
            )
            .replacen("cidr = \"10.30.", "cidr = \"10.31.", 1);
        let edits = edits_between(&old, &new);
        assert_eq!(apply_edits(&old, &edits).unwrap(), new);
        assert_eq!(edits.len(), 2, "{edits:?}");
        assert!(
            edits.iter().all(|edit| edit.insert.lines().count() == 1),
            "{edits:?}"
        );
        assert!(edits_between(&old, &old).is_empty());
    }

    /// A text large enough to be hashed on a thread of its own while it is copied together
    /// gets the digest of the text it makes.
    #[test]
    fn a_large_text_is_hashed_from_its_pieces_as_it_is_made() {
        let old: String = (0..60_000)
            .map(|index| {
                format!(
                    "[[binding]]\ncidr = \"10.{}.{}.0/24\"\n\n",
                    index / 256,
                    index % 256
                )
            })
            .collect();
        assert!(old.len() > crate::delta::PARALLEL_HASH_BYTES);
        let new = old.replacen("10.7.", "10.77.", 40) + "# added\n";
        let edits = edits_between(&old, &new);
        let (text, digest) = apply_edits_hashed(&old, &edits).unwrap();
        assert_eq!(text, new);
        assert_eq!(crate::delta::hex(&digest), crate::delta::file_sha256(&new));
        assert!(apply_edits_hashed(&old, &[edit(old.len() as u64, 1, "")]).is_err());
    }

    /// Lines a topology file is made of, few enough that they repeat.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("[[binding]]".to_owned()),
            Just("}".to_owned()),
            "[a-c]{0,3}",
            "cidr = \"10\\.[0-9]\\.0\\.0/24\"",
            "service = \"é[a-b]\"",
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        (prop::collection::vec(line(), 0..60), any::<bool>()).prop_map(|(lines, last_newline)| {
            let mut text = lines.join("\n");
            if last_newline && !text.is_empty() {
                text.push('\n');
            }
            text
        })
    }

    /// A text and another made of it by replacing, adding and removing runs of lines.
    fn text_and_edited() -> impl Strategy<Value = (String, String)> {
        (
            prop::collection::vec(line(), 0..80),
            prop::collection::vec(
                (0..80_usize, 0..4_usize, prop::collection::vec(line(), 0..4)),
                0..6,
            ),
            any::<bool>(),
        )
            .prop_map(|(lines, changes, last_newline)| {
                let mut edited = lines.clone();
                for (at, removed, inserted) in changes {
                    let at = at.min(edited.len());
                    let removed = removed.min(edited.len() - at);
                    edited.splice(at..at + removed, inserted);
                }
                let join = |lines: Vec<String>| {
                    let mut text = lines.join("\n");
                    if last_newline && !text.is_empty() {
                        text.push('\n');
                    }
                    text
                };
                (join(lines), join(edited))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The edits between two texts make the second of the first, whatever the texts: cut
        /// at line starts, in order, and no more of them than lines changed.
        #[test]
        fn the_edits_between_two_texts_make_the_second_of_the_first(
            (old, new) in prop_oneof![text_and_edited(), (text(), text())],
        ) {
            let edits = edits_between(&old, &new);
            prop_assert_eq!(apply_edits(&old, &edits).unwrap(), new.clone());
            let old_starts = LineStarts::of(&old);
            let mut previous_end = 0;
            for edit in &edits {
                prop_assert!(edit.at >= previous_end);
                prop_assert!(edit.remove > 0 || !edit.insert.is_empty());
                let (from, to) = (edit.at as usize, (edit.at + edit.remove) as usize);
                prop_assert!(old_starts.starts.binary_search(&from).is_ok());
                prop_assert!(old_starts.starts.binary_search(&to).is_ok());
                prop_assert!(edit.insert.is_empty() || edit.insert.ends_with('\n') || to == old.len());
                previous_end = edit.at + edit.remove;
            }
            if old == new {
                prop_assert!(edits.is_empty());
            }
        }

        /// Edits that apply give the base with each run replaced; edits that do not are
        /// refused, never a panic.
        #[test]
        fn any_edits_apply_or_are_refused(
            base in text(),
            edits in prop::collection::vec((0..70_u64, 0..8_u64, "[a-z\n]{0,4}"), 0..5),
        ) {
            let edits: Vec<TextEdit> = edits
                .into_iter()
                .map(|(at, remove, insert)| edit(at, remove, &insert))
                .collect();
            let hashed = apply_edits_hashed(&base, &edits);
            prop_assert_eq!(
                hashed.as_ref().map(|(text, digest)| (text.clone(), *digest)).ok(),
                apply_edits(&base, &edits).ok().map(|text| {
                    let digest = crate::delta::file_sha256(&text);
                    (text, crate::delta::digest_bytes(&digest).unwrap_or_default())
                })
            );
            if let Ok(text) = apply_edits(&base, &edits) {
                let mut expected = base.clone();
                for edit in edits.iter().rev() {
                    expected.replace_range(edit.at as usize..(edit.at + edit.remove) as usize, &edit.insert);
                }
                prop_assert_eq!(text, expected);
            }
        }
    }
}
