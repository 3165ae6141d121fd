//! Entry updates prepared outside the store's lock.
//!
//! Replacing a body used to run Automerge's `update_text` inside
//! [`crate::KnowledgeStore::update`]: a Myers diff of grapheme clusters
//! without any limit, which took seconds for a 40,000-character body
//! replaced by a different one, while the node held the lock every read
//! waits for. Here the diff is a pure function the caller runs first,
//! without any lock ([`BodyEdit::between`], bounded by a deadline); the
//! store then only checks that the body is still the text the edit was
//! computed from and splices ([`crate::KnowledgeStore::apply_update`]).
//!
//! An edit is at most [`MAX_SPLICES`] splices, or, when it rewrites most of
//! a long body, a fresh text ([`REWRITE_MIN_CHARS`]): both bound the time
//! Automerge takes to apply it. Splices are in Unicode scalar values
//! (chars) of the old text. Automerge counts text positions in the document's text encoding:
//! code points by default, but UTF-8 or UTF-16 code units when its
//! `utf8-indexing` / `utf16-indexing` feature is on (Cargo features are
//! unified across a build, so another crate could turn one on). Positions
//! are therefore converted when the edit is applied, with the encoding the
//! document reports.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ReadDoc, TextEncoding};
use similar::{Algorithm, DiffTag};

use super::entry::{self, EntryUpdate, BODY};
use super::read::{child, malformed};
use crate::error::KnowledgeError;

/// How long [`PreparedUpdate::new`] lets a body diff run before it settles
/// for a coarser edit.
pub const DEFAULT_DIFF_TIMEOUT: Duration = Duration::from_millis(50);

/// Most splices in one edit. Each splice that inserts costs Automerge time
/// in proportion to the text's length (some 2.5 ms in a 40,000-character
/// text, measured), however little it inserts, so a character diff of two
/// unrelated texts (hundreds of splices) would take a second to apply.
/// Past this many, the splices closest together are merged, rewriting the
/// few characters between them.
pub const MAX_SPLICES: usize = 16;

/// Deleting a character costs Automerge some 4 µs (measured: 157 ms for
/// 40,000), against 0.5 µs to insert one into a fresh text. An edit that
/// deletes at least this many characters, and over three quarters of the
/// text, writes the new text as a fresh Text object instead. The price: a
/// concurrent edit of the old text on another replica is lost when the two
/// merge, as with a concurrent title change (one write wins). So only the
/// rewrite of a very long body takes this path: below it, splices keep
/// concurrent edits and the write holds the store's lock for at most some
/// 260 ms of deletes (65,536 characters); above it (bodies go up to 256
/// KiB, a second of deletes) the lock is held for a fresh text's 20 ms.
pub const REWRITE_MIN_CHARS: usize = 65_536;

/// One replacement in the old text, in chars.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Splice {
    at: usize,
    delete: usize,
    insert: String,
}

/// The edit turning one body text into another: splices, so that a
/// concurrent edit elsewhere in the body survives the merge, or, when it
/// rewrites most of a long body, a fresh text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyEdit {
    /// The text the edit applies to, by hash: the store refuses the edit
    /// if the body is no longer this text.
    base: blake3::Hash,
    /// In ascending order, neither overlapping nor touching.
    splices: Vec<Splice>,
    coarse: bool,
    /// Write the new text as a fresh Text object instead of splicing.
    rewrite: bool,
}

