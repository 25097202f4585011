//! PII and secret detection for prompt text.
//!
//! [`PiiDetector`] finds e-mail addresses, phone numbers, payment card numbers,
//! IBANs, national identifiers and credentials in free text and reports their
//! byte ranges. It runs on every prompt, so it is tuned for **precision** (a
//! false positive moves traffic to a private lane) and for **speed**:
//!
//! * One vectorised byte pass counts ASCII digits and `@`. The e-mail regex
//!   only runs when there is an `@`; the digit-based detectors only when there
//!   are at least 6 digits.
//! * Digit-based detectors (phone, card, IBAN, SSN, NINO) never run over the
//!   whole text: digit-free 32-byte chunks are skipped, and the regexes / the
//!   hand-written card scanner only run on maximal runs of
//!   `[0-9A-Z .()+-]` that contain enough digits for the detector (7 for
//!   phones, 13 for cards, ...). Math word problems, years and prices produce
//!   few or no such runs.
//! * Token-shaped secrets (`sk-`, `AKIA`, `ghp_`, `eyJ`, `-----BEGIN`, ...) are
//!   one regex whose literal prefixes use the regex crate's SIMD prefilter.
//! * Keyword-anchored detectors (`password=…`, `Bearer …`, URL credentials,
//!   `passport no: …`, `SSN: …`) run only in small windows around hits of a
//!   packed (SIMD) Aho-Corasick search for ≤ 64 trigger literals in lower,
//!   UPPER and Capitalized form.
//!
//! Rough cost (release build, measured on a busy 2-vCPU machine): ~2 µs for a
//! 2 KB prose prompt without PII, ~3–4 µs for 2 KB of digit-heavy math or
//! code, ~0.2–0.35 ms for 256 KB of prose.
//!
//! All regexes are ASCII-only (`(?-u:\b)` word boundaries, explicit `[0-9]`
//! classes), which keeps them on the fast DFA engines even on non-ASCII text.
//!
//! # Detector notes
//!
//! * **email**: `local@domain.tld`, ASCII only. Addresses that are the
//!   `user:password@host` part of a URL are not reported as e-mails.
//! * **phone**: `+CC` international numbers (7–15 digits in total, groups may be
//!   separated by space, `.` or `-`, area code may be parenthesised),
//!   `(415) 555-0132`, `415-555-0132` / `415.555.0132` (optionally with a
//!   leading `1-`), and trunk-prefixed national numbers such as
//!   `020 7946 0958`. Bare digit runs never match (except `+` E.164 numbers).
//!   A `+` number directly after an operand or operator (`5 +1234567`) is
//!   treated as arithmetic.
//! * **card_number**: 13–19 digits, either contiguous or in groups separated by
//!   one consistent separator (space or `-`; leading groups 4–6 digits, last
//!   group 3–6). The number must pass Luhn **and** have a known issuer prefix /
//!   length (Visa, Mastercard incl. 2-series, Amex, Discover, JCB, Diners,
//!   UnionPay, Maestro). Digit runs glued to decimals (`3.4111…`) are ignored.
//! * **iban**: upper-case, compact or printed in groups of four; the country
//!   must be a known IBAN country with its exact registry length, and the ISO
//!   13616 mod-97 check must hold.
//! * **national_id**: US SSN `AAA-GG-SSSS` (area 000/666/9xx, group 00 and
//!   serial 0000 excluded), UK National Insurance numbers (`AB 12 34 56 C`,
//!   unallocated prefixes excluded), and keyword-anchored values:
//!   `passport no: X1234567` (6–9 alphanumerics, at least 5 digits) and
//!   `SSN: 123456789` (nine digits, same range rules). For keyword-anchored
//!   values only the value is the match.
//! * **secret**: OpenAI/Anthropic `sk-…`, AWS `AKIA`/`ASIA` key ids, GitHub
//!   `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` and `github_pat_` tokens, Slack
//!   `xox[abprs]-`, Google `AIza…`, JWTs, whole PEM private key blocks (or the
//!   header plus body when the END line is missing), `Authorization: Bearer`
//!   tokens, passwords in URLs (`scheme://user:PASSWORD@host`) and
//!   `password=…` / `api_key: "…"` / `"client_secret": "…"` / `password is …`
//!   assignments. **For assignments, bearer tokens and URL passwords the match
//!   is the value only** (redaction keeps the key: `password=[SECRET]`).
//!   Assignment values that look like placeholders (`<password>`, `${VAR}`,
//!   `your_api_key`, `****`, `None`, ...) or, when unquoted, like identifiers
//!   or prose (letters, `_` and `.` only, e.g. `password = self.password`) are
//!   ignored. Keys are matched case-insensitively by the regex, but the
//!   trigger prefilter only looks for lower-case, UPPER-case, Capitalized and
//!   a few camelCase spellings (`password`, `PASSWORD`, `Password`, `apiKey`,
//!   `clientSecret`, ...), so exotic casings such as `PassWord=` are missed.
//!
//! Overlapping candidates are resolved by keeping the longer match (then the
//! earlier one); the result is sorted by start and non-overlapping.

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

