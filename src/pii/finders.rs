//! The finders, one per kind of PII or secret, and the checks that keep their false positives
//! down: Luhn and issuer prefixes for cards, mod-97 for IBANs, SSN area/group/serial rules,
//! NINO prefixes, placeholders in secret assignments, and the overlap resolution.

use std::collections::BTreeMap;

use regex::Regex;

use super::*;

/// Counts ASCII digits and `@` bytes (chunked so the loop vectorises).
pub(super) fn count_digits_and_ats(b: &[u8]) -> (usize, usize) {
    let (mut digits, mut ats) = (0usize, 0usize);
    for chunk in b.chunks(255) {
        let (mut d, mut a) = (0u8, 0u8);
        for &c in chunk {
            d += u8::from(c.wrapping_sub(b'0') < 10);
            a += u8::from(c == b'@');
        }
        digits += usize::from(d);
        ats += usize::from(a);
    }
    (digits, ats)
}

/// Position of the first ASCII digit at or after `i`. Digit-free 32-byte
/// chunks are skipped with a branch-free (vectorisable) test.
pub(super) fn next_digit(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = b.get(i..i + 32) {
        if chunk
            .iter()
            .fold(false, |acc, &c| acc | (c.wrapping_sub(b'0') < 10))
        {
            break;
        }
        i += 32;
    }
    b.get(i..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| i + p)
}

/// Calls `f(start, end, digits)` for every maximal run of
/// [`NUMERIC_REGION_BYTES`] that contains at least `min_digits` digits.
pub(super) fn for_each_numeric_region(
    b: &[u8],
    min_digits: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let in_region = |c: u8| {
        NUMERIC_REGION_BYTES
            .get(usize::from(c))
            .copied()
            .unwrap_or(false)
    };
    let mut i = 0;
    while let Some(first_digit) = next_digit(b, i) {
        let mut start = first_digit;
        while let Some(j) = start.checked_sub(1)
            && j >= i
            && b.get(j).is_some_and(|&c| in_region(c))
        {
            start = j;
        }
        let mut end = first_digit;
        let mut digits = 0;
        while let Some(&c) = b.get(end)
            && in_region(c)
        {
            digits += usize::from(c.is_ascii_digit());
            end += 1;
        }
        if digits >= min_digits {
            f(start, end, digits);
        }
        i = end.max(first_digit + 1);
    }
}

// ---------------------------------------------------------------------------
// Candidate finders
// ---------------------------------------------------------------------------

pub(super) fn push(out: &mut Vec<PiiMatch>, kind: PiiKind, start: usize, end: usize) {
    if start < end {
        out.push(PiiMatch { kind, start, end });
    }
}

pub(super) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Left context of a numeric match: not glued to a word or to a preceding
/// number (`3.`, `12,`, `7-`, `1/`).
pub(super) fn left_numeric_ok(b: &[u8], start: usize) -> bool {
    let Some(i) = start.checked_sub(1) else {
        return true;
    };
    let Some(&p) = b.get(i) else {
        return true;
    };
    if is_word_byte(p) {
        return false;
    }
    if matches!(p, b'.' | b',' | b'-' | b'/')
        && i.checked_sub(1)
            .and_then(|j| b.get(j))
            .is_some_and(u8::is_ascii_digit)
    {
        return false;
    }
    true
}

/// Right context of a numeric match: not glued to a word or followed by
/// another number (`.5`, `,000`, `-12`, `/3`).
pub(super) fn right_numeric_ok(b: &[u8], end: usize) -> bool {
    let Some(&n) = b.get(end) else {
        return true;
    };
    if is_word_byte(n) {
        return false;
    }
    if matches!(n, b'.' | b',' | b'-' | b'/') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    true
}

pub(super) fn find_emails(re: &Regex, text: &str, out: &mut Vec<PiiMatch>) {
    let b = text.as_bytes();
    for m in re.find_iter(text) {
        if in_url_authority(b, m.start()) {
            continue;
        }
        push(out, PiiKind::Email, m.start(), m.end());
    }
}