impl BodyEdit {
    /// The edit from `old` to `new`: a character diff (Myers, with the
    /// `similar` crate's bounded search for hard inputs). Once `timeout`
    /// has passed, the diff stops refining and replaces each remaining
    /// differing stretch whole: a coarser edit, still exactly `new`.
    ///
    /// The one place this crate reads a clock: the deadline decides how
    /// finely an edit is expressed, never the text it produces.
    pub fn between(old: &str, new: &str, timeout: Duration) -> Self {
        let old_chars: Vec<char> = old.chars().collect();
        let new_chars: Vec<char> = new.chars().collect();
        let deadline = Instant::now().checked_add(timeout);
        let ops = similar::capture_diff_slices_deadline(
            Algorithm::Myers,
            &old_chars,
            &new_chars,
            deadline,
        );
        let coarse = deadline.is_some_and(|d| Instant::now() > d);
        let mut splices: Vec<Splice> = Vec::new();
        for op in ops {
            let (tag, old_range, new_range) = op.as_tag_tuple();
            if tag == DiffTag::Equal {
                continue;
            }
            let insert: String = new_chars
                .get(new_range)
                .unwrap_or_default()
                .iter()
                .collect();
            match splices.last_mut() {
                // A deletion next to an insertion is one replacement.
                Some(last) if last.at + last.delete == old_range.start => {
                    last.delete += old_range.len();
                    last.insert.push_str(&insert);
                }
                _ => splices.push(Splice {
                    at: old_range.start,
                    delete: old_range.len(),
                    insert,
                }),
            }
        }
        let merged = splices.len() > MAX_SPLICES;
        if merged {
            splices = merge_closest(splices, &old_chars, MAX_SPLICES);
        }
        let deleted: usize = splices.iter().map(|s| s.delete).sum();
        Self {
            base: blake3::hash(old.as_bytes()),
            splices,
            coarse: coarse || merged,
            rewrite: deleted >= REWRITE_MIN_CHARS && deleted * 4 > old_chars.len() * 3,
        }
    }

    /// Whether the edit may rewrite more than what changed: the deadline
    /// passed before the diff ended, or splices were merged to stay within
    /// [`MAX_SPLICES`].
    pub fn is_coarse(&self) -> bool {
        self.coarse
    }

    /// Whether the edit writes the new text as a fresh Text object (see
    /// [`REWRITE_MIN_CHARS`]) rather than splicing the current one.
    pub fn is_rewrite(&self) -> bool {
        self.rewrite
    }

    /// Number of splices (0 when the texts are equal).
    pub fn splice_count(&self) -> usize {
        self.splices.len()
    }

    /// Applies the edit to the body text at `parent[BODY]`, after checking
    /// that it holds the text the edit was computed from.
    pub(crate) fn apply<T: Transactable + ReadDoc>(
        &self,
        tx: &mut T,
        id: &str,
        parent: &ObjId,
    ) -> Result<(), KnowledgeError> {
        let text = child(tx, parent, BODY, ObjType::Text)
            .ok_or_else(|| malformed(id, "body is not text"))?;
        let current = tx.text(&text)?;
        if blake3::hash(current.as_bytes()) != self.base {
            return Err(KnowledgeError::BodyChanged(id.to_owned()));
        }
        if self.rewrite {
            let new = self.rebuild(&current);
            let fresh = tx.put_object(parent, BODY, ObjType::Text)?;
            tx.splice_text(&fresh, 0, 0, &new)?;
            return Ok(());
        }
        let Some(width) = unit_width(tx.text_encoding()) else {
            // Grapheme positions cannot address a char inside a cluster:
            // rebuild the new text and let Automerge diff it. No document
            // here uses this encoding; it is handled to stay correct.
            let new = self.rebuild(&current);
            tx.update_text(&text, &new)?;
            return Ok(());
        };
        let positions = self.positions(&current, width);
        // Back to front: each splice leaves the positions before it alone.
        for (splice, (at, delete)) in self.splices.iter().zip(positions).rev() {
            let delete =
                isize::try_from(delete).map_err(|_| malformed(id, "body too long to splice"))?;
            tx.splice_text(&text, at, delete, &splice.insert)?;
        }
        Ok(())
    }

    /// Each splice's start and deleted length in units of `width`, over
    /// `old` (the text the edit was computed from).
    fn positions(&self, old: &str, width: fn(char) -> usize) -> Vec<(usize, usize)> {
        let mut chars = old.chars();
        let (mut char_pos, mut unit_pos) = (0, 0);
        let mut advance_to = |target: usize| {
            while char_pos < target {
                let Some(c) = chars.next() else { break };
                unit_pos += width(c);
                char_pos += 1;
            }
            unit_pos
        };
        self.splices
            .iter()
            .map(|s| {
                let start = advance_to(s.at);
                let end = advance_to(s.at + s.delete);
                (start, end - start)
            })
            .collect()
    }

    /// The text this edit makes of `old`.
    fn rebuild(&self, old: &str) -> String {
        let old: Vec<char> = old.chars().collect();
        let mut out = String::with_capacity(old.len());
        let mut pos = 0;
        for s in &self.splices {
            out.extend(old.get(pos..s.at).unwrap_or_default());
            out.push_str(&s.insert);
            pos = s.at + s.delete;
        }
        out.extend(old.get(pos..).unwrap_or_default());
        out
    }
}

