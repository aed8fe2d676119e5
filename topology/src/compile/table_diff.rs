//! Which tables of a large file of bindings a push changed, found by comparing the file's new
//! text with the one the running generation was compiled from, table by table: a push that
//! moves 1 % of 300,000 bindings to other services sends their file whole (15 MB), and parsing
//! all of it again was most of its compile. The file is cut before every line that starts
//! with `[[binding]]`; the two texts must hold as many such lines, and the n-th table of one is
//! compared with the n-th of the other. A table that differs is read again (`config`'s
//! `read_binding_tables`), one that does not keeps its running items, moved by how far its
//! table moved in the file.
//!
//! Why a table compared equal holds the same items in both texts (the caller checks the
//! conditions, `incremental.rs`): the running text compiled, and neither text holds a
//! multi-line string. Then every line that starts with `[[binding]]` is a table's header at
//! the top level (no other value may span lines and hold such a line: an array or an inline
//! table holding it is not TOML), so each cut of the running text starts a table, and a
//! table's items depend on its own text only. A changed table must be read by the line
//! scanner in both texts (one-line values only, so it ends at the top level), and the running
//! one must read as the running bindings written there. In the new text, by induction from
//! its start, every cut then starts a table too: what comes before it is kept tables, equal to
//! the running text's, and changed tables, which end at the top level.
//!
//! Owns: the cut, the comparison, where each kept table moved. Must not touch: the items (the
//! patched compile matches them, `patch.rs`).

use std::ops::Range;

use topologyd_api::patch::agreeing_length;

/// What starts a cut: a `[[binding]]` header at the start of a line.
const HEADER: &[u8] = b"\n[[binding]]";

/// The tables a push changed in a file of bindings (see the module comment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TableDiff {
    /// Where the changed tables are in the new text, ascending (adjacent ones joined).
    pub(crate) new_changed: Vec<Range<usize>>,
    /// Where the same tables were in the running text, ascending.
    pub(crate) old_changed: Vec<Range<usize>>,
    /// How far the kept tables moved: from each running offset on, ascending, until the next.
    shifts: Vec<(usize, i64)>,
}

impl TableDiff {
    /// Whether the running text's `offset` is in a changed table.
    pub(crate) fn in_changed(&self, offset: usize) -> bool {
        let after = self
            .old_changed
            .partition_point(|range| range.start <= offset);
        after > 0 && self.old_changed[after - 1].contains(&offset)
    }

    /// How far a kept table at the running text's `offset` moved in the new text (one binary
    /// search: what [`Locator::locate`] is tested against).
    #[cfg(test)]
    pub(crate) fn shift_at(&self, offset: usize) -> i64 {
        let after = self.shifts.partition_point(|(from, _)| *from <= offset);
        after.checked_sub(1).map_or(0, |at| self.shifts[at].1)
    }
}

/// [`TableDiff::in_changed`] and [`TableDiff::shift_at`] at once, each in a step or two
/// whatever the order of the offsets asked: the running bindings are walked in cidr order,
/// which a file need not be written in, and two binary searches over thousands of changed
/// tables per binding were a tenth of a 1 % push's compile.
#[derive(Debug)]
pub(crate) struct Locator<'diff> {
    diff: &'diff TableDiff,
    changed: Buckets,
    shifts: Buckets,
}

impl TableDiff {
    pub(crate) fn locator(&self) -> Locator<'_> {
        Locator {
            diff: self,
            changed: Buckets::new(self.old_changed.iter().map(|range| range.start)),
            shifts: Buckets::new(self.shifts.iter().map(|(from, _)| *from)),
        }
    }
}