/// True when the whitespace-delimited token ending at `start` contains `://`,
/// i.e. the `x@host` we found is the userinfo part of a URL.
pub(super) fn in_url_authority(b: &[u8], start: usize) -> bool {
    let lo = start.saturating_sub(256);
    let Some(window) = b.get(lo..start) else {
        return false;
    };
    let tok_start = window
        .iter()
        .rposition(|c| c.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    window
        .get(tok_start..)
        .is_some_and(|tok| tok.windows(3).any(|w| w == b"://"))
}

/// `slice` is `text[offset..]`-relative; `b` is the whole text.
pub(super) fn find_phones(
    re: &Regex,
    b: &[u8],
    slice: &str,
    offset: usize,
    out: &mut Vec<PiiMatch>,
) {
    for m in re.find_iter(slice) {
        let (start, end) = (offset + m.start(), offset + m.end());
        let s = m.as_str().as_bytes();
        let nd = s.iter().filter(|c| c.is_ascii_digit()).count();
        if !(7..=15).contains(&nd) {
            continue;
        }
        if s.contains(&b'.') && s.contains(&b'-') {
            continue;
        }
        // 0000 0000 0000, 111-111-1111: filler, not a phone number.
        let mut ds = s.iter().filter(|c| c.is_ascii_digit());
        if let Some(first) = ds.next()
            && ds.all(|c| c == first)
        {
            continue;
        }
        if !left_numeric_ok(b, start) || !right_numeric_ok(b, end) {
            continue;
        }
        if s.first() == Some(&b'+') && arithmetic_before(b, start) {
            continue;
        }
        push(out, PiiKind::Phone, start, end);
    }
}

/// `5 +1234567`, `x = +1234567`: a `+` number right after an operand or an
/// operator is arithmetic, not a phone number.
pub(super) fn arithmetic_before(b: &[u8], start: usize) -> bool {
    let mut i = start;
    while let Some(j) = i.checked_sub(1) {
        match b.get(j) {
            Some(b' ' | b'\t') => i = j,
            Some(&c) => {
                return c.is_ascii_digit() || matches!(c, b'=' | b'*' | b'/' | b'^' | b'+');
            }
            None => return false,
        }
    }
    false
}

/// Scans `b[from..to]` for card numbers (context checks look outside).
pub(super) fn find_cards(b: &[u8], from: usize, to: usize, out: &mut Vec<PiiMatch>) {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut seps: Vec<u8> = Vec::new();
    let mut i = from;
    while i < to {
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            continue;
        }
        groups.clear();
        seps.clear();
        let mut j = i;
        loop {
            let gs = j;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            groups.push((gs, j));
            match (b.get(j), b.get(j + 1)) {
                (Some(&sep @ (b' ' | b'-')), Some(d)) if d.is_ascii_digit() => {
                    seps.push(sep);
                    j += 1;
                }
                _ => break,
            }
        }
        cards_in_run(b, &groups, &seps, out);
        i = j.max(i + 1);
    }
}

/// Finds card numbers inside one run of digit groups separated by single
/// spaces or dashes. `seps[k]` is the separator between group `k` and `k+1`.
pub(super) fn cards_in_run(
    b: &[u8],
    groups: &[(usize, usize)],
    seps: &[u8],
    out: &mut Vec<PiiMatch>,
) {
    let total: usize = groups.iter().map(|&(s, e)| e - s).sum();
    if total < 13 {
        return;
    }
    let (Some(&(run_start, _)), Some(&(_, run_end))) = (groups.first(), groups.last()) else {
        return;
    };
    let left_ok = left_numeric_ok(b, run_start);
    let right_ok = right_numeric_ok(b, run_end);
    let last = groups.len() - 1;

    let mut s = 0;
    while s < groups.len() {
        let mut best: Option<usize> = None;
        let mut digits = 0usize;
        for e in s..groups.len() {
            let Some(&(gs, ge)) = groups.get(e) else {
                break;
            };
            if e > s {
                // The previous group becomes an inner group: 4-6 digits and the
                // same separator as the rest of the window.
                let inner_ok = groups
                    .get(e - 1)
                    .is_some_and(|&(ps, pe)| (4..=6).contains(&(pe - ps)));
                if !inner_ok || seps.get(e - 1) != seps.get(s) {
                    break;
                }
            }
            let glen = ge - gs;
            digits += glen;
            if digits > 19 {
                break;
            }
            let shape_ok = if e == s {
                (13..=19).contains(&glen)
            } else {
                (3..=6).contains(&glen) && digits >= 13
            };
            if !shape_ok || (s == 0 && !left_ok) || (e == last && !right_ok) {
                continue;
            }
            let Some(&(start, _)) = groups.get(s) else {
                break;
            };
            if card_number_ok(b, start, ge) {
                best = Some(e);
            }
        }
        match best {
            Some(e) => {
                if let (Some(&(start, _)), Some(&(_, end))) = (groups.get(s), groups.get(e)) {
                    push(out, PiiKind::CardNumber, start, end);
                }
                s = e + 1;
            }
            None => s += 1,
        }
    }
}