/// Merges the splices separated by the shortest stretches of unchanged
/// text until at most `max` remain. `splices` are in ascending order, over
/// `old`.
fn merge_closest(splices: Vec<Splice>, old: &[char], max: usize) -> Vec<Splice> {
    let gap = |i: usize| splices[i + 1].at - (splices[i].at + splices[i].delete);
    let mut by_gap: Vec<usize> = (0..splices.len().saturating_sub(1)).collect();
    by_gap.sort_by_key(|&i| (gap(i), i));
    let mut join_next = vec![false; splices.len()];
    for &i in by_gap.iter().take(splices.len().saturating_sub(max)) {
        join_next[i] = true;
    }
    let mut out: Vec<Splice> = Vec::with_capacity(max);
    let mut joining = false;
    for (splice, join) in splices.into_iter().zip(join_next) {
        match out.last_mut() {
            Some(last) if joining => {
                let end = last.at + last.delete;
                last.insert
                    .extend(old.get(end..splice.at).unwrap_or_default());
                last.insert.push_str(&splice.insert);
                last.delete = splice.at + splice.delete - last.at;
            }
            _ => out.push(splice),
        }
        joining = join;
    }
    out
}

/// Units per char in the document's text encoding; `None` for grapheme
/// clusters, which are not a per-char measure.
fn unit_width(encoding: TextEncoding) -> Option<fn(char) -> usize> {
    match encoding {
        TextEncoding::UnicodeCodePoint => Some(|_| 1),
        TextEncoding::Utf8CodeUnit => Some(char::len_utf8),
        TextEncoding::Utf16CodeUnit => Some(char::len_utf16),
        TextEncoding::GraphemeCluster => None,
    }
}

/// An [`EntryUpdate`] validated, with its body diffed against the current
/// text: everything costly done before taking the store's lock.
///
/// The two phases, for a caller that keeps the store behind a lock:
/// read the entry (under the lock), then `PreparedUpdate::new` with its
/// body (without), then [`crate::KnowledgeStore::apply_update`] (under the
/// lock). If the body changed in between, `apply_update` fails with
/// [`KnowledgeError::BodyChanged`] and changes nothing: read and prepare
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedUpdate {
    pub(crate) title: Option<String>,
    pub(crate) body: Option<BodyEdit>,
    pub(crate) tags: Option<BTreeSet<String>>,
}

impl PreparedUpdate {
    /// Validates `update` and diffs its body, if any, against
    /// `current_body` (ignored when the update leaves the body alone),
    /// within [`DEFAULT_DIFF_TIMEOUT`].
    pub fn new(update: EntryUpdate, current_body: &str) -> Result<Self, KnowledgeError> {
        Self::with_timeout(update, current_body, DEFAULT_DIFF_TIMEOUT)
    }

    /// As [`new`](Self::new), with the diff's deadline `timeout` from now.
    pub fn with_timeout(
        update: EntryUpdate,
        current_body: &str,
        timeout: Duration,
    ) -> Result<Self, KnowledgeError> {
        let tags = entry::check_update(&update)?;
        Ok(Self {
            title: update.title,
            body: update
                .body
                .map(|new| BodyEdit::between(current_body, &new, timeout)),
            tags,
        })
    }

