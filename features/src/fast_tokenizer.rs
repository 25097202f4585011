//! An exact, allocation-light encoder for the bundle tokenizer.
//!
//! The bundle tokenizer (see [`crate::vocab`]) is NFKC + lower-case, the `Whitespace`
//! pre-tokenizer (`\w+|[^\w\s]+`) and byte-pair encoding. Running it through the
//! `tokenizers` pipeline costs ~100 µs per prompt, mostly in offset bookkeeping the
//! featurizer never reads. This module runs the same steps without it:
//!
//! - ASCII text (NFKC is the identity there): split into maximal runs of word bytes
//!   (`[0-9A-Za-z_]`) and of other non-space bytes, lower-casing as it goes;
//! - other text: NFKC with the normalization crate `tokenizers` itself uses, then
//!   `char::to_lowercase` (its `Lowercase`), then the `Whitespace` pre-tokenizer's own
//!   pattern with the same `regex` crate;
//! - each piece is looked up in a table of pieces encoded at load time, and otherwise goes
//!   through the BPE merge loop of `tokenizers` 0.22 (same queue order, same stale-entry
//!   rule, same unknown-character handling).
//!
//! [`FastTokenizer::from_tokenizer`] accepts only tokenizers whose configuration it
//! reproduces exactly, and [`FastTokenizer::encode`] declines (returns `None`) text that
//! contains an added token (`[UNK]`); the caller then uses `tokenizers`. Parity with
//! `tokenizers` is tested on generated text and on every RouteLLM prompt.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::LazyLock;

use regex::Regex;
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokenizers::Tokenizer;
use unicode_normalization_alignments::UnicodeNormalization;

/// The pattern of `tokenizers`' `Whitespace` pre-tokenizer: its matches are the pieces.
static PIECES: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\w+|[^\w\s]+").ok());

/// Longest piece whose encoding is kept in the load-time table or the per-thread cache.
const MAX_TABLE_PIECE: usize = 32;

/// Entries of the per-thread cache of merged pieces (cleared when full).
const MERGE_CACHE_ENTRIES: usize = 16384;

/// (id of the tokenizer the entries belong to, piece → ids).
type MergeCache = (u64, FxHashMap<Box<str>, Box<[u32]>>);

thread_local! {
    static MERGED: std::cell::RefCell<MergeCache> =
        std::cell::RefCell::new((u64::MAX, FxHashMap::default()));
}

/// Source of [`FastTokenizer::id`]s.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The ASCII fast path of one bundle tokenizer.
#[derive(Debug, Clone)]
pub struct FastTokenizer {
    /// Unique per loaded tokenizer (clones share it: same contents), keys the merge cache.
    id: u64,
    /// Token id of each ASCII byte as a one-character token (`unk` when absent).
    byte_ids: [u32; 128],
    /// Token ids of the non-ASCII one-character tokens.
    char_ids: FxHashMap<char, u32>,
    unk: u32,
    /// `(left, right) -> (rank, merged id)`, as `tokenizers` builds it.
    merges: FxHashMap<(u32, u32), (u32, u32)>,
    /// Encodings of the single-piece vocabulary entries, computed at load time.
    pieces: FxHashMap<Box<[u8]>, Box<[u32]>>,
    /// Contents of the added tokens: text containing one is left to `tokenizers`.
    added: Vec<String>,
}

/// How one byte of the window takes part in pre-tokenization.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ByteClass {
    /// `\w`: `[0-9A-Za-z_]`.
    Word,
    /// `\s`: tab, line feed, vertical tab, form feed, carriage return, space.
    Space,
    /// Printable punctuation and symbols: `[^\w\s]`.
    Other,
    /// Bytes the ASCII path leaves to the general path (non-ASCII, other control bytes).
    Unsupported,
}

fn class(b: u8) -> ByteClass {
    match b {
        b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'_' => ByteClass::Word,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => ByteClass::Space,
        0x21..=0x7e => ByteClass::Other,
        _ => ByteClass::Unsupported,
    }
}

