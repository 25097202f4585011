//! Task-type and high-stakes-domain detection from prompt text.
//!
//! [`TextClassifier`] is a weighted cue scorer. All keyword cues (for tasks and
//! risk domains) live in one ASCII case-insensitive Aho-Corasick automaton that
//! is run once over the text (overlapping matches); a single extra byte pass
//! collects structural signals (digit/operator expressions, question marks,
//! multiple-choice option markers, code-like line endings).
//!
//! [`TextClassifier::task`] and [`TextClassifier::risk_domains`] each run the
//! automaton once; [`TextClassifier::analyze`] returns both from a single pass
//! (prefer it when both are needed). Cost is linear in the text length: one
//! DFA transition per byte per pass plus one cheap byte-class pass for
//! `task` (~10 µs per pass for 2 KB measured on a busy 2-vCPU machine).
//!
//! # Cue table syntax
//!
//! Each cue is a literal matched ASCII case-insensitively with word
//! boundaries: when the cue starts (ends) with an ASCII alphanumeric byte the
//! byte before (after) the match must not be a word byte (`[A-Za-z0-9_]`).
//! A trailing `*` makes the cue a prefix (`summar*` matches `summarize`,
//! `summary`, ...). A leading `!` makes it case-sensitive (`!SELECT `).
//!
//! # Task scoring
//!
//! Scores are additive and exposed raw in [`TaskSignals::scores`]:
//!
//! * every cue occurrence adds its weight (at most [`MAX_CUE_HITS`] occurrences
//!   per cue), ×[`EDGE_BOOST`] when it starts in the first or last
//!   [`EDGE_BYTES`] bytes, where instructions usually are;
//! * math gets +1.5 per `operand op operand` expression (`3 + 4`, `x = 12`,
//!   `2^3`; `-` and `/` count half) up to +4.5, +1/+1.5/+2 for texts with
//!   2/3/4+ numbers (`10,000` is one number) and +1 when a text with 2+
//!   numbers ends with `?`;
//! * qa gets +1 when the text ends with `?`, +0.5 for any `?`, +0.5 when the
//!   first word is a question word and +1/+3 for 2/3+ multiple-choice option
//!   markers (`A.`, `(B)`, `c)`);
//! * code gets +1.5/+3 for 2/4+ lines ending in `;`, `{` or `}`;
//! * chat starts from a prior of [`CHAT_PRIOR`], so it wins when nothing else
//!   is indicated, plus 0.5 for texts of at most three words without a
//!   question mark.
//!
//! The task is the highest score; ties go to the first in [`TIE_PRIORITY`]
//! (Code, Math, Extraction, Classification, Summarization, Qa, Chat). When no
//! non-chat task reaches the chat score and the text is a question, Qa wins
//! via its question bonuses.
//!
//! # Risk domains
//!
//! Each *distinct* domain cue found adds its weight once; a domain is reported
//! when its total reaches 1.0. Unambiguous terms weigh 1.0, ambiguous ones
//! (`patient`, `court`, `contract`, `resume`, ...) 0.5 or less, so they need
//! corroboration.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

pub use crate::domain::{RiskDomain, TaskType};

/// Detected task plus the raw per-task scores (in [`TaskType::ALL`] order).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSignals {
    pub task: TaskType,
    pub scores: [f32; 7],
}

impl TaskSignals {
    /// Score of one task type.
    pub fn score(&self, task: TaskType) -> f32 {
        self.scores.get(task.index()).copied().unwrap_or(0.0)
    }
}

/// Error building a [`TextClassifier`].
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("failed to build text classifier matcher: {0}")]
    Matcher(#[from] aho_corasick::BuildError),
}

/// Occurrences of one cue counted towards a task score.
pub const MAX_CUE_HITS: u8 = 3;
/// Cues starting within this many bytes of either end of the text are boosted.
pub const EDGE_BYTES: usize = 200;
/// Multiplier for cues near the start or end of the text.
pub const EDGE_BOOST: f32 = 1.25;
/// Baseline chat score.
pub const CHAT_PRIOR: f32 = 1.0;
/// Tie-break order (earlier wins).
pub const TIE_PRIORITY: [TaskType; 7] = [
    TaskType::Code,
    TaskType::Math,
    TaskType::Extraction,
    TaskType::Classification,
    TaskType::Summarization,
    TaskType::Qa,
    TaskType::Chat,
];
/// Summed cue weight at which a risk domain is reported.
pub const DOMAIN_THRESHOLD: f32 = 1.0;

mod cues;
#[cfg(test)]
mod tests;

use TaskType::{Chat as CHAT, Code as CODE, Math as MATH, Qa as QA};
use cues::{CUES, Target};

/// Question words that make a text's first word a question cue.
const QUESTION_WORDS: &[&str] = &[
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "was",
    "were", "do", "does", "did", "can", "could", "should", "would", "will", "may", "has", "have",
];

