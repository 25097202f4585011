//! Property tests on every parser of untrusted input: no panic, ever.
//!
//! 1. Protobuf requests: arbitrary bytes and mutated valid encodings through `prost` decoding of
//!    `RouteRequest` and `Outcome`, then validation (`route_input` / `outcome_input`); arbitrary
//!    field values (any strings, enum numbers, NaN and infinite floats, large maps) straight into
//!    validation. Validation answers Ok or `InvalidArgument` naming a real field; a valid request
//!    is then decided and turned into a response.
//! 2. Policy files: mutated `config/signalbox.toml` (line deletions, duplications, swapped and
//!    replaced values, byte edits), typed edits of its parsed tree written back as TOML (extreme
//!    values of the same type, removed keys, emptied or reordered arrays: these reach
//!    validation), and truncation every 31st byte and at every line end, through
//!    `Policy::from_toml`: Ok, or an error whose text names something (an `Invalid` error its
//!    key). The first few valid mutants also build an engine that decides once.
//! 3. Bundle manifests: mutated `models/routellm-mmlu/manifest.json` (text edits; typed and
//!    random structural edits of the parsed JSON, half of them inside `features`), random JSON,
//!    and truncated files on disk, through the manifest parser, `validate` and `load`; the first
//!    few valid changed feature configs build a featurizer that featurizes.
//! 4. The PII detector (scan, scan_shapes, redact: matches sorted, disjoint, on char boundaries;
//!    the redaction replaces exactly them), the task/risk classifier and the shipped bundle's
//!    featurizer (and the learned engine) on arbitrary Unicode: combining marks, RTL and bidi
//!    controls, zero-width characters, emoji, any code point, long runs of one character,
//!    PII-shaped fragments.
//! 5. Linear time: 64 KiB against 256 KiB adversarial prompts through the detector and the
//!    classifier (a ratio check; the release figures come from `benches/decide.rs`,
//!    `adversarial_256k`, in docs/performance.md).
//!
//! Case counts (`ProptestConfig::cases`, 48 to 256 per property) are set so the whole binary
//! runs in about 12 s in a debug build on a busy 2-core machine (about 8 s of CPU): a debug
//! build spends about 1 s building an engine and 0.5 s a featurizer, so those are built only a
//! few times. `PROPTEST_CASES` overrides every count for a longer local run (3,000 cases each
//! found nothing).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;
use signalbox::api::{decision_response, outcome_input, route_input};
use signalbox::budget::BudgetLedger;
use signalbox::circuit::CircuitBreakers;
use signalbox::classify::{RiskDomain, TaskType, TextClassifier};
use signalbox::config::{ConfigError, Policy};
use signalbox::engine::{DecisionEngine, RuntimeState};
use signalbox::pii::{PiiDetector, PiiKind, PiiScan};
use signalbox::proto::{self, route_request::Prompt};
use signalbox_features::{BundleManifest, Featurizer};

const EXAMPLE: &str = include_str!("../config/signalbox.toml");
const MANIFEST: &str = include_str!("../models/routellm-mmlu/manifest.json");

/// Every field name `route_input` may blame.
const ROUTE_FIELDS: &[&str] = &[
    "request_id",
    "category",
    "tenant_id",
    "user_id",
    "prompt",
    "text",
    "messages",
    "messages.role",
    "task_hint",
    "data_class",
    "mode",
    "required_capabilities",
    "quality_preference",
    "metadata",
];

/// Every field name `outcome_input` may blame.
const OUTCOME_FIELDS: &[&str] = &[
    "decision_id",
    "model_id",
    "attempt",
    "tokens_in",
    "tokens_out",
    "quality",
    "cost_usd",
    "error",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example policy, rules only (its `[learned]` section comes last and is cut).
fn rules_only() -> &'static str {
    EXAMPLE
        .find("\n[learned]")
        .map_or(EXAMPLE, |at| &EXAMPLE[..at])
}

/// A directory relative paths of mutated policies resolve against: nothing is written there.
fn policy_base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| std::env::temp_dir().join("signalbox-fuzz-props-base"))
}

fn engine() -> &'static DecisionEngine {
    static ENGINE: OnceLock<DecisionEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let policy = Policy::from_toml(rules_only(), Path::new("test.toml"), policy_base())
            .expect("example policy is valid");
        DecisionEngine::new(policy).expect("engine builds")
    })
}

/// The example policy with the shipped bundle, learned primary, tract backend.
fn learned_engine() -> &'static DecisionEngine {
    static ENGINE: OnceLock<DecisionEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let bundle = repo().join("models/routellm-mmlu");
        let text = format!(
            "{}\n[learned]\nmode = \"learned_primary\"\nbundle = {:?}\nbackend = \"tract\"\nwatch_secs = 0\n",
            rules_only(),
            bundle.display().to_string()
        );
        let policy = Policy::from_toml(&text, Path::new("test.toml"), policy_base())
            .expect("policy with [learned] is valid");
        DecisionEngine::new(policy).expect("bundle loads")
    })
}

fn detector() -> &'static PiiDetector {
    static DETECTOR: OnceLock<PiiDetector> = OnceLock::new();
    DETECTOR.get_or_init(|| PiiDetector::new(&PiiKind::ALL).expect("detector builds"))
}

fn classifier() -> &'static TextClassifier {
    static CLASSIFIER: OnceLock<TextClassifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| TextClassifier::new().expect("classifier builds"))
}

fn featurizer() -> &'static Featurizer {
    static FEATURIZER: OnceLock<Featurizer> = OnceLock::new();
    FEATURIZER.get_or_init(|| {
        Featurizer::load(&repo().join("models/routellm-mmlu")).expect("shipped bundle loads")
    })
}

/// `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Shrinking a failure of a slow property can take long; the failing input is
        // reported (and persisted) either way.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Characters that break naive text handling: combining marks, zero-width and bidi controls,
