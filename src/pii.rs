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

/// A category of sensitive data.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    CardNumber,
    Iban,
    NationalId,
    Secret,
}

impl PiiKind {
    /// Every kind, in declaration (and `Ord`) order.
    pub const ALL: [PiiKind; 6] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::CardNumber,
        PiiKind::Iban,
        PiiKind::NationalId,
        PiiKind::Secret,
    ];

    /// Stable snake_case name (same as the serde representation).
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::CardNumber => "card_number",
            PiiKind::Iban => "iban",
            PiiKind::NationalId => "national_id",
            PiiKind::Secret => "secret",
        }
    }

    /// Inverse of [`PiiKind::as_str`] (exact match).
    pub fn parse(s: &str) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

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

    fn index(self) -> usize {
        self as usize
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

/// Counts ASCII digits and `@` bytes (chunked so the loop vectorises).
fn count_digits_and_ats(b: &[u8]) -> (usize, usize) {
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
fn next_digit(b: &[u8], mut i: usize) -> Option<usize> {
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
fn for_each_numeric_region(b: &[u8], min_digits: usize, mut f: impl FnMut(usize, usize, usize)) {
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

fn push(out: &mut Vec<PiiMatch>, kind: PiiKind, start: usize, end: usize) {
    if start < end {
        out.push(PiiMatch { kind, start, end });
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Left context of a numeric match: not glued to a word or to a preceding
/// number (`3.`, `12,`, `7-`, `1/`).
fn left_numeric_ok(b: &[u8], start: usize) -> bool {
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
fn right_numeric_ok(b: &[u8], end: usize) -> bool {
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

fn find_emails(re: &Regex, text: &str, out: &mut Vec<PiiMatch>) {
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
fn in_url_authority(b: &[u8], start: usize) -> bool {
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
fn find_phones(re: &Regex, b: &[u8], slice: &str, offset: usize, out: &mut Vec<PiiMatch>) {
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
fn arithmetic_before(b: &[u8], start: usize) -> bool {
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
fn find_cards(b: &[u8], from: usize, to: usize, out: &mut Vec<PiiMatch>) {
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
fn cards_in_run(b: &[u8], groups: &[(usize, usize)], seps: &[u8], out: &mut Vec<PiiMatch>) {
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

fn card_number_ok(b: &[u8], start: usize, end: usize) -> bool {
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

fn prefix_value(d: &[u8], k: usize) -> u32 {
    d.iter().take(k).fold(0, |acc, &x| acc * 10 + u32::from(x))
}

/// Known issuer identification ranges and lengths.
fn issuer_ok(d: &[u8]) -> bool {
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

fn luhn_ok(d: &[u8]) -> bool {
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

fn find_ibans(re: &Regex, b: &[u8], slice: &str, offset: usize, out: &mut Vec<PiiMatch>) {
    for m in re.find_iter(slice) {
        let start = offset + m.start();
        if let Some(end) = iban_end(b, start, offset + m.end()) {
            push(out, PiiKind::Iban, start, end);
        }
    }
}

fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == country)
        .map(|&(_, len)| len)
}

/// Validates the IBAN candidate `b[start..end]` and returns the end of the
/// valid IBAN (which may be shorter than the candidate when the regex also
/// swallowed a following group).
fn iban_end(b: &[u8], start: usize, end: usize) -> Option<usize> {
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

fn iban_mod97(iban: &[u8]) -> Option<u32> {
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

fn ssn_ok(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    area != b"000"
        && area != b"666"
        && area.first() != Some(&b'9')
        && group != b"00"
        && serial != b"0000"
}

fn find_ssns(re: &Regex, b: &[u8], slice: &str, offset: usize, out: &mut Vec<PiiMatch>) {
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

fn find_ninos(re: &Regex, slice: &str, offset: usize, out: &mut Vec<PiiMatch>) {
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
fn find_id_keywords(re: &Regex, text: &str, lo: usize, hi: usize, out: &mut Vec<PiiMatch>) {
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

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn find_secret_tokens(re: &Regex, text: &str, out: &mut Vec<PiiMatch>) {
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
fn find_secret_assignments(re: &Regex, text: &str, lo: usize, hi: usize, out: &mut Vec<PiiMatch>) {
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

fn is_placeholder(v: &str) -> bool {
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

fn assignment_value_ok(key: &str, v: &str, quoted: bool) -> bool {
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
fn resolve_overlaps(mut cands: Vec<PiiMatch>) -> Vec<PiiMatch> {
    if cands.len() <= 1 {
        return cands;
    }
    cands.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(a.start.cmp(&b.start))
            .then(a.kind.cmp(&b.kind))
    });
    let mut kept: Vec<PiiMatch> = Vec::with_capacity(cands.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> PiiDetector {
        PiiDetector::new(&PiiKind::ALL).unwrap()
    }

    /// (kind, matched text) pairs for `text`.
    fn found(det: &PiiDetector, text: &str) -> Vec<(PiiKind, String)> {
        det.scan(text)
            .matches
            .iter()
            .map(|m| (m.kind, text[m.start..m.end].to_string()))
            .collect()
    }

    fn assert_single(det: &PiiDetector, text: &str, kind: PiiKind, expected: &str) {
        let got = found(det, text);
        assert_eq!(got, vec![(kind, expected.to_string())], "text: {text:?}");
    }

    fn assert_none(det: &PiiDetector, text: &str) {
        let got = found(det, text);
        assert!(got.is_empty(), "unexpected matches in {text:?}: {got:?}");
    }

    #[test]
    fn shape_scan_skips_keyword_anchored_detectors_only() {
        let det = all();
        let kinds = |text: &str| -> Vec<PiiKind> {
            det.scan_shapes(text)
                .matches
                .iter()
                .map(|m| m.kind)
                .collect()
        };
        // Keyword-anchored: found in text, not in a label.
        for text in [
            "auth:password:reset-2fa",
            "api_key:abc123xyz987",
            "ssn:078051120",
            "https://bob:hunter2pass@example.com",
        ] {
            assert!(!det.scan(text).is_empty(), "scan finds {text:?}");
            assert!(kinds(text).is_empty(), "{text:?}: {:?}", kinds(text));
        }
        // PII by its shape: found by both.
        for (text, kind) in [
            ("078-05-1120", PiiKind::NationalId),
            ("4111-1111-1111-1111", PiiKind::CardNumber),
            ("415-555-0132", PiiKind::Phone),
            ("AKIAIOSFODNN7EXAMPLE", PiiKind::Secret),
            ("GB82WEST12345698765432", PiiKind::Iban),
            ("jane@example.com", PiiKind::Email),
        ] {
            assert_eq!(kinds(text), vec![kind], "{text:?}");
            assert_eq!(found(&det, text).len(), 1, "{text:?}");
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for k in PiiKind::ALL {
            assert_eq!(PiiKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            let back: PiiKind = serde_json::from_str(&json).unwrap();
            assert_eq!(back, k);
        }
        assert_eq!(PiiKind::parse("Email"), None);
        assert_eq!(PiiKind::parse("ssn"), None);
        let mut sorted = PiiKind::ALL;
        sorted.sort();
        assert_eq!(sorted, PiiKind::ALL);
    }

    #[test]
    fn detector_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<PiiDetector>();
        check::<std::sync::Arc<PiiDetector>>();
    }

    #[test]
    fn email_positive() {
        let d = all();
        assert_single(
            &d,
            "Contact john.doe+tag@example.co.uk today",
            PiiKind::Email,
            "john.doe+tag@example.co.uk",
        );
        assert_single(
            &d,
            "JANE_DOE@Example.COM",
            PiiKind::Email,
            "JANE_DOE@Example.COM",
        );
        assert_single(
            &d,
            "mailto:ops-team@mail.internal-corp.io.",
            PiiKind::Email,
            "ops-team@mail.internal-corp.io",
        );
    }

    #[test]
    fn email_negative() {
        let d = all();
        assert_none(&d, "ping @username on slack");
        assert_none(&d, "foo@bar is not an address");
        assert_none(&d, "user@localhost");
        assert_none(&d, "a@b.c");
        assert_none(&d, "decorators like @property and @dataclass(frozen=True)");
    }

    #[test]
    fn phone_positive() {
        let d = all();
        for (text, want) in [
            ("call +1 (415) 555-0132 now", "+1 (415) 555-0132"),
            ("office: +44 20 7946 0958.", "+44 20 7946 0958"),
            ("cell 415-555-0132", "415-555-0132"),
            ("(415) 555 0132 is the desk", "(415) 555 0132"),
            ("E.164: +14155550132", "+14155550132"),
            ("London 020 7946 0958", "020 7946 0958"),
            ("dots 415.555.0132 work", "415.555.0132"),
            ("toll free 1-800-555-0199", "1-800-555-0199"),
            ("Paris +33 1 23 45 67 89", "+33 1 23 45 67 89"),
        ] {
            assert_single(&d, text, PiiKind::Phone, want);
        }
    }

    #[test]
    fn phone_negative() {
        let d = all();
        for text in [
            "1234567",
            "The year 2023 was better than 1999 and 2001.",
            "What is 3 + 4 = 7? And 12 * 34 = 408.",
            "x = 5 +1234567",
            "Total: 1234567 + 7654321 = 8888888",
            "Dates 2023-10-15, 15.10.2023 and 10/15/2023.",
            "IP 192.168.100.1234 and version 1.2.3",
            "range 415-555-0132-99 is a part number",
            "decimal 3.415-555-0132",
            "mixed 415.555-0132",
            "0000 0000 0000",
            "111-111-1111",
            "The population is 7,900,000,000 and pi is 3.14159265358979",
        ] {
            assert_none(&d, text);
        }
    }

    #[test]
    fn card_positive() {
        let d = all();
        for (text, want) in [
            ("card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
            ("card 4111-1111-1111-1111.", "4111-1111-1111-1111"),
            ("card 4111111111111111", "4111111111111111"),
            ("mc 5500 0000 0000 0004", "5500 0000 0000 0004"),
            ("amex 3782 822463 10005", "3782 822463 10005"),
            ("discover 6011 1111 1111 1117", "6011 1111 1111 1117"),
            ("mc2 2221000000000009", "2221000000000009"),
        ] {
            assert_single(&d, text, PiiKind::CardNumber, want);
        }
    }

    #[test]
    fn card_negative() {
        let d = all();
        for text in [
            // Luhn failures
            "4111 1111 1111 1112",
            "4111111111111112",
            // unknown issuer prefix (even if Luhn passes: 1234567812345670)
            "1234 5678 1234 5670",
            "0000 0000 0000 0000",
            // mixed separators
            "4111 1111-1111 1111",
            // glued to a decimal / word
            "3.4111111111111111",
            "id4111111111111111",
            // thousands grouping, years, timestamps
            "1 234 567 890 123 456",
            "2001 2002 2003 2004",
            "timestamp 1699999999999",
            "A. 1990 B. 2000 C. 2010 D. 2020",
        ] {
            assert_none(&d, text);
        }
    }

    #[test]
    fn iban_positive() {
        let d = all();
        for iban in [
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "FR14 2004 1010 0505 0001 3M02 606",
            "ES91 2100 0418 4502 0005 1332",
            "IT60 X054 2811 1010 0000 0123 456",
            "NL91 ABNA 0417 1643 00",
            "CH93 0076 2011 6238 5295 7",
            "BE68 5390 0754 7034",
        ] {
            assert_single(&d, &format!("IBAN: {iban}, thanks"), PiiKind::Iban, iban);
        }
        // A following group that does not belong to the IBAN is not swallowed.
        assert_single(
            &d,
            "BE68 5390 0754 7034 2024",
            PiiKind::Iban,
            "BE68 5390 0754 7034",
        );
    }

    #[test]
    fn iban_negative() {
        let d = all();
        for text in [
            "DE89 3704 0044 0532 0130 01", // checksum
            "DE88 3704 0044 0532 0130 00", // checksum
            "DE89 3704 0044 0532 0130",    // wrong length for DE
            "XX89 3704 0044 0532 0130 00", // unknown country
            "de89 3704 0044 0532 0130 00", // lower case
            "GB82 WEST 1234 5698 7654 33",
        ] {
            let got = found(&d, text);
            assert!(
                got.iter().all(|(k, _)| *k != PiiKind::Iban),
                "{text:?}: {got:?}"
            );
        }
    }

    #[test]
    fn ssn() {
        let d = all();
        assert_single(
            &d,
            "SSN 219-09-9999 on file",
            PiiKind::NationalId,
            "219-09-9999",
        );
        assert_single(&d, "id: 536-22-1234.", PiiKind::NationalId, "536-22-1234");
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "987-65-4321",
            "123-00-4567",
            "123-45-0000",
            "1-123-45-6789",
            "123-45-6789-0",
        ] {
            assert_none(&d, &format!("number {bad} here"));
        }
    }

    #[test]
    fn uk_nino() {
        let d = all();
        assert_single(
            &d,
            "NI number AB 12 34 56 C.",
            PiiKind::NationalId,
            "AB 12 34 56 C",
        );
        assert_single(&d, "nino=AB123456C", PiiKind::NationalId, "AB123456C");
        for bad in [
            "GB123456A",
            "AB123456E",
            "DA123456A",
            "AO123456A",
            "ab123456c",
        ] {
            assert_none(&d, &format!("value {bad} end"));
        }
    }

    #[test]
    fn keyword_ids() {
        let d = all();
        assert_single(&d, "passport no: X1234567", PiiKind::NationalId, "X1234567");
        assert_single(
            &d,
            "My Passport Number is 123456789.",
            PiiKind::NationalId,
            "123456789",
        );
        assert_single(&d, "passport #C01X00T47", PiiKind::NationalId, "C01X00T47");
        assert_single(&d, "SSN: 219099999", PiiKind::NationalId, "219099999");
        assert_none(&d, "passport renewal takes 6 weeks");
        assert_none(&d, "passport: 2023");
        assert_none(&d, "passport office ABCDEFG");
        assert_none(&d, "SSN: 000123456");
        assert_none(&d, "SSN: 9991234567");
    }

    #[test]
    fn secret_tokens() {
        let d = all();
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234567890abcdef\nQWERTYuiop+/==\n-----END RSA PRIVATE KEY-----";
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        for tok in [
            "sk-proj-abc123DEF456ghi789JKL012mno345",
            "sk-ant-api03-abcdefghijklmnop1234567890_XYZ",
            "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL",
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "gho_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "AIzaSyA-1234567890abcdefghijklmnopqrstu",
            jwt,
            pem,
        ] {
            let text = format!("use this: {tok} \nok");
            assert_single(&d, &text, PiiKind::Secret, tok);
        }
        // PEM header without END: header plus body, trailing whitespace trimmed.
        let partial =
            "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA==\n\n";
        assert_single(
            &d,
            partial,
            PiiKind::Secret,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA==",
        );
    }

    #[test]
    fn secret_token_negatives() {
        let d = all();
        for text in [
            "task-based learning and risk-free returns",
            "pip install scikit-learn; import sklearn; sk-learn",
            "sk-this-is-not-a-real-key-at-all-really",
            "Asia is the largest continent; AKIA is a prefix",
            "ghp_short",
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
            "eyJhbGciOiJIUzI1NiJ9 alone",
        ] {
            assert_none(&d, text);
        }
    }

    #[test]
    fn secret_assignments() {
        let d = all();
        for (text, want) in [
            ("password=hunter2", "hunter2"),
            ("PASSWORD: Tr0ub4dor&3", "Tr0ub4dor&3"),
            ("DB_PASSWORD=s3cr3t!pass", "s3cr3t!pass"),
            (r#"api_key: "abcd1234efgh""#, "abcd1234efgh"),
            (r#"{"client_secret": "s3cr3t-value"}"#, "s3cr3t-value"),
            ("secret_key = 'zX9!kLm2#pQ'", "zX9!kLm2#pQ"),
            ("my password is hunter22.", "hunter22"),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
            ),
            (
                "Authorization: Bearer abcdef1234567890abcdef",
                "abcdef1234567890abcdef",
            ),
            ("export GITHUB_TOKEN=abc123def456", "abc123def456"),
            ("refresh_token: 3f9a8b7c6d5e4f3a", "3f9a8b7c6d5e4f3a"),
            ("pin password: 4821", "4821"),
        ] {
            assert_single(&d, text, PiiKind::Secret, want);
        }
        // URL credentials: the password is a secret, the host is not an e-mail.
        assert_single(
            &d,
            "DATABASE_URL postgres://admin:S3cretPass@db.example.com:5432/app",
            PiiKind::Secret,
            "S3cretPass",
        );
    }

    #[test]
    fn secret_assignment_negatives() {
        let d = all();
        for text in [
            "password = self.password",
            r#"password=os.environ["DB_PASSWORD"]"#,
            "password = get_password()",
            "api_key: <YOUR_API_KEY>",
            r#"api_key = "YOUR_API_KEY""#,
            r#"api_key = "API_KEY""#,
            "api_key=${API_KEY}",
            "password: ********",
            "The password is incorrect.",
            "Please reset your password.",
            "password: at least 8 characters",
            "secret = 42",
            "max_tokens=4096",
            "max_token=4096",
            "api_key=1234567890",
            "next token: the",
            "token: deadbeef",
            "Bearer token authentication",
            "token: None",
            "https://user:password@example.com",
        ] {
            let got = found(&d, text);
            assert!(
                got.iter().all(|(k, _)| *k != PiiKind::Secret),
                "{text:?}: {got:?}"
            );
        }
    }

    #[test]
    fn benign_prompts_do_not_fire() {
        let d = all();
        for text in [
            "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
            "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
            "A store sells 1200 apples at $0.45 each and 3,450 oranges at $1.25 each. What is the total revenue in 2023 dollars?",
            "Which year did the Berlin Wall fall?\nA. 1987\nB. 1989\nC. 1991\nD. 1993\nAnswer:",
            "A. 1990 B. 2000 C. 2010 D. 2020",
            "Compute 123456789 * 987654321 and 1000000 + 2000000 = 3000000.",
            "The iPhone 15 costs $799, the 15 Pro costs $999 and the Pro Max $1,199.",
            "Between 1939 and 1945, roughly 70-85 million people died (about 3% of the 1940 world population of 2.3 billion).",
            "Solve for x: 3x + 5 = 20, then compute 2^10 = 1024 and 17 mod 5 = 2.",
            "ISBN 978-0-306-40615-7, DOI 10.1000/182, order #A-1029-3384.",
            "Coordinates 40.7128, -74.0060; elevation 10 m; zip 10001.",
            "fn main() { let x: u64 = 18446744073709551615; println!(\"{x}\"); }",
            "Set the secret santa budget to 25 and the passport photo size to 35x45 mm.",
        ] {
            assert_none(&d, text);
        }
    }

    #[test]
    fn counts_and_redaction() {
        let d = all();
        let text = "Email me at jane@example.com or call +1 (415) 555-0132.";
        let scan = d.scan(text);
        assert_eq!(
            scan.counts(),
            vec![(PiiKind::Email, 1), (PiiKind::Phone, 1)]
        );
        assert_eq!(scan.redact(text), "Email me at [EMAIL] or call [PHONE].");

        let text = "a@example.com, b@example.org; password=hunter2; card 4111 1111 1111 1111; IBAN DE89370400440532013000; SSN 219-09-9999; key AKIAIOSFODNN7EXAMPLE";
        let scan = d.scan(text);
        assert_eq!(
            scan.counts(),
            vec![
                (PiiKind::Email, 2),
                (PiiKind::CardNumber, 1),
                (PiiKind::Iban, 1),
                (PiiKind::NationalId, 1),
                (PiiKind::Secret, 2),
            ]
        );
        assert_eq!(
            scan.redact(text),
            "[EMAIL], [EMAIL]; password=[SECRET]; card [CARD_NUMBER]; IBAN [IBAN]; SSN [NATIONAL_ID]; key [SECRET]"
        );

        let empty = d.scan("nothing to see here");
        assert!(empty.is_empty());
        assert!(empty.counts().is_empty());
        assert_eq!(empty.redact("nothing to see here"), "nothing to see here");
    }

    #[test]
    fn redact_ignores_invalid_matches() {
        let text = "héllo wörld";
        let scan = PiiScan {
            matches: vec![
                PiiMatch {
                    kind: PiiKind::Email,
                    start: 2,
                    end: 4,
                }, // inside 'é'
                PiiMatch {
                    kind: PiiKind::Phone,
                    start: 7,
                    end: 13,
                },
                PiiMatch {
                    kind: PiiKind::Secret,
                    start: 8,
                    end: 9,
                }, // overlaps
                PiiMatch {
                    kind: PiiKind::Iban,
                    start: 10,
                    end: 99,
                }, // out of bounds
            ],
        };
        assert_eq!(scan.redact(text), "héllo [PHONE]");
    }

    #[test]
    fn only_enabled_kinds() {
        let text = "jane@example.com +44 20 7946 0958 password=hunter2";
        let d = PiiDetector::new(&[PiiKind::Email]).unwrap();
        assert_eq!(d.scan(text).counts(), vec![(PiiKind::Email, 1)]);
        let d = PiiDetector::new(&[PiiKind::Phone, PiiKind::Secret]).unwrap();
        assert_eq!(
            d.scan(text).counts(),
            vec![(PiiKind::Phone, 1), (PiiKind::Secret, 1)]
        );
        let d = PiiDetector::new(&[]).unwrap();
        assert!(d.scan(text).is_empty());
    }

    #[test]
    fn overlaps_keep_longer_then_earlier() {
        let m = |kind, start, end| PiiMatch { kind, start, end };
        let got = resolve_overlaps(vec![
            m(PiiKind::Phone, 0, 10),
            m(PiiKind::Iban, 5, 20),
            m(PiiKind::Secret, 15, 18),
            m(PiiKind::Email, 20, 25),
            m(PiiKind::Phone, 30, 35),
            m(PiiKind::CardNumber, 33, 38),
        ]);
        assert_eq!(
            got,
            vec![
                m(PiiKind::Iban, 5, 20),
                m(PiiKind::Email, 20, 25),
                m(PiiKind::Phone, 30, 35),
            ]
        );

        // Real text: the trunk-style phone inside the IBAN loses to the IBAN.
        let d = all();
        let text = "IBAN DE89 3704 0044 0532 0130 00";
        assert_single(&d, text, PiiKind::Iban, "DE89 3704 0044 0532 0130 00");
        let phones_only = PiiDetector::new(&[PiiKind::Phone]).unwrap();
        assert!(!phones_only.scan(text).is_empty());

        // Bearer JWT: token and bearer value cover the same bytes -> one match.
        let text = "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(d.scan(text).counts(), vec![(PiiKind::Secret, 1)]);
    }

    #[test]
    fn multibyte_text_around_matches() {
        let d = all();
        let text = "Привет, jane@example.com — 電話 +44 20 7946 0958 🎉 café 4111 1111 1111 1111 ü password=pässwörd1 日本";
        let scan = d.scan(text);
        let got: Vec<_> = scan
            .matches
            .iter()
            .map(|m| (m.kind, &text[m.start..m.end]))
            .collect();
        assert_eq!(
            got,
            vec![
                (PiiKind::Email, "jane@example.com"),
                (PiiKind::Phone, "+44 20 7946 0958"),
                (PiiKind::CardNumber, "4111 1111 1111 1111"),
                (PiiKind::Secret, "pässwörd1"),
            ]
        );
        assert_eq!(
            scan.redact(text),
            "Привет, [EMAIL] — 電話 [PHONE] 🎉 café [CARD_NUMBER] ü password=[SECRET] 日本"
        );
        // Non-ASCII directly adjacent to matches.
        for text in [
            "é4111111111111111é",
            "日jane@example.com日",
            "ü+44 20 7946 0958ü",
        ] {
            let scan = d.scan(text);
            assert_eq!(scan.matches.len(), 1, "{text:?}");
            for m in &scan.matches {
                assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
            }
        }
    }

    #[test]
    fn large_input() {
        let d = all();
        let mut text = "The quick brown fox jumps over the lazy dog in 2024. ".repeat(5000);
        text.push_str("contact: jane@example.com");
        assert!(text.len() > 256 * 1024);
        assert_eq!(d.scan(&text).counts(), vec![(PiiKind::Email, 1)]);
        // Unterminated PEM at the start of a large text stays linear.
        let text = format!(
            "-----BEGIN PRIVATE KEY-----\nMIIE\n{}",
            "abc def ".repeat(40_000)
        );
        assert_eq!(d.scan(&text).counts(), vec![(PiiKind::Secret, 1)]);
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_strings_never_panic_and_matches_are_well_formed() {
        const PIECES: &[&str] = &[
            "0",
            "1",
            "4",
            "7",
            "9",
            "41",
            "555",
            "0132",
            "4111",
            "1111",
            " ",
            " ",
            "-",
            ".",
            "+",
            "(",
            ")",
            "@",
            ":",
            "=",
            "\"",
            "'",
            "/",
            "\n",
            "a",
            "Z",
            "x",
            "é",
            "€",
            "日本",
            "🎉",
            "ß",
            "sk-",
            "AKIA",
            "ghp_",
            "eyJ",
            "xoxb-",
            "AIza",
            "DE89",
            "GB82",
            "WEST",
            "AB",
            "password=",
            "api_key: ",
            "passport no: ",
            "SSN ",
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----END RSA PRIVATE KEY-----",
            "@example.com",
            "jane",
            "://",
            "Bearer ",
            "+44 20 7946 0958",
            "4111 1111 1111 1111",
            "219-09-9999",
            "AB 12 34 56 C",
            "DE89 3704 0044 0532 0130 00",
            "hunter2",
            "abcdefghij0123456789",
        ];
        let d = all();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut total_matches = 0usize;
        for _ in 0..4000 {
            let n = rng.below(40);
            let mut text = String::new();
            for _ in 0..n {
                text.push_str(PIECES[rng.below(PIECES.len())]);
            }
            let scan = d.scan(&text);
            let mut last_end = 0;
            for m in &scan.matches {
                assert!(m.start < m.end, "{text:?}: {m:?}");
                assert!(m.end <= text.len(), "{text:?}: {m:?}");
                assert!(m.start >= last_end, "unsorted/overlapping in {text:?}");
                assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
                last_end = m.end;
            }
            total_matches += scan.matches.len();
            let redacted = scan.redact(&text);
            assert!(redacted.len() <= text.len() + 16 * scan.matches.len());
            let counted: u32 = scan.counts().iter().map(|(_, c)| c).sum();
            assert_eq!(counted as usize, scan.matches.len());
        }
        assert!(total_matches > 100, "generator should exercise detectors");
    }

    /// Rough timing: `cargo test --release --lib pii::tests::timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing() {
        use std::time::Instant;
        let d = all();
        let prose = "The committee reviewed the proposal in detail and agreed that the new design improves readability, reduces maintenance effort and makes onboarding easier for everyone involved. ".repeat(12);
        let prose = &prose[..2048];
        let math = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. If each clip costs $1.25 and she had 1200 clips in 2023, how many remain after 350 + 275 = 625 are sold? ".repeat(12);
        let math = &math[..2048];
        let code = "def compute(items):\n    total = 0\n    for i, item in enumerate(items):\n        total += item.price * 1.07  # tax 7%\n    return total  # see ticket 48213\n".repeat(14);
        let code = &code[..2048];
        let pii = format!(
            "{} jane@example.com +44 20 7946 0958 4111 1111 1111 1111 password=hunter2 {}",
            &prose[..900],
            &prose[..900]
        );
        let big = prose.repeat(128);
        for (name, text, iters) in [
            ("2KB prose", prose, 20_000),
            ("2KB math", math, 20_000),
            ("2KB code", code, 20_000),
            ("2KB with PII", pii.as_str(), 20_000),
            ("256KB prose", big.as_str(), 200),
        ] {
            let start = Instant::now();
            let mut n = 0;
            for _ in 0..iters {
                n += std::hint::black_box(d.scan(std::hint::black_box(text)))
                    .matches
                    .len();
            }
            let per = start.elapsed() / iters;
            eprintln!(
                "{name:>14}: {per:?} per scan ({} bytes, {n} matches)",
                text.len()
            );
        }
    }
}