    /// The body edit, if the update changes the body.
    pub fn body(&self) -> Option<&BodyEdit> {
        self.body.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{Automerge, ObjType, ROOT};

    const SAMPLES: &[(&str, &str)] = &[
        ("", "héllo"),
        ("héllo wörld", "hello world"),
        ("café crème", "café au lait crème"),
        ("a🐻‍❄️b", "a🐻b🐻‍❄️"),
        ("flags 🇫🇷🇩🇪 end", "flags 🇩🇪🇫🇷 end"),
        ("東京は雨", "東京は晴れ、大阪は雨"),
        ("e\u{301}t\u{301}e\u{301}", "ete\u{301}"),
        ("𝄞 clef 😀", "😀 clef 𝄞"),
        ("same", "same"),
        ("gone", ""),
    ];

    /// Applies `edit` to a text holding `old` in a document using
    /// `encoding`, and returns the text it made.
    fn apply_in(encoding: TextEncoding, old: &str, edit: &BodyEdit) -> String {
        let mut doc = Automerge::new_with_encoding(encoding);
        let mut tx = doc.transaction();
        let text = tx.put_object(ROOT, BODY, ObjType::Text).expect("text");
        tx.splice_text(&text, 0, 0, old).expect("fill");
        tx.commit();
        let mut tx = doc.transaction();
        edit.apply(&mut tx, "e", &ROOT).expect("apply");
        tx.commit();
        let text = child(&doc, &ROOT, BODY, ObjType::Text).expect("a text");
        doc.text(&text).expect("read")
    }

    #[test]
    fn edits_land_in_every_text_encoding() {
        for encoding in [
            TextEncoding::UnicodeCodePoint,
            TextEncoding::Utf8CodeUnit,
            TextEncoding::Utf16CodeUnit,
            TextEncoding::GraphemeCluster,
        ] {
            let long_old = SAMPLES
                .iter()
                .map(|(old, _)| *old)
                .collect::<String>()
                .repeat(1000);
            let long_new = SAMPLES
                .iter()
                .map(|(_, new)| *new)
                .collect::<String>()
                .repeat(1000);
            assert!(long_old.chars().count() > REWRITE_MIN_CHARS);
            let rewrite = BodyEdit::between(&long_old, &long_new, Duration::ZERO);
            assert!(rewrite.is_rewrite());
            assert_eq!(apply_in(encoding, &long_old, &rewrite), long_new);
            for (old, new) in SAMPLES {
                let edit = BodyEdit::between(old, new, Duration::from_secs(5));
                assert!(!edit.is_rewrite());
                assert_eq!(
                    &apply_in(encoding, old, &edit),
                    new,
                    "{encoding:?}: {old:?}"
                );
                // With no time at all the edit is coarser, and still right.
                let coarse = BodyEdit::between(old, new, Duration::ZERO);
                assert_eq!(&apply_in(encoding, old, &coarse), new, "{encoding:?}");
            }
        }
    }

    #[test]
    fn a_small_change_is_a_small_splice() {
        let old = "x".repeat(1000) + "middle" + &"y".repeat(1000);
        let new = "x".repeat(1000) + "centre" + &"y".repeat(1000);
        let edit = BodyEdit::between(&old, &new, Duration::from_secs(5));
        assert!(!edit.is_coarse());
        let touched: usize = edit.splices.iter().map(|s| s.delete).sum();
        assert!(touched <= 6, "only the changed word: {:?}", edit.splices);
        assert_eq!(edit.rebuild(&old), new);
        assert_eq!(
            BodyEdit::between("same", "same", Duration::ZERO).splice_count(),
            0
        );
    }

    #[test]
    fn many_splices_are_merged_across_the_shortest_gaps() {
        // Every other character changes: one splice each, before merging.
        let old: String = "ab".repeat(100);
        let new: String = "aB".repeat(100);
        let edit = BodyEdit::between(&old, &new, Duration::from_secs(5));
        assert_eq!(edit.splice_count(), MAX_SPLICES);
        assert!(edit.is_coarse());
        assert!(edit
            .splices
            .windows(2)
            .all(|w| w[0].at + w[0].delete < w[1].at));
        assert_eq!(edit.rebuild(&old), new);
        for (old, new) in SAMPLES {
            let many = format!("{old}{old}{old}").repeat(8);
            let other = format!("{new}{old}{new}").repeat(8);
            let edit = BodyEdit::between(&many, &other, Duration::from_secs(5));
            assert!(edit.splice_count() <= MAX_SPLICES);
            assert_eq!(apply_in(TextEncoding::Utf16CodeUnit, &many, &edit), other);
        }
    }

    #[test]
    fn an_edit_of_another_text_is_refused() {
        let edit = BodyEdit::between("one", "two", Duration::from_secs(5));
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let text = tx.put_object(ROOT, BODY, ObjType::Text).expect("text");
        tx.splice_text(&text, 0, 0, "uno").expect("fill");
        assert!(matches!(
            edit.apply(&mut tx, "e", &ROOT),
            Err(KnowledgeError::BodyChanged(id)) if id == "e"
        ));
    }
}