pub(super) fn card_number_ok(b: &[u8], start: usize, end: usize) -> bool {
    let Some(span) = b.get(start..end) else {
        return false;
    };
    let mut digits = [0u8; 19];
    let mut n = 0;
    for &c in span {
        if c.is_ascii_digit() {
            let Some(slot) = digits.get_mut(n) else {
                return false;
            };
            *slot = c - b'0';
            n += 1;
        }
    }
    let Some(d) = digits.get(..n) else {
        return false;
    };
    (13..=19).contains(&n) && issuer_ok(d) && luhn_ok(d)
}

pub(super) fn prefix_value(d: &[u8], k: usize) -> u32 {
    d.iter().take(k).fold(0, |acc, &x| acc * 10 + u32::from(x))
}

/// Known issuer identification ranges and lengths.
pub(super) fn issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p2 = prefix_value(d, 2);
    let p3 = prefix_value(d, 3);
    let p4 = prefix_value(d, 4);
    match d.first() {
        // Visa
        Some(4) => matches!(n, 13 | 16 | 19),
        // Mastercard 51-55, Maestro 50 / 56-59
        Some(5) => ((51..=55).contains(&p2) && n == 16) || (p2 == 50 || (56..=59).contains(&p2)),
        // Mastercard 2-series
        Some(2) => (2221..=2720).contains(&p4) && n == 16,
        // Amex, JCB, Diners
        Some(3) => {
            ((p2 == 34 || p2 == 37) && n == 15)
                || ((3528..=3589).contains(&p4) && n >= 16)
                || (((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && n >= 14)
        }
        // Discover, UnionPay, Maestro
        Some(6) => true,
        _ => false,
    }
}

pub(super) fn luhn_ok(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

pub(super) fn find_ibans(
    re: &Regex,
    b: &[u8],
    slice: &str,
    offset: usize,
    out: &mut Vec<PiiMatch>,
) {
    for m in re.find_iter(slice) {
        let start = offset + m.start();
        if let Some(end) = iban_end(b, start, offset + m.end()) {
            push(out, PiiKind::Iban, start, end);
        }
    }
}

pub(super) fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == country)
        .map(|&(_, len)| len)
}

/// Validates the IBAN candidate `b[start..end]` and returns the end of the
/// valid IBAN (which may be shorter than the candidate when the regex also
/// swallowed a following group).
pub(super) fn iban_end(b: &[u8], start: usize, end: usize) -> Option<usize> {
    let span = b.get(start..end)?;
    let expected = iban_length(span.get(..2)?)?;
    let mut compact = [0u8; 40];
    let mut n = 0;
    let mut iban_end = None;
    for (off, &c) in span.iter().enumerate() {
        if c == b' ' {
            continue;
        }
        *compact.get_mut(n)? = c;
        n += 1;
        if n == expected {
            iban_end = Some(start + off + 1);
        }
    }
    let iban_end = iban_end?;
    // A truncated candidate must end on a group boundary.
    if iban_end != end && b.get(iban_end) != Some(&b' ') {
        return None;
    }
    (iban_mod97(compact.get(..expected)?)? == 1).then_some(iban_end)
}

pub(super) fn iban_mod97(iban: &[u8]) -> Option<u32> {
    let (head, tail) = (iban.get(..4)?, iban.get(4..)?);
    let mut rem = 0u32;
    for &c in tail.iter().chain(head) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return None,
        };
    }
    Some(rem)
}

pub(super) fn ssn_ok(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    area != b"000"
        && area != b"666"
        && area.first() != Some(&b'9')
        && group != b"00"
        && serial != b"0000"
}

pub(super) fn find_ssns(re: &Regex, b: &[u8], slice: &str, offset: usize, out: &mut Vec<PiiMatch>) {
    for m in re.find_iter(slice) {
        let (start, end) = (offset + m.start(), offset + m.end());
        let s = m.as_str().as_bytes();
        let (Some(area), Some(group), Some(serial)) = (s.get(0..3), s.get(4..6), s.get(7..11))
        else {
            continue;
        };
        if ssn_ok(area, group, serial) && left_numeric_ok(b, start) && right_numeric_ok(b, end) {
            push(out, PiiKind::NationalId, start, end);
        }
    }
}

pub(super) fn find_ninos(re: &Regex, slice: &str, offset: usize, out: &mut Vec<PiiMatch>) {
    for m in re.find_iter(slice) {
        let prefix = m.as_str().as_bytes().get(..2);
        if prefix.is_some_and(|p| NINO_BAD_PREFIXES.iter().any(|bad| bad.as_slice() == p)) {
            continue;
        }
        push(
            out,
            PiiKind::NationalId,
            offset + m.start(),
            offset + m.end(),
        );
    }
}