mod finders;
#[cfg(test)]
mod tests;

use finders::*;

pub use crate::domain::PiiKind;

impl PiiKind {
    fn redaction_tag(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::CardNumber => "[CARD_NUMBER]",
            PiiKind::Iban => "[IBAN]",
            PiiKind::NationalId => "[NATIONAL_ID]",
            PiiKind::Secret => "[SECRET]",
        }
    }
}

/// One detected item: `text[start..end]` is the sensitive part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiiMatch {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

/// Result of [`PiiDetector::scan`]: matches sorted by start, non-overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PiiScan {
    pub matches: Vec<PiiMatch>,
}

impl PiiScan {
    pub fn is_empty(&self) -> bool {
        self.matches.is_empty()
    }

    /// Number of matches per kind, sorted by kind, non-zero counts only.
    pub fn counts(&self) -> Vec<(PiiKind, u32)> {
        let mut counts = [0u32; PiiKind::ALL.len()];
        for m in &self.matches {
            if let Some(c) = counts.get_mut(m.kind.index()) {
                *c = c.saturating_add(1);
            }
        }
        PiiKind::ALL
            .into_iter()
            .zip(counts)
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Replaces every match with its tag (`[EMAIL]`, `[PHONE]`, ...).
    ///
    /// Matches that are out of bounds, not on char boundaries, or overlap an
    /// earlier match are skipped (they cannot come from [`PiiDetector::scan`]
    /// on the same text).
    pub fn redact(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for m in &self.matches {
            if m.start < last || m.end < m.start {
                continue;
            }
            let (Some(before), Some(_)) = (text.get(last..m.start), text.get(m.start..m.end))
            else {
                continue;
            };
            out.push_str(before);
            out.push_str(m.kind.redaction_tag());
            last = m.end;
        }
        if let Some(rest) = text.get(last..) {
            out.push_str(rest);
        }
        out
    }
}

/// Error building a [`PiiDetector`].
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("invalid PII detector pattern: {0}")]
    Pattern(#[from] regex::Error),
}

// ---------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------

const EMAIL_RE: &str =
    r"(?i-u)\b[a-z0-9][a-z0-9._%+\-]*@(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+[a-z]{2,24}\b";

const PHONE_RE: &str = concat!(
    r"(?-u)(?:",
    // international: +CC, optional (area) or first group, then groups
    r"\+[0-9]{1,3}[ .\-]?(?:\([0-9]{1,4}\)|[0-9]{1,4})(?:[ .\-]?[0-9]{2,4}){1,5}",
    // (415) 555-0132
    r"|\([0-9]{2,4}\)[ .\-]?[0-9]{3,4}[ .\-]?[0-9]{4}",
    // 415-555-0132, 1-415-555-0132, 415.555.0132
    r"|\b(?:1[ .\-])?[0-9]{3}[.\-][0-9]{3}[.\-][0-9]{4}",
    // trunk-prefixed national: 020 7946 0958, 030-1234567
    r"|\b0[0-9]{1,4}[ \-][0-9]{3,4}[ \-]?[0-9]{3,4}",
    r")\b",
);

const SSN_RE: &str = r"(?-u)\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b";

const NINO_RE: &str =
    r"(?-u)\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b";

const IBAN_RE: &str = r"(?-u)\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b";

/// Group 1: keyword, group 2: value.
const ID_KEYWORD_RE: &str = r"(?i-u)\b(passport|ssn|social[ \t]+security)(?:[ \t]+(?:no|nr|num|number|#))?\.?[ \t]*(?:[:#]|is)?[ \t]*([a-z0-9]{6,9})\b";