#[derive(Debug, Clone)]
struct CuePattern {
    /// Literal as matched (without flag characters).
    literal: String,
    /// Require a word boundary before the match.
    left_boundary: bool,
    /// Require a word boundary after the match.
    right_boundary: bool,
    /// Bytes must equal `literal` exactly.
    case_sensitive: bool,
    /// Every (target, weight) attached to this literal.
    targets: Vec<(Target, f32)>,
}

/// Compiled task / risk-domain classifier. Cheap to share (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct TextClassifier {
    matcher: AhoCorasick,
    cues: Vec<CuePattern>,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl TextClassifier {
    pub fn new() -> Result<TextClassifier, ClassifyError> {
        let mut cues: Vec<CuePattern> = Vec::with_capacity(CUES.len());
        for &(raw, target, weight) in CUES {
            let (case_sensitive, rest) = match raw.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, raw),
            };
            let (prefix, literal) = match rest.strip_suffix('*') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let bytes = literal.as_bytes();
            let left_boundary = bytes.first().is_some_and(u8::is_ascii_alphanumeric);
            let right_boundary = !prefix && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
            let same = |c: &CuePattern| {
                c.literal.eq_ignore_ascii_case(literal)
                    && c.left_boundary == left_boundary
                    && c.right_boundary == right_boundary
                    && c.case_sensitive == case_sensitive
            };
            match cues.iter_mut().find(|c| same(c)) {
                Some(c) => c.targets.push((target, weight)),
                None => cues.push(CuePattern {
                    literal: literal.to_string(),
                    left_boundary,
                    right_boundary,
                    case_sensitive,
                    targets: vec![(target, weight)],
                }),
            }
        }
        let matcher = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(cues.iter().map(|c| c.literal.as_str()))?;
        Ok(TextClassifier { matcher, cues })
    }

    /// Detects the task type of `text`.
    pub fn task(&self, text: &str) -> TaskSignals {
        let cues = self.cue_scores(text);
        task_signals(text, &cues)
    }

    /// High-stakes domains mentioned in `text`, sorted and deduplicated.
    pub fn risk_domains(&self, text: &str) -> Vec<RiskDomain> {
        domains_from(&self.cue_scores(text))
    }

    /// [`TextClassifier::task`] and [`TextClassifier::risk_domains`] in one
    /// pass over the text (the keyword automaton dominates the cost, so this
    /// is almost twice as fast as calling both).
    pub fn analyze(&self, text: &str) -> (TaskSignals, Vec<RiskDomain>) {
        let cues = self.cue_scores(text);
        (task_signals(text, &cues), domains_from(&cues))
    }

    /// Runs the automaton once and accumulates task cue scores and domain
    /// cue totals.
    fn cue_scores(&self, text: &str) -> CueScores {
        let mut out = CueScores::default();
        if text.trim().is_empty() {
            return out;
        }
        let bytes = text.as_bytes();
        let len = bytes.len();
        let mut hits = vec![0u8; self.cues.len()];
        for m in self.matcher.find_overlapping_iter(text) {
            let id = m.pattern().as_usize();
            let Some(cue) = self.cues.get(id) else {
                continue;
            };
            let (start, end) = (m.start(), m.end());
            if cue.left_boundary
                && start
                    .checked_sub(1)
                    .and_then(|i| bytes.get(i))
                    .is_some_and(|&b| is_word_byte(b))
            {
                continue;
            }
            if cue.right_boundary && bytes.get(end).is_some_and(|&b| is_word_byte(b)) {
                continue;
            }
            if cue.case_sensitive && bytes.get(start..end) != Some(cue.literal.as_bytes()) {
                continue;
            }
            let Some(h) = hits.get_mut(id) else {
                continue;
            };
            *h = h.saturating_add(1);
            let h = *h;
            let boost = if start < EDGE_BYTES || start + EDGE_BYTES >= len {
                EDGE_BOOST
            } else {
                1.0
            };
            for &(target, weight) in &cue.targets {
                match target {
                    Target::Task(task) if h <= MAX_CUE_HITS => {
                        add(&mut out.tasks, task, weight * boost);
                    }
                    Target::Domain(dom) if h == 1 => {
                        if let Some(t) = out.domains.get_mut(dom.index()) {
                            *t += weight;
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// Keyword-cue part of the scores.
#[derive(Debug, Default)]
struct CueScores {
    tasks: [f32; 7],
    domains: [f32; 4],
}

fn task_signals(text: &str, cues: &CueScores) -> TaskSignals {
    let mut scores = cues.tasks;
    add(&mut scores, CHAT, CHAT_PRIOR);
    if text.trim().is_empty() {
        return TaskSignals { task: CHAT, scores };
    }
    let s = Structure::scan(text.as_bytes());
    add(&mut scores, MATH, (1.5 * s.operator_score).min(4.5));
    match s.numbers {
        0 | 1 => {}
        2 => add(&mut scores, MATH, 1.0),
        3 => add(&mut scores, MATH, 1.5),
        _ => add(&mut scores, MATH, 2.0),
    }
    if s.numbers >= 2 && s.ends_with_question {
        // "What is 15 + 27?", "... How far does it go?"
        add(&mut scores, MATH, 1.0);
    }
    if s.ends_with_question {
        add(&mut scores, QA, 1.0);
    }
    if s.question_marks > 0 {
        add(&mut scores, QA, 0.5);
    }
    if starts_with_question_word(text) {
        add(&mut scores, QA, 0.5);
    }
    match s.choice_options {
        n if n >= 3 => add(&mut scores, QA, 3.0),
        2 => add(&mut scores, QA, 1.0),
        _ => {}
    }
    if s.code_lines >= 4 {
        add(&mut scores, CODE, 3.0);
    } else if s.code_lines >= 2 {
        add(&mut scores, CODE, 1.5);
    }
    if s.words <= 3 && s.question_marks == 0 {
        add(&mut scores, CHAT, 0.5);
    }
    TaskSignals {
        task: pick_task(&scores),
        scores,
    }
}

fn domains_from(cues: &CueScores) -> Vec<RiskDomain> {
    RiskDomain::ALL
        .into_iter()
        .zip(cues.domains)
        .filter(|&(_, total)| total >= DOMAIN_THRESHOLD)
        .map(|(dom, _)| dom)
        .collect()
}

/// Highest score wins; ties go to the earlier entry of [`TIE_PRIORITY`].
fn pick_task(scores: &[f32; 7]) -> TaskType {
    let mut task = CHAT;
    let mut best = f32::NEG_INFINITY;
    for candidate in TIE_PRIORITY {
        let sc = scores.get(candidate.index()).copied().unwrap_or(0.0);
        if sc > best {
            best = sc;
            task = candidate;
        }
    }
    task
}

fn add(scores: &mut [f32; 7], task: TaskType, w: f32) {
    if let Some(s) = scores.get_mut(task.index()) {
        *s += w;
    }
}

fn starts_with_question_word(text: &str) -> bool {
    let first = text
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic() && c != '\'')
        .next()
        .unwrap_or("");
    let first = first.split('\'').next().unwrap_or("");
    QUESTION_WORDS.iter().any(|q| q.eq_ignore_ascii_case(first))
}

/// Structural signals gathered in one byte pass.
#[derive(Debug, Default)]
struct Structure {
    /// Weighted count of `operand op operand` expressions.
    operator_score: f32,
    /// Number of digit runs.
    numbers: usize,
    question_marks: usize,
    ends_with_question: bool,
    /// Distinct multiple-choice option letters (A–E) seen.
    choice_options: u32,
    /// Lines ending in `;`, `{` or `}`.
    code_lines: usize,
    /// Whitespace-separated words (`usize::MAX` for texts over 64 bytes).
    words: usize,
}

const B_NONE: u8 = 0;
const B_DIGIT: u8 = 1;
const B_NEWLINE: u8 = 2;
const B_QUESTION: u8 = 3;
const B_OP: u8 = 4;
const B_WEAK_OP: u8 = 5;
const B_CLOSE: u8 = 6;

/// Byte classes for [`Structure::scan`]; everything common is `B_NONE` so
/// the hot loop rarely branches.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [B_NONE; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = B_DIGIT;
        c += 1;
    }
    t[b'\n' as usize] = B_NEWLINE;
    t[b'?' as usize] = B_QUESTION;
    t[b'+' as usize] = B_OP;
    t[b'*' as usize] = B_OP;
    t[b'^' as usize] = B_OP;
    t[b'=' as usize] = B_OP;
    t[b'-' as usize] = B_WEAK_OP;
    t[b'/' as usize] = B_WEAK_OP;
    t[b'.' as usize] = B_CLOSE;
    t[b')' as usize] = B_CLOSE;
    t
};

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

impl Structure {
    fn scan(b: &[u8]) -> Structure {
        let mut s = Structure::default();
        let mut options: u32 = 0;
        for (i, &c) in b.iter().enumerate() {
            let class = BYTE_CLASS.get(usize::from(c)).copied().unwrap_or(B_NONE);
            if class == B_NONE {
                continue;
            }
            match class {
                B_DIGIT if number_starts_at(b, i) => s.numbers += 1,
                B_NEWLINE => {
                    if matches!(line_end_before(b, i), Some(b';' | b'{' | b'}')) {
                        s.code_lines += 1;
                    }
                }
                B_QUESTION => s.question_marks += 1,
                B_OP => s.operator_score += operator_at(b, i),
                B_WEAK_OP => s.operator_score += 0.5 * operator_at(b, i),
                B_CLOSE => {
                    if let Some(bit) = choice_option(b, i) {
                        options |= bit;
                    }
                }
                _ => {}
            }
        }
        // last line without a trailing newline
        let last_line_start = b.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
        let tail = b.get(last_line_start..).unwrap_or(&[]);
        if matches!(line_end_before(tail, tail.len()), Some(b';' | b'{' | b'}')) {
            s.code_lines += 1;
        }
        s.ends_with_question = b.iter().rev().find(|&&c| !is_space(c)) == Some(&b'?');
        s.choice_options = options.count_ones();
        // Word counts only matter for very short texts.
        s.words = if b.len() <= 64 {
            b.split(|&c| is_space(c)).filter(|w| !w.is_empty()).count()
        } else {
            usize::MAX
        };
        s
    }
}

/// Last non-blank byte of the line that ends just before `i` (`None` for a
/// blank line).
fn line_end_before(b: &[u8], i: usize) -> Option<u8> {
    b.get(..i)?
        .iter()
        .rev()
        .find(|&&c| !matches!(c, b' ' | b'\t' | b'\r'))
        .copied()
        .filter(|&c| c != b'\n')
}

/// A number starts at a digit not preceded by a digit or by a digit-group
/// separator (`10,000` and `1.25` count once).
fn number_starts_at(b: &[u8], i: usize) -> bool {
    let at = |k: Option<usize>| k.and_then(|k| b.get(k)).copied();
    let prev = at(i.checked_sub(1));
    let prev2 = at(i.checked_sub(2));
    let continues_number = prev.is_some_and(|p| p.is_ascii_digit())
        || (matches!(prev, Some(b',' | b'.')) && prev2.is_some_and(|p| p.is_ascii_digit()));
    !continues_number
}

/// 1.0 when the operator at `i` sits between two operands (digits, closing /
/// opening parentheses or single-letter variables), else 0.0.
fn operator_at(b: &[u8], i: usize) -> f32 {
    let mut l = i;
    let mut skipped = 0;
    let left = loop {
        let Some(j) = l.checked_sub(1) else {
            break None;
        };
        match b.get(j) {
            Some(b' ') if skipped < 2 => {
                skipped += 1;
                l = j;
            }
            other => break other.map(|&c| (j, c)),
        }
    };
    let mut r = i + 1;
    let mut skipped = 0;
    let right = loop {
        match b.get(r) {
            Some(b' ') if skipped < 2 => {
                skipped += 1;
                r += 1;
            }
            other => break other.map(|&c| (r, c)),
        }
    };
    let left_ok = left.is_some_and(|(j, c)| {
        c.is_ascii_digit() || c == b')' || (c.is_ascii_alphabetic() && single_letter(b, j))
    });
    let right_ok = right.is_some_and(|(j, c)| {
        c.is_ascii_digit() || c == b'(' || (c.is_ascii_alphabetic() && single_letter(b, j))
    });
    if left_ok && right_ok { 1.0 } else { 0.0 }
}

/// True when the letter at `j` is a standalone single-letter token
/// (a variable such as `x`), or directly follows a digit (`3x`).
fn single_letter(b: &[u8], j: usize) -> bool {
    let before = j.checked_sub(1).and_then(|k| b.get(k)).copied();
    let after = b.get(j + 1).copied();
    let before_ok = before.is_none_or(|p| !p.is_ascii_alphabetic());
    let after_ok = after.is_none_or(|n| !n.is_ascii_alphanumeric());
    before_ok && after_ok
}

/// Recognises a multiple-choice option marker whose closing `.` / `)` is at
/// `i`: `A.` / `A)` / `(A)` (upper-case A–E) or `a)` / `(a)` (lower-case),
/// preceded by start of text, whitespace or `(` and followed by whitespace or
/// end of text. Returns the option's bit.
fn choice_option(b: &[u8], i: usize) -> Option<u32> {
    let close = *b.get(i)?;
    let letter = *b.get(i.checked_sub(1)?)?;
    let before = i.checked_sub(2).and_then(|k| b.get(k)).copied();
    let after = b.get(i + 1).copied();
    let letter_ok = match close {
        b'.' => (b'A'..=b'E').contains(&letter),
        b')' => (b'A'..=b'E').contains(&letter) || (b'a'..=b'e').contains(&letter),
        _ => false,
    };
    let before_ok = match before {
        None => true,
        Some(b'(') => close == b')',
        Some(p) => is_space(p),
    };
    let after_ok = after.is_none_or(is_space);
    if letter_ok && before_ok && after_ok {
        Some(1 << (letter.to_ascii_lowercase() - b'a'))
    } else {
        None
    }
}