/// right-to-left scripts, non-ASCII digits, characters whose case mapping changes their
/// length, emoji with modifiers, tags, noncharacters, the extremes.
const SPECIAL_CHARS: &[char] = &[
    '\u{0}',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{ad}',
    '\u{300}',
    '\u{301}',
    '\u{20dd}',
    '\u{200b}',
    '\u{200c}',
    '\u{200d}',
    '\u{200e}',
    '\u{200f}',
    '\u{2028}',
    '\u{2029}',
    '\u{202a}',
    '\u{202b}',
    '\u{202e}',
    '\u{2066}',
    '\u{2069}',
    '\u{2060}',
    '\u{feff}',
    '\u{fffd}',
    '\u{fffe}',
    '\u{ffff}',
    '\u{5d0}',
    '\u{627}',
    '\u{644}',
    '\u{660}',
    '\u{6f1}',
    '\u{966}',
    '\u{ff10}',
    '\u{ff20}',
    '\u{ff0e}',
    '\u{130}',
    '\u{131}',
    '\u{df}',
    '\u{1e9e}',
    '\u{fb03}',
    '\u{212a}',
    '\u{3a3}',
    '\u{1c5}',
    '\u{4e2d}',
    '\u{ac00}',
    '\u{1f600}',
    '\u{1f469}',
    '\u{1f3fd}',
    '\u{fe0f}',
    '\u{e0001}',
    '\u{e007f}',
    '\u{10ffff}',
    '\u{d7ff}',
    '\u{e000}',
];

/// Fragments that reach the detectors' slow paths: PII and secret shapes, their triggers and
/// near misses.
const FRAGMENTS: &[&str] = &[
    "jane.doe@example.com",
    "@",
    "a@b.co",
    ".",
    "@@..",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "378282246310005",
    "+44 20 7946 0958",
    "(415) 555-0132",
    "415-555-0132",
    "020 7946 0958",
    "+1 ",
    "GB82 WEST 1234 5698 7654 32",
    "DE89370400440532013000",
    "078-05-1120",
    "AB 12 34 56 C",
    "passport no: X1234567",
    "SSN: 123456789",
    "social security",
    "password=",
    "password = \"hunter2hunter2\"",
    "api_key: '",
    "\"client_secret\": \"",
    "Authorization: Bearer ",
    "bearer abcdefghijklmnop1234",
    "https://user:pa55word@host.example/",
    "://",
    "sk-",
    "sk-proj-abc123def456ghi789jkl012",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_",
    "xoxb-",
    "AIza",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc",
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n",
    "-----END PRIVATE KEY-----",
    "[EMAIL]",
    "[SECRET]",
    "def f(x):\n    return x;\n}",
    "What is 3 + 4 = ?",
    "(A) yes (B) no (C) maybe",
    "patient diagnosis dosage lawsuit mortgage",
    "summarize",
    "```",
    "\r\n",
    "\t",
    " ",
    "0",
    "12,345.67",
    "[UNK]",
    "##",
];

fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::char::range(' ', '~'),
        2 => any::<char>(),
        2 => prop::sample::select(SPECIAL_CHARS),
        1 => prop::char::range('\u{0}', '\u{1f}'),
        1 => prop::char::range('0', '9'),
    ]
}

/// One piece of an adversarial text.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(any_char(), 1..16).prop_map(|v| v.into_iter().collect()),
        3 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => (any_char(), 1..3000usize).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        1 => (prop::sample::select(FRAGMENTS), 1..200usize).prop_map(|(f, n)| f.repeat(n)),
        1 => any::<String>(),
    ]
}

/// Arbitrary text: any chars, PII-shaped fragments, long runs of one char or fragment.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..24).prop_map(|v| v.concat())
}

/// Shorter arbitrary strings, for ids and labels (around the 256-byte id limit at times).
fn short_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(any_char(), 0..12).prop_map(|v| v.into_iter().collect()),
        2 => "[a-z]{1,12}",
        1 => Just(String::new()),
        1 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => (any_char(), 250..260usize).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        1 => any::<String>(),
    ]
}

fn any_enum() -> impl Strategy<Value = i32> {
    prop_oneof![4 => -2..10i32, 1 => any::<i32>()]
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 0.0..=1.0f64,
        2 => any::<f64>(),
        1 => prop::sample::select(vec![
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            1.0,
            1.0 + f64::EPSILON,
            -f64::MIN_POSITIVE,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e12,
            1e12 + 1.0,
            5e-7,
        ]),
    ]
}

fn category() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_.:/-]{0,70}",
        1 => "[0-9-]{0,30}",
        1 => prop::sample::select(vec![
            "078-05-1120",
            "4111-1111-1111-1111",
            "auth:password:reset",
            "jane.doe@example.com",
            "sk-proj-abc123def456ghi789jkl012",
            "AKIAIOSFODNN7EXAMPLE",
            "college_physics",
            "GB82WEST12345698765432",
        ])
        .prop_map(str::to_string),
        1 => short_string(),
    ]
}

fn messages() -> impl Strategy<Value = Vec<proto::ChatMessage>> {
    let role = prop_oneof![
        4 => prop::sample::select(vec!["system", "user", "assistant", "tool"]).prop_map(str::to_string),
        1 => short_string(),
    ];
    prop::collection::vec(
        (role, text()).prop_map(|(role, content)| proto::ChatMessage { role, content }),
        0..6,
    )
}

fn metadata() -> impl Strategy<Value = std::collections::HashMap<String, String>> {
    let value = prop_oneof![
        4 => short_string(),
        1 => prop::sample::select(vec!["medical", "legal,financial", " employment , x", ""]).prop_map(str::to_string),
        1 => (any_char(), 4090..4100usize).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ];
    prop_oneof![
        4 => prop::collection::hash_map(short_string(), value.clone(), 0..8),
        1 => prop::collection::hash_map(short_string(), value, 60..130),
    ]
}

prop_compose! {
    fn route_request()(
        request_id in short_string(),
        prompt in prop_oneof![
            1 => Just(None),
            5 => text().prop_map(|t| Some(Prompt::Text(t))),
            3 => messages().prop_map(|messages| Some(Prompt::Messages(proto::Messages { messages }))),
        ],
        task_hint in any_enum(),
        tenant_id in prop_oneof![3 => Just("acme".to_string()), 1 => short_string()],
        user_id in short_string(),
        data_class in any_enum(),
        mode in any_enum(),
        latency_budget_ms in prop_oneof![any::<u32>(), Just(0u32), 1..20_000u32],
        required_capabilities in prop::collection::vec(any_enum(), 0..6),
        quality_preference in prop::option::of(any_f64()),
        metadata in metadata(),
        category in prop_oneof![2 => Just(String::new()), 1 => category()],
    ) -> proto::RouteRequest {
        proto::RouteRequest {
            request_id,
            prompt,
            task_hint,
            tenant_id,
            user_id,
            data_class,
            mode,
            latency_budget_ms,
            required_capabilities,
            quality_preference,
            metadata,
            category,
        }
    }
}