/// Runs the keyword-anchored ID regex on the window `text[lo..hi]`.
pub(super) fn find_id_keywords(
    re: &Regex,
    text: &str,
    lo: usize,
    hi: usize,
    out: &mut Vec<PiiMatch>,
) {
    let Some(window) = text.get(lo..hi) else {
        return;
    };
    for caps in re.captures_iter(window) {
        let (Some(kw), Some(val)) = (caps.get(1), caps.get(2)) else {
            continue;
        };
        let v = val.as_str().as_bytes();
        let nd = v.iter().filter(|c| c.is_ascii_digit()).count();
        let is_passport = kw.as_str().eq_ignore_ascii_case("passport");
        let ok = if is_passport {
            nd >= 5
        } else {
            nd == 9
                && v.len() == 9
                && matches!(
                    (v.get(0..3), v.get(3..5), v.get(5..9)),
                    (Some(a), Some(g), Some(s)) if ssn_ok(a, g, s)
                )
        };
        if ok {
            push(out, PiiKind::NationalId, lo + val.start(), lo + val.end());
        }
    }
}

pub(super) fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

pub(super) fn find_secret_tokens(re: &Regex, text: &str, out: &mut Vec<PiiMatch>) {
    let b = text.as_bytes();
    for m in re.find_iter(text) {
        let s = m.as_str();
        let mut end = m.end();
        if let Some(body) = s.strip_prefix("sk-") {
            let has_digit = body.bytes().any(|c| c.is_ascii_digit());
            let has_alpha = body.bytes().any(|c| c.is_ascii_alphabetic());
            if !has_digit || !has_alpha {
                continue;
            }
        } else if s.starts_with("AIza") {
            if b.get(end).is_some_and(|&c| is_token_byte(c)) {
                continue;
            }
        } else if s.starts_with("-----BEGIN") && !s.contains("-----END") {
            // Header (and body) without an END line: drop trailing whitespace.
            end = m.start() + s.trim_end().len();
        }
        push(out, PiiKind::Secret, m.start(), end);
    }
}

/// Runs the assignment / bearer / URL-credential regex on the window
/// `text[lo..hi]`.
pub(super) fn find_secret_assignments(
    re: &Regex,
    text: &str,
    lo: usize,
    hi: usize,
    out: &mut Vec<PiiMatch>,
) {
    let b = text.as_bytes();
    let Some(window) = text.get(lo..hi) else {
        return;
    };
    for caps in re.captures_iter(window) {
        let key = caps.get(1).map_or("", |k| k.as_str());
        if let Some(v) = caps.get(2).or_else(|| caps.get(3)) {
            if assignment_value_ok(key, v.as_str(), true) {
                push(out, PiiKind::Secret, lo + v.start(), lo + v.end());
            }
        } else if let Some(v) = caps.get(4) {
            let trimmed = v.as_str().trim_end_matches(['.', '!', '?', ':', '\'', '"']);
            if matches!(b.get(lo + v.end()), Some(b'(' | b'[')) {
                continue;
            }
            if assignment_value_ok(key, trimmed, false) {
                push(
                    out,
                    PiiKind::Secret,
                    lo + v.start(),
                    lo + v.start() + trimmed.len(),
                );
            }
        } else if let Some(v) = caps.get(5) {
            let s = v.as_str();
            if s.bytes().any(|c| c.is_ascii_digit()) && !is_placeholder(s) {
                push(out, PiiKind::Secret, lo + v.start(), lo + v.end());
            }
        } else if let Some(v) = caps.get(6)
            && v.as_str().len() >= 3
            && !is_placeholder(v.as_str())
        {
            push(out, PiiKind::Secret, lo + v.start(), lo + v.end());
        }
    }
}

pub(super) fn is_placeholder(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    if PLACEHOLDER_VALUES.contains(&lower.as_str()) {
        return true;
    }
    if PLACEHOLDER_MARKERS.iter().any(|m| lower.contains(m)) {
        return true;
    }
    // masks such as "****", "xxxx", "...."
    let mut chars = v.chars();
    match chars.next() {
        Some(first) => chars.all(|c| c == first),
        None => true,
    }
}