impl FastTokenizer {
    /// The fast path of `tokenizer`, or `None` when its configuration is not the one
    /// this module reproduces exactly (then every text goes through `tokenizers`).
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Option<FastTokenizer> {
        let json: Value = serde_json::from_str(&tokenizer.to_string(false).ok()?).ok()?;
        if !supported_pipeline(&json) {
            return None;
        }
        let model = json.get("model")?;
        let vocab: FxHashMap<String, u32> = model
            .get("vocab")?
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), u32::try_from(v.as_u64()?).ok()?)))
            .collect::<Option<_>>()?;
        let unk = *vocab.get(model.get("unk_token")?.as_str()?)?;
        let mut merges = FxHashMap::default();
        for (rank, m) in model.get("merges")?.as_array()?.iter().enumerate() {
            let (a, b) = merge_pair(m)?;
            let new_id = *vocab.get(&format!("{a}{b}"))?;
            let rank = u32::try_from(rank).ok()?;
            merges.insert((*vocab.get(&a)?, *vocab.get(&b)?), (rank, new_id));
        }
        let mut byte_ids = [unk; 128];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let ch = char::from(u8::try_from(b).ok()?);
            if let Some(&id) = vocab.get(ch.to_string().as_str()) {
                *slot = id;
            }
        }
        let char_ids = vocab
            .iter()
            .filter_map(|(token, &id)| {
                let mut chars = token.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !c.is_ascii() => Some((c, id)),
                    _ => None,
                }
            })
            .collect();
        PIECES.as_ref()?;
        let added = json
            .get("added_tokens")?
            .as_array()?
            .iter()
            .map(|t| {
                // A normalized added token is matched after lower-casing: not reproduced.
                if t.get("normalized")?.as_bool()? {
                    return None;
                }
                Some(t.get("content")?.as_str()?.to_string())
            })
            .collect::<Option<Vec<_>>>()?;
        let mut fast = FastTokenizer {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            byte_ids,
            char_ids,
            unk,
            merges,
            pieces: FxHashMap::default(),
            added,
        };
        // Vocabulary entries that are one whole piece (all word bytes or all other bytes,
        // lower-case) are the pieces prompts are made of; encode them once.
        let mut table = FxHashMap::default();
        let mut out = Vec::new();
        for token in vocab.keys() {
            let bytes = token.as_bytes();
            if bytes.is_empty() || bytes.len() > MAX_TABLE_PIECE {
                continue;
            }
            let first = class(bytes[0]);
            let whole = matches!(first, ByteClass::Word | ByteClass::Other)
                && bytes
                    .iter()
                    .all(|&b| class(b) == first && !b.is_ascii_uppercase());
            if whole {
                out.clear();
                fast.merge_piece(token, &mut out);
                table.insert(Box::from(bytes), out.clone().into_boxed_slice());
            }
        }
        fast.pieces = table;
        Some(fast)
    }

    /// Token ids of `text` (at most `max_tokens`), exactly as `tokenizers` encodes it,
    /// or `None` when `text` contains an added token.
    pub fn encode(&self, text: &str, max_tokens: usize) -> Option<Vec<u32>> {
        if self.added.iter().any(|a| text.contains(a.as_str())) {
            return None;
        }
        self.encode_ascii(text, max_tokens)
            .or_else(|| self.encode_general(text, max_tokens))
    }

    /// Any text: NFKC, lower-case, the pre-tokenizer's regex, then BPE per piece.
    fn encode_general(&self, text: &str, max_tokens: usize) -> Option<Vec<u32>> {
        let pieces = PIECES.as_ref()?;
        let normalized: String = text.nfkc().flat_map(|(c, _)| c.to_lowercase()).collect();
        let mut ids = Vec::with_capacity((normalized.len() / 3).min(max_tokens) + 8);
        for m in pieces.find_iter(&normalized) {
            if ids.len() >= max_tokens {
                break;
            }
            match self.pieces.get(m.as_str().as_bytes()) {
                Some(known) => ids.extend_from_slice(known),
                None => self.merge_cached(m.as_str(), &mut ids),
            }
        }
        ids.truncate(max_tokens);
        Some(ids)
    }

    /// ASCII text with ordinary white space only; `None` for anything else.
    fn encode_ascii(&self, text: &str, max_tokens: usize) -> Option<Vec<u32>> {
        let bytes = text.as_bytes();
        let mut ids = Vec::with_capacity((bytes.len() / 3).min(max_tokens) + 8);
        let mut piece = [0u8; MAX_TABLE_PIECE];
        let mut long = Vec::new();
        let mut i = 0;
        while i < bytes.len() && ids.len() < max_tokens {
            let c = class(bytes[i]);
            match c {
                ByteClass::Unsupported => return None,
                ByteClass::Space => {
                    i += 1;
                    continue;
                }
                ByteClass::Word | ByteClass::Other => {}
            }
            let start = i;
            while i < bytes.len() && class(bytes[i]) == c {
                i += 1;
            }
            let raw = &bytes[start..i];
            let lower: &[u8] = if raw.len() <= MAX_TABLE_PIECE {
                let buf = &mut piece[..raw.len()];
                for (d, s) in buf.iter_mut().zip(raw) {
                    *d = s.to_ascii_lowercase();
                }
                buf
            } else {
                long.clear();
                long.extend(raw.iter().map(u8::to_ascii_lowercase));
                &long
            };
            match self.pieces.get(lower) {
                Some(known) => ids.extend_from_slice(known),
                // Lower-cased ASCII is valid UTF-8.
                None => self.merge_cached(std::str::from_utf8(lower).ok()?, &mut ids),
            }
        }
        // The unsupported-byte check must cover the whole text, not only the used part.
        if bytes[i..]
            .iter()
            .any(|&b| class(b) == ByteClass::Unsupported)
        {
            return None;
        }
        ids.truncate(max_tokens);
        Some(ids)
    }

    /// [`FastTokenizer::merge_piece`] through a per-thread cache of recent pieces (as
    /// `tokenizers` caches words): prompts repeat their rarer words across requests.
    fn merge_cached(&self, piece: &str, out: &mut Vec<u32>) {
        if piece.len() > MAX_TABLE_PIECE {
            return self.merge_piece(piece, out);
        }
        MERGED.with(|cache| {
            let mut cache = cache.borrow_mut();
            let (owner, map) = &mut *cache;
            // One cache per thread, for the tokenizer that used it last (a reload starts over).
            if *owner != self.id {
                map.clear();
                *owner = self.id;
            }
            if let Some(ids) = map.get(piece) {
                out.extend_from_slice(ids);
                return;
            }
            let start = out.len();
            self.merge_piece(piece, out);
            if map.len() >= MERGE_CACHE_ENTRIES {
                map.clear();
            }
            map.insert(piece.into(), out[start..].into());
        })
    }

    /// Appends the BPE encoding of one normalized piece: `BPE::merge_word` followed by
    /// `Word::merge_all` of `tokenizers` 0.22 without dropout (one symbol per character,
    /// each unknown character its own `[UNK]`).
    fn merge_piece(&self, piece: &str, out: &mut Vec<u32>) {
        let n = piece.chars().count();
        let mut symbols: Vec<Symbol> = piece
            .chars()
            .enumerate()
            .map(|(i, c)| Symbol {
                id: self.char_id(c),
                prev: i as isize - 1,
                next: if i + 1 < n { i as isize + 1 } else { -1 },
                removed: false,
            })
            .collect();
        let mut queue: BinaryHeap<Merge> = symbols
            .windows(2)
            .enumerate()
            .filter_map(|(pos, w)| {
                let &(rank, new_id) = self.merges.get(&(w[0].id, w[1].id))?;
                Some(Merge { pos, rank, new_id })
            })
            .collect();
        while let Some(top) = queue.pop() {
            let cur = symbols[top.pos];
            if cur.removed || cur.next == -1 {
                continue;
            }
            let next_pos = cur.next as usize;
            let right = symbols[next_pos];
            // An expired entry: the pair at this position has changed since it was queued.
            match self.merges.get(&(cur.id, right.id)) {
                Some(&(_, id)) if id == top.new_id => {}
                _ => continue,
            }
            symbols[top.pos].id = top.new_id;
            symbols[top.pos].next = right.next;
            symbols[next_pos].removed = true;
            if right.next >= 0 {
                symbols[right.next as usize].prev = top.pos as isize;
            }
            let merged = symbols[top.pos];
            if merged.prev >= 0 {
                let prev = merged.prev as usize;
                if let Some(&(rank, new_id)) = self.merges.get(&(symbols[prev].id, merged.id)) {
                    queue.push(Merge {
                        pos: prev,
                        rank,
                        new_id,
                    });
                }
            }
            if merged.next >= 0 {
                let next = merged.next as usize;
                if let Some(&(rank, new_id)) = self.merges.get(&(merged.id, symbols[next].id)) {
                    queue.push(Merge {
                        pos: top.pos,
                        rank,
                        new_id,
                    });
                }
            }
        }
        out.extend(symbols.iter().filter(|s| !s.removed).map(|s| s.id));
    }

    fn char_id(&self, c: char) -> u32 {
        match u8::try_from(c) {
            Ok(b) if b.is_ascii() => self.byte_ids[usize::from(b)],
            _ => self.char_ids.get(&c).copied().unwrap_or(self.unk),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: isize,
    next: isize,
    removed: bool,
}

/// A queued merge; the heap pops the lowest rank first, then the leftmost position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Merge {
    pos: usize,
    rank: u32,
    new_id: u32,
}