const SECRET_TOKEN_RE: &str = concat!(
    r"(?-u:\b)sk-[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
    r"|(?-u:\b)gh[pousr]_[A-Za-z0-9]{36}(?-u:\b)",
    r"|(?-u:\b)github_pat_[A-Za-z0-9_]{22,}",
    r"|(?-u:\b)xox[abprs]-[A-Za-z0-9\-]{10,}",
    r"|(?-u:\b)AIza[A-Za-z0-9_\-]{35}",
    r"|(?-u:\b)eyJ[A-Za-z0-9_\-]{7,}\.eyJ[A-Za-z0-9_\-]{7,}\.[A-Za-z0-9_\-]*",
    r"|-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?:(?s:.)*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=:,\- \t\r\n]*)",
);

/// Groups: 1 = assignment key, 2 = double-quoted value, 3 = single-quoted
/// value, 4 = bare value, 5 = bearer token, 6 = URL password.
const SECRET_ASSIGN_RE: &str = concat!(
    r#"(?i-u:(password|passwd|passphrase|pwd|secret|client[_\-]?secret|api[_\- ]?key|apikey|access[_\-]?key|secret[_\-]?key|private[_\-]?key|token|credentials?))"#,
    r#"["']?(?:[ \t]*(?::=|=>|[:=])[ \t]*|[ \t]+(?i-u:is)[ \t]+)"#,
    r#"(?:"([^"\r\n]{1,256})"|'([^'\r\n]{1,256})'|([^\s"'`,;()\[\]{}<>]{1,256}))"#,
    r"|(?-u:\b)(?i-u:bearer)[ \t]+([A-Za-z0-9._~+/\-]{16,512}=*)",
    r"|(?-u:\b)[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]{1,128}:([^\s/@]{1,128})@",
);

// Trigger groups for the Aho-Corasick prefilter of the keyword-anchored
// detectors.
const TRIG_SECRET_ASSIGN: u8 = 1;
const TRIG_ID_KEYWORD: u8 = 2;

/// Trigger roots for the assignment / bearer / URL-credential regex. Each is
/// searched in lower, UPPER and Capitalized form (the packed SIMD searcher
/// used for case-sensitive literal sets is ~5x faster than an ASCII
/// case-insensitive automaton, but holds at most 64 literals).
const SECRET_ASSIGN_ROOTS: &[&str] = &[
    "passw",
    "pwd",
    "secret",
    "token",
    "bearer",
    "credential",
    "apikey",
    "api_key",
    "api-key",
    "api key",
    "access_key",
    "accesskey",
    "private_key",
    "privatekey",
];

/// Extra literal triggers searched exactly as written.
const SECRET_ASSIGN_EXTRA: &[&str] = &["://", "apiKey", "ApiKey", "accessKey", "privateKey"];

/// `passp` covers both `passphrase` and `passport`.
const SHARED_ROOTS: &[&str] = &["passp"];

const ID_KEYWORD_ROOTS: &[&str] = &["ssn", "social security"];

/// Window around a trigger hit in which the assignment regex runs.
const ASSIGN_WINDOW_BEFORE: usize = 64;
const ASSIGN_WINDOW_AFTER: usize = 900;
const ID_WINDOW_AFTER: usize = 64;

/// IBAN registry lengths (ISO 13616 / SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

const NINO_BAD_PREFIXES: &[&[u8; 2]] = &[b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"];

/// Lower-case substrings that mark an assignment value as a placeholder.
const PLACEHOLDER_MARKERS: &[&str] = &[
    "your",
    "xxx",
    "***",
    "...",
    "\u{2026}",
    "<",
    ">",
    "{",
    "}",
    "$",
    "%s",
    "example",
    "placeholder",
    "redacted",
    "dummy",
    "_here",
    "-here",
    "environ",
    "getenv",
    "process.env",
];

/// Lower-case assignment values that are never secrets.
const PLACEHOLDER_VALUES: &[&str] = &[
    "none",
    "null",
    "nil",
    "true",
    "false",
    "undefined",
    "string",
    "required",
    "optional",
    "password",
    "passwd",
    "secret",
    "token",
    "hidden",
    "empty",
    "masked",
    "changeme",
];

// Minimum digit counts needed before a digit-based detector can match.
const MIN_DIGITS_PHONE: usize = 7;
const MIN_DIGITS_CARD: usize = 13;
const MIN_DIGITS_IBAN: usize = 8;
const MIN_DIGITS_SSN: usize = 9;
const MIN_DIGITS_NINO: usize = 6;
const MIN_DIGITS_ANY: usize = 6;
const MIN_DIGITS_ID_KEYWORD: usize = 5;

/// Bytes that can appear inside a phone, card, IBAN, SSN or NINO match.
static NUMERIC_REGION_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let extra = b" .-()+";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = true;
        c += 1;
    }
    let mut c = b'A';
    while c <= b'Z' {
        t[c as usize] = true;
        c += 1;
    }
    t
};