impl Locator<'_> {
    /// `None` when the running text's `offset` is in a changed table, else how far the kept
    /// table there moved.
    pub(crate) fn locate(&self, offset: usize) -> Option<i64> {
        let changed = &self.diff.old_changed;
        let after = self
            .changed
            .partition(changed.len(), |at| changed[at].start, offset);
        if after
            .checked_sub(1)
            .is_some_and(|at| changed[at].contains(&offset))
        {
            return None;
        }
        let shifts = &self.diff.shifts;
        let after = self
            .shifts
            .partition(shifts.len(), |at| shifts[at].0, offset);
        Some(after.checked_sub(1).map_or(0, |at| shifts[at].1))
    }
}

/// How many of an ascending list of offsets come before each 256-byte bucket of a text (a
/// table is at least 12 bytes, so a bucket holds few of them): where the list stands against
/// any offset is then a look-up and a short scan.
#[derive(Debug)]
struct Buckets {
    /// Per bucket, up to the one past the last offset listed, how many offsets are below it.
    before: Vec<u32>,
}

/// The size of a bucket: 2 to the power of this.
const BUCKET_BITS: u32 = 8;

impl Buckets {
    fn new(starts: impl Iterator<Item = usize> + Clone) -> Buckets {
        let last = starts
            .clone()
            .last()
            .map_or(0, |last| (last >> BUCKET_BITS) + 1);
        let mut before = Vec::with_capacity(last + 1);
        let mut starts = starts.peekable();
        let mut counted = 0_u32;
        for bucket in 0..=last {
            while starts
                .next_if(|start| *start < bucket << BUCKET_BITS)
                .is_some()
            {
                counted += 1;
            }
            before.push(counted);
        }
        Buckets { before }
    }

    /// How many of the `len` offsets (`start` of each place, ascending: those listed at
    /// [`Buckets::new`]) are at most `offset`, as `partition_point` counts them.
    fn partition(&self, len: usize, start: impl Fn(usize) -> usize, offset: usize) -> usize {
        let Some(&below) = self.before.get(offset >> BUCKET_BITS) else {
            // Past the bucket of the last offset: every one is below.
            return len;
        };
        let mut at = below as usize;
        while at < len && start(at) <= offset {
            at += 1;
        }
        at
    }
}

/// The tables of `new` that differ from those of `old` (see the module comment), or `None`
/// when the two do not hold as many tables, or when the changed tables are more than
/// `max_changed_bytes` of `new` (reading the whole file is then as quick).
///
/// The texts are walked side by side, compared a block at a time where they agree: only
/// around each difference are the cuts looked for (back to the last one both texts share
/// before it, on to the next one in each). The pairs of tables are the ones cutting both
/// texts whole and pairing the n-th tables would give (a test checks it against that), and a
/// 1 % change of a 17 MB file no longer searches both texts for every header (a fifth of its
/// compile).
pub(crate) fn diff_tables(old: &str, new: &str, max_changed_bytes: usize) -> Option<TableDiff> {
    let finder = memchr::memmem::Finder::new(HEADER);
    let last_header = memchr::memmem::FinderRev::new(HEADER);
    let mut walk = Walk {
        diff: TableDiff::default(),
        shift: 0,
        changed_bytes: 0,
        max_changed_bytes,
    };
    // The part before the first table (empty when the text starts with one) is the first pair.
    let first = |text: &str| {
        if text.as_bytes().starts_with(&HEADER[1..]) {
            Some(0)
        } else {
            next_cut(&finder, text, 0)
        }
    };
    let (mut old_at, mut new_at) = both_or_neither(old, new, first(old), first(new))?;
    walk.pair(old, new, 0..old_at, 0..new_at)?;
    // Both at a cut of the same rank, or both at their ends.
    while old_at < old.len() {
        let agreeing = agreeing_length(&old.as_bytes()[old_at..], &new.as_bytes()[new_at..]);
        if old_at + agreeing == old.len() && new_at + agreeing == new.len() {
            walk.kept(old_at, new_at)?;
            break;
        }
        // The tables before the last cut whose header is whole in what agrees are kept.
        if let Some(header) = last_header.rfind(&old.as_bytes()[old_at..old_at + agreeing]) {
            walk.kept(old_at, new_at)?;
            (old_at, new_at) = (old_at + header + 1, new_at + header + 1);
        }
        let (old_end, new_end) = both_or_neither(
            old,
            new,
            next_cut(&finder, old, old_at),
            next_cut(&finder, new, new_at),
        )?;
        walk.pair(old, new, old_at..old_end, new_at..new_end)?;
        (old_at, new_at) = (old_end, new_end);
    }
    Some(walk.diff)
}