impl Ord for Merge {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.pos.cmp(&self.pos))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One entry of `model.merges`: `["a", "b"]` (current format) or `"a b"` (older files).
fn merge_pair(m: &Value) -> Option<(String, String)> {
    match m {
        Value::Array(pair) if pair.len() == 2 => {
            Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string()))
        }
        Value::String(s) => {
            let (a, b) = s.split_once(' ')?;
            Some((a.to_string(), b.to_string()))
        }
        _ => None,
    }
}

/// Whether the serialized tokenizer is exactly the pipeline this module reproduces.
fn supported_pipeline(json: &Value) -> bool {
    let ty = |v: Option<&Value>| {
        v.and_then(|v| v.get("type"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let normalizer_ok = json
        .get("normalizer")
        .and_then(|n| n.get("normalizers"))
        .and_then(Value::as_array)
        .map(|steps| {
            let names: Vec<_> = steps.iter().map(|s| ty(Some(s))).collect();
            names == [Some("NFKC".to_string()), Some("Lowercase".to_string())]
        })
        .unwrap_or(false)
        && ty(json.get("normalizer")).as_deref() == Some("Sequence");
    let pre_ok = ty(json.get("pre_tokenizer")).as_deref() == Some("Whitespace");
    let null = |k: &str| json.get(k).is_none_or(Value::is_null);
    let Some(model) = json.get("model") else {
        return false;
    };
    let model_null = |k: &str| model.get(k).is_none_or(Value::is_null);
    let model_ok = ty(Some(model)).as_deref() == Some("BPE")
        && model_null("dropout")
        && model_null("continuing_subword_prefix")
        && model_null("end_of_word_suffix")
        && model.get("fuse_unk").and_then(Value::as_bool) == Some(false)
        && model.get("byte_fallback").and_then(Value::as_bool) == Some(false)
        && model.get("ignore_merges").and_then(Value::as_bool) == Some(false);
    normalizer_ok && pre_ok && model_ok && null("truncation") && null("padding")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trained() -> Tokenizer {
        let corpus = [
            "The quick brown fox jumps over the lazy dog.",
            "What is 12 + 30? Answer: 42!!",
            "the theory of the thermal thing, then theirs",
            "aaa aaaa aaaaa bbb abab ___ x_y_z",
        ];
        let mut prompts = Vec::new();
        for _ in 0..5 {
            prompts.extend(corpus.iter().copied());
        }
        crate::vocab::train_tokenizer(prompts.into_iter(), 120, 4096).unwrap()
    }

    fn reference(tok: &Tokenizer, text: &str, max: usize) -> Vec<u32> {
        let ids = tok.encode_fast(text, false).unwrap().get_ids().to_vec();
        ids[..ids.len().min(max)].to_vec()
    }

    #[test]
    fn matches_tokenizers_on_ascii() {
        let tok = trained();
        let fast = FastTokenizer::from_tokenizer(&tok).expect("bundle pipeline is supported");
        for text in [
            "",
            "   ",
            "The THEORY of everything: 1+1=2?!",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b",
            "qqq ~~~ zzz",
            "tab\tand\r\nnewlines\x0bvt\x0cff",
            "x_y_z__ __ theirs.then",
        ] {
            assert_eq!(
                fast.encode(text, 10_000),
                Some(reference(&tok, text, 10_000))
            );
            assert_eq!(fast.encode(text, 3), Some(reference(&tok, text, 3)));
        }
    }

    #[test]
    fn matches_tokenizers_beyond_ascii() {
        let tok = trained();
        let fast = FastTokenizer::from_tokenizer(&tok).unwrap();
        for text in [
            "café THÉORIE ﬁne",
            "a\u{1}b\u{7f}c",
            "x² ≤ ½ — “quoted” ΣΑΣ İstanbul",
            "the the the é",
            "\u{a0}nbsp\u{2003}em space\u{3000}",
        ] {
            assert_eq!(
                fast.encode(text, 10_000),
                Some(reference(&tok, text, 10_000)),
                "{text:?}"
            );
            assert_eq!(
                fast.encode(text, 2),
                Some(reference(&tok, text, 2)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn declines_text_with_an_added_token() {
        let tok = trained();
        let fast = FastTokenizer::from_tokenizer(&tok).unwrap();
        assert_eq!(fast.encode("see [UNK] here", 100), None);
    }

    #[test]
    fn other_pipelines_get_no_fast_path() {
        let mut tok = trained();
        tok.with_pre_tokenizer(Some(
            tokenizers::pre_tokenizers::whitespace::WhitespaceSplit,
        ));
        assert!(FastTokenizer::from_tokenizer(&tok).is_none());
    }
}