const CATALOG: &[&str] = &[
    "gpt-4-1106-preview",
    "claude-3-5-sonnet",
    "llama-3.1-70b-instruct",
    "qwen2.5-coder-32b-instruct",
    "gpt-4o-mini",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
];

prop_compose! {
    fn outcome()(
        decision_id in prop_oneof![2 => Just("0190b1c2-d3e4-7f00-8000-000000000001".to_string()), 1 => short_string()],
        model_id in prop_oneof![3 => prop::sample::select(CATALOG).prop_map(str::to_string), 1 => short_string()],
        success in any::<bool>(),
        quality in prop::option::of(any_f64()),
        latency_ms in any::<u32>(),
        tokens_in in prop_oneof![0..300_000u32, any::<u32>()],
        tokens_out in prop_oneof![0..20_000u32, any::<u32>()],
        cost_usd in prop::option::of(prop_oneof![any_f64(), 0.0..100.0f64]),
        error in any_enum(),
        attempt in prop_oneof![0..12u32, any::<u32>()],
    ) -> proto::Outcome {
        proto::Outcome {
            decision_id,
            model_id,
            success,
            quality,
            latency_ms,
            tokens_in,
            tokens_out,
            cost_usd,
            error,
            attempt,
        }
    }
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Copy `len` bytes from one place to another (repeated fields, nested lengths).
    Splice(Index, Index, u8),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        3 => (any::<Index>(), 0..8u8).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        1 => any::<Index>().prop_map(ByteEdit::Delete),
        1 => any::<Index>().prop_map(ByteEdit::Truncate),
        1 => (any::<Index>(), any::<Index>(), 1..32u8).prop_map(|(a, b, n)| ByteEdit::Splice(a, b, n)),
    ]
}

fn apply_byte_edit(bytes: &mut Vec<u8>, edit: &ByteEdit) {
    let len = bytes.len();
    match edit {
        ByteEdit::Insert(i, b) => {
            let at = if len == 0 { 0 } else { i.index(len + 1) };
            bytes.insert(at, *b);
        }
        _ if len == 0 => {}
        ByteEdit::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        ByteEdit::Set(i, b) => bytes[i.index(len)] = *b,
        ByteEdit::Delete(i) => {
            bytes.remove(i.index(len));
        }
        ByteEdit::Truncate(i) => bytes.truncate(i.index(len)),
        ByteEdit::Splice(from, to, n) => {
            let from = from.index(len);
            let end = (from + usize::from(*n)).min(len);
            let chunk = bytes[from..end].to_vec();
            let at = to.index(len + 1);
            bytes.splice(at..at, chunk);
        }
    }
}

/// A full request and a full outcome, the seeds of the mutation properties.
fn seed_requests() -> Vec<Vec<u8>> {
    let full = proto::RouteRequest {
        request_id: "req-1".into(),
        prompt: Some(Prompt::Text(
            "Email jane@example.com the Q3 summary; card 4111 1111 1111 1111".into(),
        )),
        task_hint: 2,
        tenant_id: "acme".into(),
        user_id: "alice".into(),
        data_class: 3,
        mode: 2,
        latency_budget_ms: 2500,
        required_capabilities: vec![1, 2],
        quality_preference: Some(0.7),
        metadata: [("domain".to_string(), "medical".to_string())].into(),
        category: "college_physics".into(),
    };
    let chat = proto::RouteRequest {
        tenant_id: "acme".into(),
        prompt: Some(Prompt::Messages(proto::Messages {
            messages: vec![
                proto::ChatMessage {
                    role: "system".into(),
                    content: "You are terse.".into(),
                },
                proto::ChatMessage {
                    role: "user".into(),
                    content: "password=hunter2hunter2 what is 3 + 4?".into(),
                },
            ],
        })),
        ..Default::default()
    };
    vec![full.encode_to_vec(), chat.encode_to_vec()]
}

fn seed_outcome() -> Vec<u8> {
    proto::Outcome {
        decision_id: "0190b1c2-d3e4-7f00-8000-000000000001".into(),
        model_id: "gpt-4o-mini".into(),
        success: false,
        quality: Some(0.25),
        latency_ms: 900,
        tokens_in: 40,
        tokens_out: 200,
        cost_usd: Some(0.0002),
        error: 1,
        attempt: 2,
    }
    .encode_to_vec()
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// Validation, then (when valid) the decision and the response: Ok, or `InvalidArgument`
/// naming a real field.
fn check_route(req: proto::RouteRequest, engine: &DecisionEngine) -> Result<(), TestCaseError> {
    let limit = engine.policy().server.max_prompt_bytes;
    match route_input(req, engine) {
        Ok(input) => {
            let text = input.prompt.full_text();
            prop_assert!(
                text.len() <= limit + 16 * 1024,
                "an accepted prompt is within the limit"
            );
            let budgets = BudgetLedger::new();
            let circuits = CircuitBreakers::new();
            let state = RuntimeState {
                budgets: &budgets,
                circuits: &circuits,
            };
            // Budget denials and "no eligible model" are answers, not failures.
            if let Ok(d) = engine.decide(&input, &state, chrono::Utc::now(), Instant::now()) {
                let resp = decision_response(
                    "d".into(),
                    input.request_id.clone(),
                    &d,
                    engine.policy(),
                    Duration::from_micros(1),
                );
                prop_assert!(resp.primary.is_some());
                prop_assert!(resp.estimated_cost_usd.is_finite());
            }
        }
        Err(signalbox::api::ApiError::InvalidArgument { field, message }) => {
            prop_assert!(
                ROUTE_FIELDS.contains(&field),
                "unknown field {field:?} ({message})"
            );
            prop_assert!(!message.is_empty());
        }
        Err(other) => prop_assert!(false, "not INVALID_ARGUMENT: {other}"),
    }
    Ok(())
}

fn check_outcome(o: proto::Outcome, policy: &Policy) -> Result<(), TestCaseError> {
    match outcome_input(o, policy) {
        Ok(input) => {
            prop_assert!(input.quality.is_finite() && (0.0..=1.0).contains(&input.quality));
            prop_assert!(input.cost <= policy.budgets.max_outcome_cost);
        }
        Err(signalbox::api::ApiError::InvalidArgument { field, message }) => {
            prop_assert!(
                OUTCOME_FIELDS.contains(&field),
                "unknown field {field:?} ({message})"
            );
            prop_assert!(!message.is_empty());
        }
        Err(other) => prop_assert!(false, "not INVALID_ARGUMENT: {other}"),
    }
    Ok(())
}

fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(req) = proto::RouteRequest::decode(bytes) {
        check_route(req, engine())?;
    }
    if let Ok(o) = proto::Outcome::decode(bytes) {
        check_outcome(o, engine().policy())?;
    }
    Ok(())
}