/// Compiled PII / secret detector. Cheap to share (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct PiiDetector {
    email: Option<Regex>,
    phone: Option<Regex>,
    card: bool,
    iban: Option<Regex>,
    ssn: Option<Regex>,
    nino: Option<Regex>,
    id_keyword: Option<Regex>,
    secret_token: Option<Regex>,
    secret_assign: Option<Regex>,
    /// Trigger-literal prefilter for the keyword-anchored regexes; `None`
    /// means "run them over the whole text".
    triggers: Option<AhoCorasick>,
    /// Trigger group bits for each Aho-Corasick pattern id.
    trigger_groups: Vec<u8>,
}

fn case_variants(root: &str) -> [String; 3] {
    let mut cap = root.to_ascii_lowercase();
    if let Some(first) = cap.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    [root.to_ascii_lowercase(), root.to_ascii_uppercase(), cap]
}

impl PiiDetector {
    /// Builds a detector for the given kinds; other kinds are never reported.
    pub fn new(enabled: &[PiiKind]) -> Result<PiiDetector, PiiError> {
        let on = |k: PiiKind| enabled.contains(&k);
        let compile = |k: PiiKind, re: &str| -> Result<Option<Regex>, PiiError> {
            if on(k) {
                Ok(Some(Regex::new(re)?))
            } else {
                Ok(None)
            }
        };

        let mut trigger_patterns: Vec<String> = Vec::new();
        let mut trigger_groups: Vec<u8> = Vec::new();
        let mut add = |pat: String, group: u8| match trigger_patterns.iter().position(|p| *p == pat)
        {
            Some(i) => {
                if let Some(g) = trigger_groups.get_mut(i) {
                    *g |= group;
                }
            }
            None => {
                trigger_patterns.push(pat);
                trigger_groups.push(group);
            }
        };
        if on(PiiKind::Secret) {
            for root in SECRET_ASSIGN_ROOTS.iter().chain(SHARED_ROOTS) {
                for v in case_variants(root) {
                    add(v, TRIG_SECRET_ASSIGN);
                }
            }
            for extra in SECRET_ASSIGN_EXTRA {
                add((*extra).to_string(), TRIG_SECRET_ASSIGN);
            }
        }
        if on(PiiKind::NationalId) {
            for root in ID_KEYWORD_ROOTS.iter().chain(SHARED_ROOTS) {
                for v in case_variants(root) {
                    add(v, TRIG_ID_KEYWORD);
                }
            }
        }
        // A failure to build the prefilter is not fatal: without it the
        // keyword-anchored regexes simply run over the whole text.
        let triggers = if trigger_patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(&trigger_patterns)
                .ok()
        };