pub(super) fn assignment_value_ok(key: &str, v: &str, quoted: bool) -> bool {
    if v.len() < 4 || v.len() > 256 || is_placeholder(v) {
        return false;
    }
    let b = v.as_bytes();
    // Tokens and keys are long and never purely numeric (`max_token=4096`).
    let lower_key = key.to_ascii_lowercase();
    if (lower_key.ends_with("token") || lower_key.ends_with("key"))
        && (v.len() < 8 || b.iter().all(u8::is_ascii_digit))
    {
        return false;
    }
    if quoted {
        // Quoted ENV_VAR_NAME style constants are references, not secrets.
        let env_name = b.first().is_some_and(u8::is_ascii_uppercase)
            && b.iter()
                .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
        !env_name
    } else {
        // Unquoted identifiers / prose words (`self.password`, `incorrect`).
        !b.iter()
            .all(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b'.')
    }
}

/// Keeps the longer of two overlapping matches (then the earlier one) and
/// returns the survivors sorted by start.
pub(super) fn resolve_overlaps(mut cands: Vec<PiiMatch>) -> Vec<PiiMatch> {
    if cands.len() <= 1 {
        return cands;
    }
    cands.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(a.start.cmp(&b.start))
            .then(a.kind.cmp(&b.kind))
    });
    // Kept matches by start (disjoint and non-empty, so starts are unique). A
    // map, not a sorted Vec: inserting into the middle of a Vec moves its tail,
    // which made many matches of alternating lengths quadratic.
    let mut kept: BTreeMap<usize, PiiMatch> = BTreeMap::new();
    for c in cands {
        let overlaps_prev = kept
            .range(..c.start)
            .next_back()
            .is_some_and(|(_, p)| p.end > c.start);
        let overlaps_next = kept
            .range(c.start..)
            .next()
            .is_some_and(|(_, n)| n.start < c.end);
        if !overlaps_prev && !overlaps_next {
            kept.insert(c.start, c);
        }
    }
    kept.into_values().collect()
}

#[cfg(test)]
mod overlap_tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    /// The sorted-Vec resolution `resolve_overlaps` replaced (quadratic on many matches of
    /// alternating lengths): the reference it must agree with.
    fn resolve_overlaps_vec(mut cands: Vec<PiiMatch>) -> Vec<PiiMatch> {
        cands.sort_by(|a, b| {
            (b.end - b.start)
                .cmp(&(a.end - a.start))
                .then(a.start.cmp(&b.start))
                .then(a.kind.cmp(&b.kind))
        });
        let mut kept: Vec<PiiMatch> = Vec::new();
        for c in cands {
            let idx = kept.partition_point(|k| k.start < c.start);
            let overlaps_prev = idx
                .checked_sub(1)
                .and_then(|i| kept.get(i))
                .is_some_and(|p| p.end > c.start);
            let overlaps_next = kept.get(idx).is_some_and(|n| n.start < c.end);
            if !overlaps_prev && !overlaps_next {
                kept.insert(idx, c);
            }
        }
        kept
    }

    fn candidates() -> impl Strategy<Value = Vec<PiiMatch>> {
        prop::collection::vec(
            (
                0..300usize,
                1..40usize,
                prop::sample::select(PiiKind::ALL.to_vec()),
            )
                .prop_map(|(start, len, kind)| PiiMatch {
                    kind,
                    start,
                    end: start + len,
                }),
            0..60,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn resolve_overlaps_matches_the_sorted_vec_reference(cands in candidates()) {
            prop_assert_eq!(resolve_overlaps(cands.clone()), resolve_overlaps_vec(cands));
        }
    }

    /// Long and short e-mail-like matches alternating (`aaaa…@bb.cc x@bb.cc `), as the
    /// e-mail finder reports them on 64 KiB and 256 KiB of that text.
    fn alternating(bytes: usize) -> Vec<PiiMatch> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 35 <= bytes {
            push(&mut out, PiiKind::Email, at, at + 26);
            push(&mut out, PiiKind::Email, at + 27, at + 34);
            at += 35;
        }
        out
    }

    /// 4x the matches take less than 8x the time plus 20 ms (the sorted-Vec version took 16x).
    #[test]
    fn resolve_overlaps_is_not_quadratic() {
        let time = |cands: &Vec<PiiMatch>| {
            (0..3)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(resolve_overlaps(cands.clone()));
                    started.elapsed()
                })
                .min()
                .unwrap_or_default()
        };
        let (small, large) = (alternating(64 * 1024), alternating(256 * 1024));
        assert_eq!(resolve_overlaps(large.clone()).len(), large.len());
        let (t_small, t_large) = (time(&small), time(&large));
        assert!(
            t_large < t_small * 8 + Duration::from_millis(20),
            "{} matches took {t_large:?}, {} took {t_small:?}",
            large.len(),
            small.len()
        );
    }
}