/// A scan's matches are in bounds, on char boundaries, sorted and disjoint; the redaction
/// replaces exactly them, and no detected value survives it.
fn check_scan(text: &str, scan: &PiiScan) -> Result<(), TestCaseError> {
    let mut last = 0;
    for m in &scan.matches {
        prop_assert!(
            m.start < m.end && m.end <= text.len(),
            "{m:?} out of bounds"
        );
        prop_assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
        prop_assert!(m.start >= last, "matches overlap or are unsorted: {m:?}");
        last = m.end;
    }
    let redacted = scan.redact(text);
    prop_assert!(std::str::from_utf8(redacted.as_bytes()).is_ok());
    let mut expected = String::new();
    let mut at = 0;
    for m in &scan.matches {
        expected.push_str(&text[at..m.start]);
        expected.push_str(&format!("[{}]", m.kind.as_str().to_ascii_uppercase()));
        at = m.end;
    }
    expected.push_str(&text[at..]);
    prop_assert_eq!(&redacted, &expected);
    for m in &scan.matches {
        let value = &text[m.start..m.end];
        // A value found once in the text (and that a tag cannot help spell) is gone.
        if !value.contains(['[', ']']) && text.matches(value).count() == 1 {
            prop_assert!(!redacted.contains(value), "{:?} survives redaction", value);
        }
    }
    Ok(())
}

fn check_detectors(text: &str) -> Result<(), TestCaseError> {
    let d = detector();
    let scan = d.scan(text);
    check_scan(text, &scan)?;
    let counts: u32 = scan.counts().iter().map(|(_, n)| n).sum();
    prop_assert_eq!(counts as usize, scan.matches.len());
    check_scan(text, &d.scan_shapes(text))?;
    let c = classifier();
    let (signals, domains) = c.analyze(text);
    prop_assert!(TaskType::ALL.contains(&signals.task));
    prop_assert!(
        signals.scores.iter().all(|s| s.is_finite()),
        "{:?}",
        signals.scores
    );
    prop_assert!(domains.windows(2).all(|w| w[0] < w[1]));
    prop_assert!(domains.iter().all(|d| RiskDomain::ALL.contains(d)));
    prop_assert_eq!(&c.task(text), &signals);
    prop_assert_eq!(c.risk_domains(text), domains);
    Ok(())
}

fn check_featurizer(f: &Featurizer, text: &str, task: Option<&str>) -> Result<(), TestCaseError> {
    let ids = f.token_ids(text);
    prop_assert!(ids.is_ok(), "token ids: {:?}", ids.err());
    let ids = ids.unwrap_or_default();
    prop_assert!(ids.len() <= f.config().max_tokens);
    let x = f.featurize(text, task);
    prop_assert!(x.is_ok(), "featurize: {:?}", x.err());
    let x = x.unwrap_or_default();
    prop_assert_eq!(x.len(), f.dim());
    prop_assert!(x.iter().all(|v| v.is_finite()), "non-finite feature");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Protobuf requests
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary bytes as a RouteRequest and as an Outcome.
    #[test]
    fn arbitrary_bytes_decode_and_validate(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_decode(&bytes)?;
    }

    /// Valid encodings with bit flips, byte edits, insertions, deletions, truncation, splices.
    #[test]
    fn mutated_encodings_decode_and_validate(
        seed in 0..3usize,
        edits in prop::collection::vec(byte_edit(), 1..8),
    ) {
        let mut bytes = if seed < 2 { seed_requests().swap_remove(seed) } else { seed_outcome() };
        for e in &edits {
            apply_byte_edit(&mut bytes, e);
        }
        check_decode(&bytes)?;
    }

    /// Arbitrary outcome field values straight into validation.
    #[test]
    fn arbitrary_outcomes_validate(o in outcome()) {
        check_outcome(o, engine().policy())?;
    }
}