/// The next cuts of both texts, or both ends when neither has one; `None` when one has a cut
/// and the other none (they do not hold as many tables).
fn both_or_neither(
    old: &str,
    new: &str,
    old_cut: Option<usize>,
    new_cut: Option<usize>,
) -> Option<(usize, usize)> {
    match (old_cut, new_cut) {
        (Some(old_cut), Some(new_cut)) => Some((old_cut, new_cut)),
        (None, None) => Some((old.len(), new.len())),
        _ => None,
    }
}

/// The first cut of `text` after `from` (a cut, or 0): before the next `[[binding]]` header.
fn next_cut(finder: &memchr::memmem::Finder<'_>, text: &str, from: usize) -> Option<usize> {
    finder
        .find(text.as_bytes().get(from..)?)
        .map(|header| from + header + 1)
}

/// The diff as the pairs of tables are met, in order.
struct Walk {
    diff: TableDiff,
    shift: i64,
    changed_bytes: usize,
    max_changed_bytes: usize,
}

impl Walk {
    /// Kept tables from `old_at` (moved to `new_at`) on.
    fn kept(&mut self, old_at: usize, new_at: usize) -> Option<()> {
        let moved = i64::try_from(new_at).ok()? - i64::try_from(old_at).ok()?;
        if moved != self.shift {
            self.diff.shifts.push((old_at, moved));
            self.shift = moved;
        }
        Some(())
    }

    /// A pair of tables (or of the parts before the first): kept when equal, else changed;
    /// `None` once the changed ones pass the bound.
    fn pair(
        &mut self,
        old: &str,
        new: &str,
        old_table: Range<usize>,
        new_table: Range<usize>,
    ) -> Option<()> {
        if old.as_bytes()[old_table.clone()] == new.as_bytes()[new_table.clone()] {
            return self.kept(old_table.start, new_table.start);
        }
        self.changed_bytes += new_table.len();
        if self.changed_bytes > self.max_changed_bytes {
            return None;
        }
        join(&mut self.diff.new_changed, new_table);
        join(&mut self.diff.old_changed, old_table);
        Some(())
    }
}

/// Appends `range` to `ranges`, joined to the last one when they touch.
fn join(ranges: &mut Vec<Range<usize>>, range: Range<usize>) {
    match ranges.last_mut() {
        Some(last) if last.end == range.start => last.end = range.end,
        _ => ranges.push(range),
    }
}