        Ok(PiiDetector {
            email: compile(PiiKind::Email, EMAIL_RE)?,
            phone: compile(PiiKind::Phone, PHONE_RE)?,
            card: on(PiiKind::CardNumber),
            iban: compile(PiiKind::Iban, IBAN_RE)?,
            ssn: compile(PiiKind::NationalId, SSN_RE)?,
            nino: compile(PiiKind::NationalId, NINO_RE)?,
            id_keyword: compile(PiiKind::NationalId, ID_KEYWORD_RE)?,
            secret_token: compile(PiiKind::Secret, SECRET_TOKEN_RE)?,
            secret_assign: compile(PiiKind::Secret, SECRET_ASSIGN_RE)?,
            triggers,
            trigger_groups,
        })
    }

    /// Scans `text` and returns sorted, non-overlapping matches.
    pub fn scan(&self, text: &str) -> PiiScan {
        self.scan_with(text, true)
    }

    /// [`PiiDetector::scan`] without the keyword-anchored detectors (`password=…`, `Bearer …`,
    /// URL credentials, `passport no: …`, `SSN: …`): for short labels such as a request's
    /// category, where `auth:password:reset` is a name, not an assignment. Values that are
    /// PII by their shape (phone, card, IBAN, SSN / NINO, key-shaped tokens, e-mail) are found
    /// as in free text.
    pub fn scan_shapes(&self, text: &str) -> PiiScan {
        self.scan_with(text, false)
    }

    fn scan_with(&self, text: &str, keywords: bool) -> PiiScan {
        if text.is_empty() {
            return PiiScan::default();
        }
        let bytes = text.as_bytes();
        let (digits, ats) = count_digits_and_ats(bytes);
        let mut cands: Vec<PiiMatch> = Vec::new();

        if let Some(re) = &self.email
            && ats > 0
        {
            find_emails(re, text, &mut cands);
        }
        if digits >= MIN_DIGITS_ANY && self.any_numeric() {
            for_each_numeric_region(bytes, MIN_DIGITS_ANY, |start, end, region_digits| {
                self.scan_numeric_region(text, start, end, region_digits, &mut cands);
            });
        }
        if let Some(re) = &self.secret_token {
            find_secret_tokens(re, text, &mut cands);
        }
        if keywords && (self.secret_assign.is_some() || self.id_keyword.is_some()) {
            let (assign_windows, id_windows) = self.trigger_windows(text);
            if let Some(re) = &self.secret_assign {
                for &(lo, hi) in &assign_windows {
                    find_secret_assignments(re, text, lo, hi, &mut cands);
                }
            }
            if let Some(re) = &self.id_keyword
                && digits >= MIN_DIGITS_ID_KEYWORD
            {
                for &(lo, hi) in &id_windows {
                    find_id_keywords(re, text, lo, hi, &mut cands);
                }
            }
        }

        PiiScan {
            matches: resolve_overlaps(cands),
        }
    }

    fn any_numeric(&self) -> bool {
        self.phone.is_some()
            || self.card
            || self.iban.is_some()
            || self.ssn.is_some()
            || self.nino.is_some()
    }

    /// Runs the digit-based detectors on `text[start..end]`, a maximal run of
    /// [`NUMERIC_REGION_BYTES`] with `digits` ASCII digits.
    fn scan_numeric_region(
        &self,
        text: &str,
        start: usize,
        end: usize,
        digits: usize,
        out: &mut Vec<PiiMatch>,
    ) {
        let bytes = text.as_bytes();
        // One character of context on each side so `\b` sees the neighbours.
        let lo = floor_char_boundary(text, start.saturating_sub(1));
        let hi = ceil_char_boundary(text, end + 1);
        let Some(slice) = text.get(lo..hi) else {
            return;
        };
        if let Some(re) = &self.phone
            && digits >= MIN_DIGITS_PHONE
        {
            find_phones(re, bytes, slice, lo, out);
        }
        if self.card && digits >= MIN_DIGITS_CARD {
            find_cards(bytes, start, end, out);
        }
        // IBANs and NINOs start with two upper-case letters.
        let upper = bytes
            .get(start..end)
            .map_or(0, |r| r.iter().filter(|c| c.is_ascii_uppercase()).count());
        if let Some(re) = &self.iban
            && digits >= MIN_DIGITS_IBAN
            && upper >= 2
        {
            find_ibans(re, bytes, slice, lo, out);
        }
        if let Some(re) = &self.ssn
            && digits >= MIN_DIGITS_SSN
            && slice.contains('-')
        {
            find_ssns(re, bytes, slice, lo, out);
        }
        if let Some(re) = &self.nino
            && digits >= MIN_DIGITS_NINO
            && upper >= 2
        {
            find_ninos(re, slice, lo, out);
        }
    }

    /// Merged byte windows around trigger hits: (assignment windows, keyword
    /// ID windows), each on char boundaries.
    fn trigger_windows(&self, text: &str) -> (Vec<Window>, Vec<Window>) {
        let mut assign: Vec<Window> = Vec::new();
        let mut ids: Vec<Window> = Vec::new();
        let Some(ac) = &self.triggers else {
            return (vec![(0, text.len())], vec![(0, text.len())]);
        };
        for m in ac.find_iter(text) {
            let group = self
                .trigger_groups
                .get(m.pattern().as_usize())
                .copied()
                .unwrap_or(TRIG_SECRET_ASSIGN | TRIG_ID_KEYWORD);
            if group & TRIG_SECRET_ASSIGN != 0 {
                let lo = floor_char_boundary(text, m.start().saturating_sub(ASSIGN_WINDOW_BEFORE));
                let hi = ceil_char_boundary(text, m.end() + ASSIGN_WINDOW_AFTER);
                push_window(&mut assign, lo, hi);
            }
            if group & TRIG_ID_KEYWORD != 0 {
                let hi = ceil_char_boundary(text, m.end() + ID_WINDOW_AFTER);
                push_window(&mut ids, m.start(), hi);
            }
        }
        (assign, ids)
    }
}

/// Byte range `(start, end)` of the text, on char boundaries.
type Window = (usize, usize);

fn push_window(windows: &mut Vec<Window>, lo: usize, hi: usize) {
    match windows.last_mut() {
        Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
        _ => windows.push((lo, hi)),
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}