proptest! {
    #![proptest_config(cases(160))]

    /// Arbitrary request field values straight into validation, then decided when valid; and
    /// the same request through an encode/decode round trip.
    #[test]
    fn arbitrary_requests_validate_and_decide(req in route_request()) {
        let decoded = proto::RouteRequest::decode(req.encode_to_vec().as_slice());
        prop_assert!(decoded.is_ok());
        if let Ok(mut decoded) = decoded {
            // NaN != NaN: the quality preference is compared bit for bit.
            prop_assert_eq!(
                decoded.quality_preference.take().map(f64::to_bits),
                req.quality_preference.map(f64::to_bits)
            );
            prop_assert_eq!(decoded, proto::RouteRequest { quality_preference: None, ..req.clone() });
        }
        check_route(req, engine())?;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Policy files
// ---------------------------------------------------------------------------------------------

/// Values that are wrong in most places of a policy file.
const TOML_VALUES: &[&str] = &[
    "-1",
    "0",
    "1",
    "-0",
    "0.5",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "-inf",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "1e-300",
    "\"\"",
    "\" \"",
    "\"x\"",
    "\"\\u0000\"",
    "\"\u{202e}\u{200b}\"",
    "\"../../../../../../nonexistent\"",
    "\"hmac\"",
    "\"rules_only\"",
    "\"onnxruntime\"",
    "true",
    "false",
    "[]",
    "[\"\"]",
    "[1, \"a\"]",
    "{}",
    "{ task = [] }",
    "{ task = [\"code\"], max_prompt_tokens = -5 }",
    "1979-05-27T07:32:00Z",
    "'''\nmulti\n'''",
];

#[derive(Debug, Clone)]
enum LineEdit {
    Delete(Index),
    Duplicate(Index),
    SwapLines(Index, Index),
    /// Swap the right-hand sides of two `key = value` (or `"key": value`) lines.
    SwapValues(Index, Index),
    ReplaceValue(Index, &'static str),
    InsertLine(Index, String),
    Bytes(ByteEdit),
}

fn line_edit(values: &'static [&'static str]) -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        3 => any::<Index>().prop_map(LineEdit::Delete),
        2 => any::<Index>().prop_map(LineEdit::Duplicate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineEdit::SwapLines(a, b)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineEdit::SwapValues(a, b)),
        4 => (any::<Index>(), prop::sample::select(values)).prop_map(|(i, v)| LineEdit::ReplaceValue(i, v)),
        1 => (any::<Index>(), short_string()).prop_map(|(i, s)| LineEdit::InsertLine(i, s)),
        3 => byte_edit().prop_map(LineEdit::Bytes),
    ]
}

/// Byte position of a line's value: after ` = ` (TOML) or `": ` (JSON).
fn value_start(line: &str) -> Option<usize> {
    if let Some(p) = line.find("\": ") {
        return Some(p + 3);
    }
    line.find(" = ").map(|p| p + 3)
}