#[cfg(test)]
// Lists of one changed range are what the tests expect, not ranges meant as lists.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The diff as it was made before the walk: both texts cut whole, the n-th tables paired
    /// (the oracle [`diff_tables`] is checked against).
    fn diff_tables_by_cuts(old: &str, new: &str, max_changed_bytes: usize) -> Option<TableDiff> {
        let finder = memchr::memmem::Finder::new(HEADER);
        let mut old_cuts = cuts(&finder, old);
        let mut new_cuts = cuts(&finder, new);
        let mut diff = TableDiff::default();
        let (mut old_at, mut new_at) = (0, 0);
        let mut shift = 0_i64;
        let mut changed_bytes = 0;
        loop {
            let (old_end, new_end) = match (old_cuts.next(), new_cuts.next()) {
                (Some(old_end), Some(new_end)) => (old_end, new_end),
                (None, None) => (old.len(), new.len()),
                _ => return None,
            };
            let (old_table, new_table) = (old_at..old_end, new_at..new_end);
            if old.as_bytes()[old_table.clone()] == new.as_bytes()[new_table.clone()] {
                let moved = i64::try_from(new_at).ok()? - i64::try_from(old_at).ok()?;
                if moved != shift {
                    diff.shifts.push((old_at, moved));
                    shift = moved;
                }
            } else {
                changed_bytes += new_table.len();
                if changed_bytes > max_changed_bytes {
                    return None;
                }
                join(&mut diff.new_changed, new_table);
                join(&mut diff.old_changed, old_table);
            }
            if old_end == old.len() && new_end == new.len() {
                return Some(diff);
            }
            (old_at, new_at) = (old_end, new_end);
        }
    }

    /// Where `text` is cut: before every line that starts with a `[[binding]]` header, and at 0
    /// when the text starts with one (its first part, what comes before the first table, is then
    /// empty, so that a comment added before the first table or taken away changes that part
    /// alone).
    fn cuts<'a>(
        finder: &'a memchr::memmem::Finder<'a>,
        text: &'a str,
    ) -> impl Iterator<Item = usize> + 'a {
        let first = text.as_bytes().starts_with(&HEADER[1..]).then_some(0);
        first
            .into_iter()
            .chain(finder.find_iter(text.as_bytes()).map(|at| at + 1))
    }

    proptest! {
        /// Through the buckets, the partition of any offset is `partition_point`'s: over
        /// lists with several offsets in a bucket, buckets with none, and offsets past the last.
        #[test]
        fn the_partition_through_the_buckets_is_the_partition_point(
            mut starts in prop::collection::vec(0_usize..3000, 0..80),
            offsets in prop::collection::vec(0_usize..3500, 1..50),
        ) {
            starts.sort_unstable();
            let buckets = Buckets::new(starts.iter().copied());
            for offset in offsets {
                let expected = starts.partition_point(|start| *start <= offset);
                prop_assert_eq!(buckets.partition(starts.len(), |at| starts[at], offset), expected);
            }
        }

        /// A locator answers, for offsets asked in any order, what `in_changed` and `shift_at`
        /// answer: over generated texts of tables, some changed (longer, shorter or as long).
        #[test]
        fn a_locator_locates_as_the_two_searches_do(
            edits in prop::collection::vec(0_u8..4, 1..40),
            offsets in prop::collection::vec(any::<prop::sample::Index>(), 1..200),
        ) {
            let (mut old, mut new) = (String::from("# head\n"), String::from("# head\n"));
            for (index, edit) in edits.iter().enumerate() {
                let cidr = format!("10.0.{index}.0/24");
                old.push_str(&table(&cidr, "web"));
                new.push_str(&table(&cidr, ["web", "dns", "resolver", "cdn"][usize::from(*edit)]));
            }
            let Some(diff) = diff_tables(&old, &new, new.len()) else {
                return Err(TestCaseError::fail("as many tables"));
            };
            let locator = diff.locator();
            for offset in offsets {
                let offset = offset.index(old.len());
                let expected = (!diff.in_changed(offset)).then(|| diff.shift_at(offset));
                prop_assert_eq!(locator.locate(offset), expected, "at {}", offset);
            }
        }
    }

    /// Pieces of a file of bindings, some looking like headers but not at a line's start, or
    /// broken.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (0_u8..6, prop::sample::select(vec!["web", "dns", "resolver"]))
                .prop_map(|(index, service)| table(&format!("10.0.{index}.0/24"), service)),
            1 => Just("[[binding]]\n".to_owned()),
            1 => Just("[[bindinX]]\n".to_owned()),
            1 => Just("# [[binding]]\n".to_owned()),
            1 => Just("\n".to_owned()),
            1 => Just("x = 1".to_owned()),
            1 => Just("[[binding".to_owned()),
        ]
    }

    /// A text of pieces, and another made of it by replacing, adding and removing pieces.
    fn text_and_edited() -> impl Strategy<Value = (String, String)> {
        (
            prop::collection::vec(piece(), 0..25),
            prop::collection::vec(
                (
                    0..25_usize,
                    0..3_usize,
                    prop::collection::vec(piece(), 0..3),
                ),
                0..5,
            ),
        )
            .prop_map(|(pieces, changes)| {
                let mut edited = pieces.clone();
                for (at, removed, inserted) in changes {
                    let at = at.min(edited.len());
                    let removed = removed.min(edited.len() - at);
                    edited.splice(at..at + removed, inserted);
                }
                (pieces.concat(), edited.concat())
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The walk finds what cutting both texts whole and pairing their n-th tables finds:
        /// the same changed tables, shifts and refusals, whatever the texts (headers at the
        /// start, in the middle of a line, broken across a change, tables added or removed).
        #[test]
        fn the_walk_pairs_the_tables_as_cutting_both_texts_whole_does(
            (old, new) in text_and_edited(),
            bound in prop_oneof![Just(usize::MAX), 0_usize..200],
        ) {
            prop_assert_eq!(diff_tables(&old, &new, bound), diff_tables_by_cuts(&old, &new, bound));
        }
    }

    fn table(cidr: &str, service: &str) -> String {
        format!("[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n\n")
    }

    #[test]
    fn finds_the_changed_tables_and_how_far_the_kept_ones_moved() {
        let old = format!(
            "# bindings\n{}{}{}",
            table("192.0.2.0/24", "web"),
            table("198.51.100.0/24", "web"),
            table("203.0.113.0/24", "dns")
        );
        let new = format!(
            "# bindings\n{}{}{}",
            table("192.0.2.0/24", "web"),
            table("198.51.100.0/24", "resolver"),
            table("203.0.113.0/24", "dns")
        );
        let diff = diff_tables(&old, &new, usize::MAX).expect("as many tables");
        let second = old.find("[[binding]]\ncidr = \"198").expect("second table");
        let third = old.find("[[binding]]\ncidr = \"203").expect("third table");
        assert_eq!(diff.old_changed, [second..third]);
        assert_eq!(
            diff.new_changed,
            [second..third + "resolver".len() - "web".len()]
        );
        assert!(diff.in_changed(second) && diff.in_changed(third - 1));
        assert!(!diff.in_changed(second - 1) && !diff.in_changed(third));
        assert_eq!(diff.shift_at(0), 0);
        assert_eq!(diff.shift_at(third), 5);
        // The preamble is a table like any other: changed, it is read again.
        let commented = format!("# all bindings\n{}", &old["# bindings\n".len()..]);
        let diff = diff_tables(&old, &commented, usize::MAX).expect("as many tables");
        assert_eq!(diff.old_changed, [0.."# bindings\n".len()]);
        assert_eq!(diff.shift_at(old.len() - 1), 4);
        // Taken away, the first part is empty.
        let bare = &old["# bindings\n".len()..];
        let diff = diff_tables(&old, bare, usize::MAX).expect("as many tables");
        assert_eq!(diff.old_changed, [0.."# bindings\n".len()]);
        assert_eq!(diff.new_changed, [0..0]);
        assert_eq!(diff.shift_at(old.len() - 1), -11);
    }

    #[test]
    fn refuses_other_table_counts_and_large_changes() {
        let old = format!(
            "{}{}",
            table("192.0.2.0/24", "web"),
            table("198.51.100.0/24", "web")
        );
        let added = format!("{old}{}", table("203.0.113.0/24", "dns"));
        assert_eq!(diff_tables(&old, &added, usize::MAX), None);
        let changed = old.replace("web", "dns");
        assert_eq!(diff_tables(&old, &changed, 10), None);
        let same = diff_tables(&old, &old, 0).expect("nothing changed");
        assert!(same.new_changed.is_empty() && same.shift_at(old.len() - 1) == 0);
    }
}