fn apply_line_edits(text: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut bytes_edits = Vec::new();
    for e in edits {
        let n = lines.len();
        if n == 0 {
            break;
        }
        match e {
            LineEdit::Delete(i) => {
                lines.remove(i.index(n));
            }
            LineEdit::Duplicate(i) => {
                let i = i.index(n);
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            LineEdit::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
            LineEdit::SwapValues(a, b) => {
                let (a, b) = (a.index(n), b.index(n));
                if let (Some(pa), Some(pb)) = (value_start(&lines[a]), value_start(&lines[b])) {
                    let va = lines[a][pa..].to_string();
                    let vb = lines[b][pb..].to_string();
                    lines[a].replace_range(pa.., &vb);
                    lines[b].replace_range(pb.., &va);
                }
            }
            LineEdit::ReplaceValue(i, v) => {
                let i = i.index(n);
                if let Some(p) = value_start(&lines[i]) {
                    // Keep a JSON line's trailing comma.
                    let comma = if lines[i].ends_with(',') { "," } else { "" };
                    lines[i].replace_range(p.., &format!("{v}{comma}"));
                }
            }
            LineEdit::InsertLine(i, s) => lines.insert(i.index(n + 1), s.clone()),
            LineEdit::Bytes(b) => bytes_edits.push(b.clone()),
        }
    }
    let mut bytes = (lines.join("\n") + "\n").into_bytes();
    for b in &bytes_edits {
        apply_byte_edit(&mut bytes, b);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Engines built from mutated policies so far (a debug build takes about a second for one, so
/// only the first few valid mutants with changed values are decided on).
static ENGINES_BUILT: AtomicUsize = AtomicUsize::new(0);
const MAX_ENGINES_BUILT: usize = 4;

/// A policy parse: Ok, or an error whose text names something. With `decide`, a valid rules-only
/// policy also builds an engine that decides once (at most [`MAX_ENGINES_BUILT`] times).
fn check_policy(text: &str, decide: bool) -> Result<(), TestCaseError> {
    match Policy::from_toml(text, Path::new("test.toml"), policy_base()) {
        Ok(policy) => {
            let rules_only = policy
                .learned
                .as_ref()
                .is_none_or(|l| l.mode == signalbox::config::LearnedMode::RulesOnly);
            if decide
                && rules_only
                && ENGINES_BUILT.fetch_add(1, Ordering::Relaxed) < MAX_ENGINES_BUILT
                && let Ok(engine) = DecisionEngine::new(policy)
            {
                let req = proto::RouteRequest {
                    tenant_id: "acme".into(),
                    user_id: "alice".into(),
                    prompt: Some(Prompt::Text(
                        "Email jane@example.com: what is 3 + 4? password=hunter2hunter2".into(),
                    )),
                    ..Default::default()
                };
                check_route(req, &engine)?;
            }
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(!shown.trim().is_empty());
            match &e {
                ConfigError::Invalid { key, message } => {
                    prop_assert!(!key.trim().is_empty(), "no key: {shown}");
                    prop_assert!(!message.trim().is_empty(), "no message: {shown}");
                }
                ConfigError::Parse { message, .. } => {
                    prop_assert!(!message.trim().is_empty(), "no message: {shown}")
                }
                ConfigError::Read { .. } => prop_assert!(false, "from_toml read a file: {shown}"),
                // A mutant that turned on `[auth]`: its keys file names itself in the message.
                ConfigError::Keys(k) => prop_assert!(!k.to_string().trim().is_empty()),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    /// Line deletions and duplications, swapped and replaced values, byte edits: of the whole
    /// example policy (with `[learned]`) and of its rules-only cut.
    #[test]
    fn mutated_policies_parse_or_fail_cleanly(
        whole in any::<bool>(),
        edits in prop::collection::vec(line_edit(TOML_VALUES), 1..6),
    ) {
        let base = if whole { EXAMPLE } else { rules_only() };
        let values_changed = edits
            .iter()
            .any(|e| matches!(e, LineEdit::ReplaceValue(..) | LineEdit::SwapValues(..)));
        check_policy(&apply_line_edits(base, &edits), values_changed)?;
    }
}

/// A typed edit of one node of a parsed policy: the value replaced by an extreme one of the same
/// type (so the file still deserializes and validation is what decides), a key removed, an
/// array emptied, cut to one element, reversed or with its first element duplicated.
#[derive(Debug, Clone)]
struct TreeEdit {
    node: Index,
    choice: Index,
}

fn tree_edits() -> impl Strategy<Value = Vec<TreeEdit>> {
    prop::collection::vec(
        (any::<Index>(), any::<Index>()).prop_map(|(node, choice)| TreeEdit { node, choice }),
        1..5,
    )
}

const TOML_INTEGERS: &[i64] = &[
    -1,
    0,
    1,
    2,
    255,
    256,
    65_535,
    65_536,
    4_294_967_295,
    4_294_967_296,
    i64::MAX,
    i64::MIN,
];

const TOML_FLOATS: &[f64] = &[
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.0,
    -0.0,
    5e-324,
    1e-300,
    1e300,
    0.5,
    1.0,
    1.000_000_1,
    -0.5,
];

const TREE_STRINGS: &[&str] = &[
    "",
    " ",
    "x",
    "hosted",
    "private",
    "self_hosted",
    "code",
    "high",
    "pii",
    "gpt-4o-mini",
    "default",
    "hmac",
    "rules_only",
    "downgrade",
    "deny",
    "../../../../x",
    "\u{0}",
    "\u{202e}\u{200b}",
    "college_physics",
    "gpt-4-1106-preview",
];

/// Paths (keys and array indices) of every node of a TOML tree.
fn toml_paths(v: &toml::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(path.clone());
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                path.push(k.clone());
                toml_paths(child, path, out);
                path.pop();
            }
        }
        toml::Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                path.push(i.to_string());
                toml_paths(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn toml_at<'a>(v: &'a mut toml::Value, path: &[String]) -> Option<&'a mut toml::Value> {
    path.iter().try_fold(v, |v, key| match v {
        toml::Value::Table(t) => t.get_mut(key),
        toml::Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

fn apply_toml_edit(root: &mut toml::Value, edit: &TreeEdit) {
    let mut paths = Vec::new();
    toml_paths(root, &mut Vec::new(), &mut paths);
    let path = paths[edit.node.index(paths.len())].clone();
    let Some(node) = toml_at(root, &path) else {
        return;
    };
    let pick = |n: usize| edit.choice.index(n);
    match node {
        toml::Value::Integer(i) => *i = TOML_INTEGERS[pick(TOML_INTEGERS.len())],
        toml::Value::Float(f) => *f = TOML_FLOATS[pick(TOML_FLOATS.len())],
        toml::Value::Boolean(b) => *b = !*b,
        toml::Value::String(st) => {
            let all = TREE_STRINGS.len() + 1;
            *st = match pick(all) {
                i if i < TREE_STRINGS.len() => TREE_STRINGS[i].to_string(),
                _ => "a".repeat(5000),
            }
        }
        toml::Value::Array(a) => match pick(4) {
            0 => a.clear(),
            1 => a.truncate(1),
            2 => a.reverse(),
            _ => {
                if let Some(first) = a.first().cloned() {
                    a.insert(0, first);
                }
            }
        },
        toml::Value::Table(t) => {
            let keys: Vec<String> = t.keys().cloned().collect();
            if !keys.is_empty() {
                t.remove(&keys[pick(keys.len())]);
            }
        }
        toml::Value::Datetime(_) => {}
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Typed edits of the parsed example policy (with and without `[learned]`), written back as
    /// TOML: these reach validation rather than failing to parse.
    #[test]
    fn edited_policy_trees_validate_or_fail_cleanly(whole in any::<bool>(), edits in tree_edits()) {
        let base = if whole { EXAMPLE } else { rules_only() };
        let mut root = toml::Value::Table(toml::from_str(base).expect("example policy is TOML"));
        for e in &edits {
            apply_toml_edit(&mut root, e);
        }
        let text = toml::to_string(&root);
        prop_assert!(text.is_ok(), "{:?}", text.err());
        check_policy(&text.unwrap_or_default(), true)?;
    }
}

/// The example policy cut at every 31st byte (on char boundaries; about 330 cuts, 8 ms each in a
/// debug build), and at the end of every line.
#[test]
fn truncated_policies_parse_or_fail_cleanly() {
    let line_ends = EXAMPLE.match_indices('\n').map(|(i, _)| i);
    for cut in (0..EXAMPLE.len()).step_by(31).chain(line_ends) {
        if !EXAMPLE.is_char_boundary(cut) {
            continue;
        }
        if let Err(e) = check_policy(&EXAMPLE[..cut], false) {
            panic!("policy cut at byte {cut}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Bundle manifests
// ---------------------------------------------------------------------------------------------

const JSON_VALUES: &[&str] = &[
    "-1",
    "0",
    "1",
    "3",
    "4",
    "24",
    "25",
    "31",
    "32",
    "63",
    "64",
    "65",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "1e309",
    "-1e309",
    "1.5",
    "null",
    "true",
    "\"\"",
    "\"x\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "[]",
    "[0]",
    "[1, 0]",
    "[\"\"]",
    "{}",
    "\"hashed_tfidf_v1\"",
    "\"cheapest_within_margin_v1\"",
    "\"../../../../etc/passwd\"",
    "\"log_bytes\"",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let keys = prop_oneof![
        3 => prop::sample::select(vec![
            "version", "name", "created_at", "models", "id", "cost", "quality_threshold",
            "features", "kind", "tokenizer_file", "idf_file", "hash_bits", "ngram_max",
            "max_prompt_bytes", "max_tokens", "sublinear_tf", "meta", "tasks", "columns", "dim",
            "onnx", "routing_rule", "quality_targets", "target", "margin", "training", "metrics",
        ])
        .prop_map(str::to_string),
        1 => short_string(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (0..30u32).prop_map(Value::from),
        short_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every node of a JSON value, as a path of object keys and array indices.
fn json_paths(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(path.clone());
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m {
                path.push(k.clone());
                json_paths(child, path, out);
                path.pop();
            }
        }
        serde_json::Value::Array(a) => {
            // Big arrays (the task list, quality targets): a few elements are enough.
            for (i, child) in a.iter().enumerate().take(4) {
                path.push(i.to_string());
                json_paths(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn json_at<'a>(v: &'a mut serde_json::Value, path: &[String]) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(v, |v, key| match v {
        serde_json::Value::Object(m) => m.get_mut(key),
        serde_json::Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

const JSON_NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "16",
    "17",
    "18",
    "24",
    "25",
    "31",
    "32",
    "63",
    "64",
    "255",
    "256",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "-1",
    "-9223372036854775808",
    "0.5",
    "-0.0",
    "1e300",
    "-1e300",
    "5e-324",
    "1e-12",
];

#[derive(Debug, Clone)]
enum JsonEdit {
    /// Replaced by an extreme value of the same type (see [`apply_json_typed_edit`]).
    Typed(TreeEdit),
    Replace(Index, serde_json::Value),
    Remove(Index),
    DuplicateElement(Index),
    AddKey(Index, String, serde_json::Value),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let value = prop_oneof![
        3 => prop::sample::select(JSON_VALUES)
            .prop_map(|s| serde_json::from_str(s).unwrap_or(serde_json::Value::Null)),
        1 => json_value(),
    ];
    prop_oneof![
        8 => (any::<Index>(), any::<Index>())
            .prop_map(|(node, choice)| JsonEdit::Typed(TreeEdit { node, choice })),
        3 => (any::<Index>(), value.clone()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => any::<Index>().prop_map(JsonEdit::DuplicateElement),
        1 => (any::<Index>(), short_string(), value).prop_map(|(i, k, v)| JsonEdit::AddKey(i, k, v)),
    ]
}

fn apply_json_edit(root: &mut serde_json::Value, edit: &JsonEdit) {
    let mut paths = Vec::new();
    json_paths(root, &mut Vec::new(), &mut paths);
    let pick = |i: &Index| paths[i.index(paths.len())].clone();
    match edit {
        JsonEdit::Typed(t) => {
            if let Some(node) = json_at(root, &pick(&t.node)) {
                apply_json_typed_edit(node, &t.choice);
            }
        }
        JsonEdit::Replace(i, v) => {
            if let Some(slot) = json_at(root, &pick(i)) {
                *slot = v.clone();
            }
        }
        JsonEdit::Remove(i) => {
            let mut path = pick(i);
            let Some(last) = path.pop() else { return };
            match json_at(root, &path) {
                Some(serde_json::Value::Object(m)) => {
                    m.remove(&last);
                }
                Some(serde_json::Value::Array(a)) => {
                    if let Ok(k) = last.parse::<usize>()
                        && k < a.len()
                    {
                        a.remove(k);
                    }
                }
                _ => {}
            }
        }
        JsonEdit::DuplicateElement(i) => {
            let mut path = pick(i);
            let Some(last) = path.pop() else { return };
            if let Some(serde_json::Value::Array(a)) = json_at(root, &path)
                && let Ok(k) = last.parse::<usize>()
                && let Some(el) = a.get(k).cloned()
            {
                a.insert(k, el);
            }
        }
        JsonEdit::AddKey(i, key, v) => {
            if let Some(serde_json::Value::Object(m)) = json_at(root, &pick(i)) {
                m.insert(key.clone(), v.clone());
            }
        }
    }
}

fn apply_json_typed_edit(node: &mut serde_json::Value, choice: &Index) {
    use serde_json::Value;
    let pick = |n: usize| choice.index(n);
    match node {
        Value::Number(_) => {
            *node =
                serde_json::from_str(JSON_NUMBERS[pick(JSON_NUMBERS.len())]).unwrap_or(Value::Null)
        }
        Value::String(st) => {
            let all = TREE_STRINGS.len() + 1;
            *st = match pick(all) {
                i if i < TREE_STRINGS.len() => TREE_STRINGS[i].to_string(),
                _ => "a".repeat(5000),
            }
        }
        Value::Bool(b) => *b = !*b,
        Value::Array(a) => match pick(4) {
            0 => a.clear(),
            1 => a.truncate(1),
            2 => a.reverse(),
            _ => {
                if let Some(first) = a.first().cloned() {
                    a.insert(0, first);
                }
            }
        },
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            if !keys.is_empty() {
                m.remove(&keys[pick(keys.len())]);
            }
        }
        Value::Null => *node = Value::from(0),
    }
}

/// Featurizers built from edited manifests so far.
static FEATURIZERS_BUILT: AtomicUsize = AtomicUsize::new(0);
const MAX_FEATURIZERS_BUILT: usize = 8;

/// Parse and validate a manifest text; a valid feature config builds a featurizer (with the
/// shipped tokenizer, and its IDF table or a flat one) that featurizes a few texts.
fn check_manifest(text: &str) -> Result<(), TestCaseError> {
    let parsed: Result<BundleManifest, _> = serde_json::from_str(text);
    let Ok(manifest) = parsed else {
        return Ok(());
    };
    let valid = manifest.validate();
    if let Err(e) = &valid {
        prop_assert!(!e.to_string().trim().is_empty());
    }
    // The pieces the learned router reads, valid or not.
    let _ = manifest.margin_for_target(0.95, true);
    let _ = manifest.margin_for_target(f64::NAN, false);
    let _ = manifest.model_index("gpt-4-1106-preview");
    let config = &manifest.features;
    let shipped = featurizer();
    // Building a featurizer takes about half a second in a debug build: only for configs the
    // edits changed (the shipped one is covered by `featurizer_handles_any_text`), and only the
    // first few.
    if config.validate().is_err()
        || config.hash_bits > 18
        || config == shipped.config()
        || FEATURIZERS_BUILT.fetch_add(1, Ordering::Relaxed) >= MAX_FEATURIZERS_BUILT
    {
        return Ok(());
    }
    let _ = config.task_column("college_physics");
    let idf = if config.hash_bits == shipped.config().hash_bits {
        shipped.idf().to_vec()
    } else {
        vec![1.0; config.hash_dim()]
    };
    match Featurizer::new(config.clone(), shipped.tokenizer().clone(), idf) {
        Ok(f) => {
            for t in ["What is 3 + 4?", "", "é\u{301}\u{200b} 1\n2 [UNK] ##x"] {
                check_featurizer(&f, t, Some("college_physics"))?;
            }
        }
        Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(128))]

    /// Structural edits of the shipped manifest: values replaced (wrong types, out of range,
    /// huge), keys removed or added, array elements removed or duplicated.
    #[test]
    fn edited_manifests_parse_or_fail_cleanly(
        features_only in any::<bool>(),
        edits in prop::collection::vec(json_edit(), 1..5),
    ) {
        let mut root: serde_json::Value = serde_json::from_str(MANIFEST).expect("manifest is JSON");
        for e in &edits {
            // Half the cases edit only the feature config, what the featurizer is built from.
            let target = if features_only { root.get_mut("features") } else { Some(&mut root) };
            if let Some(target) = target {
                apply_json_edit(target, e);
            }
        }
        check_manifest(&root.to_string())?;
    }

    /// Text edits of the shipped manifest: lines deleted, duplicated, swapped; values replaced
    /// and swapped; byte edits and truncation.
    #[test]
    fn mutated_manifest_text_parses_or_fails_cleanly(
        edits in prop::collection::vec(line_edit(JSON_VALUES), 1..6),
    ) {
        check_manifest(&apply_line_edits(MANIFEST, &edits))?;
    }

    /// Random JSON (with the manifest's keys) through the manifest parser.
    #[test]
    fn random_json_manifests_fail_cleanly(v in json_value()) {
        check_manifest(&v.to_string())?;
    }
}

/// The manifest read from disk (the loader of a bundle directory), truncated and edited.
#[test]
fn manifest_files_load_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let step = MANIFEST.len() / 40;
    for cut in (0..MANIFEST.len()).step_by(step) {
        std::fs::write(
            dir.path().join(signalbox_features::MANIFEST_FILE),
            &MANIFEST.as_bytes()[..cut],
        )
        .unwrap();
        assert!(BundleManifest::load(dir.path()).is_err(), "cut at {cut}");
    }
    std::fs::write(
        dir.path().join(signalbox_features::MANIFEST_FILE),
        [0xff, 0xfe, b'{'],
    )
    .unwrap();
    assert!(BundleManifest::load(dir.path()).is_err());
    std::fs::write(dir.path().join(signalbox_features::MANIFEST_FILE), MANIFEST).unwrap();
    assert!(BundleManifest::load(dir.path()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// 4. Detectors and featurizer on arbitrary Unicode
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(192))]

    /// PII scan, shape scan and redaction; task and risk classification.
    #[test]
    fn detectors_handle_any_text(text in text()) {
        check_detectors(&text)?;
    }
}

proptest! {
    #![proptest_config(cases(128))]

    /// The shipped bundle's featurizer, with and without a task.
    #[test]
    fn featurizer_handles_any_text(text in text(), task in prop::option::of(category())) {
        check_featurizer(featurizer(), &text, task.as_deref())?;
    }
}

proptest! {
    #![proptest_config(cases(48))]

    /// The learned decision path (featurize, tract inference, choice) on any text.
    #[test]
    fn learned_engine_decides_any_text(text in text(), quality in prop::option::of(0.0..=1.0f64)) {
        let req = proto::RouteRequest {
            tenant_id: "acme".into(),
            prompt: Some(Prompt::Text(text)),
            quality_preference: quality,
            ..Default::default()
        };
        check_route(req, learned_engine())?;
    }
}

/// Fixed worst cases of the generators above, always run.
#[test]
fn detectors_handle_fixed_hostile_texts() {
    let mut texts: Vec<String> = SPECIAL_CHARS
        .iter()
        .map(|c| c.to_string().repeat(2000))
        .collect();
    texts.extend(FRAGMENTS.iter().map(|f| f.repeat(100)));
    texts.push(FRAGMENTS.concat());
    texts.push(SPECIAL_CHARS.iter().collect());
    for t in &texts {
        if let Err(e) = check_detectors(t) {
            panic!("{e}");
        }
        if let Err(e) = check_featurizer(featurizer(), t, None) {
            panic!("{e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Linear time
// ---------------------------------------------------------------------------------------------

/// `unit` repeated up to `bytes` bytes (cut on a char boundary).
fn adversarial(unit: &str, bytes: usize) -> String {
    let mut s = unit.repeat(bytes / unit.len() + 1);
    let mut end = bytes.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// The adversarial prompt shapes of the `adversarial_256k` benchmark.
const ADVERSARIAL_UNITS: &[(&str, &str)] = &[
    ("digits_separators", "4111 1111-1111.1111 (415) 555-0132 +4"),
    ("digit_run", "1"),
    ("emails", "jane.doe@example.com "),
    // Long and short matches alternating: overlap resolution (was quadratic).
    ("emails_mixed_length", "aaaaaaaaaaaaaaaaaaaa@bb.cc x@bb.cc "),
    ("at_dots", "@."),
    ("password_assign", "password="),
    ("a_run", "a"),
    (
        "mixed_script",
        "Zahl 12 число 34 数字 56 رقم 78 ε=mc² e\u{301} 👩🏽 \u{200b}",
    ),
];

/// The time the detector and the classifier take on `text`.
fn detect_time(text: &str) -> Duration {
    let started = Instant::now();
    std::hint::black_box(detector().scan(text));
    std::hint::black_box(classifier().analyze(text));
    started.elapsed()
}

/// 256 KiB takes less than 8× the time of 64 KiB (linear: 4×) plus 20 ms, for every shape.
/// A shape over the bound is measured twice more and the minimum times compared, so a busy
/// machine (a slow moment during one measurement) does not fail it; a quadratic detector does.
#[test]
fn detectors_are_linear_in_input_size() {
    let _ = (detector(), classifier());
    let mut report = Vec::new();
    for (name, unit) in ADVERSARIAL_UNITS {
        let small = adversarial(unit, 64 * 1024);
        let large = adversarial(unit, 256 * 1024);
        let (mut t_small, mut t_large) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            t_small = t_small.min(detect_time(&small));
            t_large = t_large.min(detect_time(&large));
            if t_large < t_small * 8 + Duration::from_millis(20) {
                break;
            }
        }
        report.push(format!("{name}: 64 KiB {t_small:?}, 256 KiB {t_large:?}"));
        assert!(
            t_large < t_small * 8 + Duration::from_millis(20),
            "{name}: 256 KiB took {t_large:?}, 64 KiB {t_small:?}: super-linear\n{}",
            report.join("\n")
        );
    }
    eprintln!("{}", report.join("\n"));
}
