//! In-process decision path: validation + conversion of the wire request, the full rule-based
//! decision (PII scan, task and risk detection, filters, rules, budgets, plans) and building the
//! wire response. No network, no log I/O.
//!
//! cargo bench --bench decide

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use signalbox::api::{decision_response, route_input};
use signalbox::budget::BudgetLedger;
use signalbox::circuit::CircuitBreakers;
use signalbox::config::Policy;
use signalbox::engine::{DecisionEngine, RuntimeState};
use signalbox::proto::{self, route_request::Prompt};

const CASES: &[(&str, &str)] = &[
    ("qa_short", "What is the capital of Australia?"),
    (
        "math_word_problem",
        "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?",
    ),
    (
        "pii_email_phone",
        "Please email the signed contract to jane.doe@example.com and call +44 20 7946 0958 if anything is unclear.",
    ),
    (
        "medical_risk",
        "My patient is on warfarin; what is a safe dosage of ibuprofen for their lower back pain?",
    ),
];

fn bench(c: &mut Criterion) {
    let text = std::fs::read_to_string("config/signalbox.toml").expect("run from the repo root");
    // The rules path alone: cut the `[learned]` section (last in the file).
    let text = text
        .find("\n[learned]")
        .map_or(text.clone(), |at| text[..at].to_string());
    let policy = Policy::from_toml(
        &text,
        Path::new("config/signalbox.toml"),
        Path::new("config"),
    )
    .expect("example policy is valid");
    let engine = DecisionEngine::new(policy).expect("engine builds");
    let budgets = BudgetLedger::new();
    let circuits = CircuitBreakers::new();
    let state = RuntimeState {
        budgets: &budgets,
        circuits: &circuits,
    };
    let long_doc = format!(
        "Summarize this report in five bullets:\n{}",
        "The quarterly revenue grew in every region while costs stayed flat. ".repeat(60)
    );
    let mut cases: Vec<(&str, String)> = CASES.iter().map(|(n, p)| (*n, p.to_string())).collect();
    cases.push(("summary_4kb", long_doc));

    let mut group = c.benchmark_group("route_in_process");
    group.measurement_time(Duration::from_secs(4));
    for (name, prompt) in &cases {
        let req = proto::RouteRequest {
            tenant_id: "acme".into(),
            user_id: "alice".into(),
            prompt: Some(Prompt::Text(prompt.clone())),
            ..Default::default()
        };
        group.bench_function(*name, |b| {
            b.iter(|| {
                let started = Instant::now();
                let input = route_input(black_box(req.clone()), &engine).expect("valid");
                let d = engine
                    .decide(&input, &state, chrono::Utc::now(), Instant::now())
                    .expect("decides");
                black_box(decision_response(
                    String::new(),
                    input.request_id,
                    &d,
                    engine.policy(),
                    started.elapsed(),
                ))
            })
        });
    }
    group.finish();
}

/// The learned decision path (featurize + ONNX inference + choice + rules shadow), on the bundle
/// in `SIGNALBOX_BENCH_BUNDLE` (default `models/routellm-mmlu`) with the backend in
/// `SIGNALBOX_BENCH_BACKEND` (`tract`, default, or `onnxruntime`; the backend is process-global,
/// so compare backends in two runs). Prints p50/p99 over 20k decisions after criterion's mean.
fn bench_learned(c: &mut Criterion) {
    let bundle = std::env::var("SIGNALBOX_BENCH_BUNDLE")
        .unwrap_or_else(|_| "models/routellm-mmlu".to_string());
    let backend = std::env::var("SIGNALBOX_BENCH_BACKEND").unwrap_or_else(|_| "tract".to_string());
    if !Path::new(&bundle).join("manifest.json").exists() {
        eprintln!("learned benchmark skipped: no bundle at {bundle}");
        return;
    }
    let bundle = std::fs::canonicalize(&bundle).expect("bundle path");
    let text = format!(
        "{}\n[learned]\nmode = \"learned_primary\"\nbundle = {:?}\nbackend = {backend:?}\nwatch_secs = 0\n",
        {
            let t =
                std::fs::read_to_string("config/signalbox.toml").expect("run from the repo root");
            t.find("\n[learned]")
                .map_or(t.clone(), |at| t[..at].to_string())
        },
        bundle.display().to_string()
    );
    let policy = Policy::from_toml(&text, Path::new("bench.toml"), Path::new("config"))
        .expect("policy with [learned] is valid");
    let engine = DecisionEngine::new(policy).expect("bundle loads");
    let budgets = BudgetLedger::new();
    let circuits = CircuitBreakers::new();
    let state = RuntimeState {
        budgets: &budgets,
        circuits: &circuits,
    };
    let mut group = c.benchmark_group(format!("learned_in_process_{backend}"));
    group.measurement_time(Duration::from_secs(4));
    for (name, prompt) in CASES {
        let req = proto::RouteRequest {
            tenant_id: "acme".into(),
            prompt: Some(Prompt::Text(prompt.to_string())),
            ..Default::default()
        };
        group.bench_function(*name, |b| {
            b.iter(|| {
                let input = route_input(black_box(req.clone()), &engine).expect("valid");
                black_box(
                    engine
                        .decide(&input, &state, chrono::Utc::now(), Instant::now())
                        .expect("decides"),
                )
            })
        });
    }
    group.finish();
    let mut samples = Vec::with_capacity(20_000);
    for i in 0..20_000 {
        samples.push(time_decision(&engine, &state, CASES[i % CASES.len()].1));
    }
    samples.sort();
    let q = |f: f64| samples[((samples.len() as f64 * f) as usize).min(samples.len() - 1)];
    eprintln!(
        "learned decision ({backend}): p50 {:?} p99 {:?} max {:?} over {} decisions",
        q(0.5),
        q(0.99),
        samples[samples.len() - 1],
        samples.len()
    );

    // Real prompts of every length: RouteLLM's MMLU and GSM8K prompts (from ../shared), each
    // decided twice (the second pass with warm per-thread tokenizer caches).
    let prompts = routellm_prompts();
    if prompts.is_empty() {
        eprintln!(
            "learned decision ({backend}), RouteLLM prompts: skipped (../shared/datasets/routellm not found)"
        );
        return;
    }
    for pass in ["first", "second"] {
        let mut short = Vec::new();
        let mut long = Vec::new();
        for prompt in &prompts {
            let took = time_decision(&engine, &state, prompt);
            if prompt.len() <= 1024 {
                short.push(took)
            } else {
                long.push(took)
            }
        }
        let mut all: Vec<Duration> = short.iter().chain(&long).copied().collect();
        for (what, v) in [
            ("all", &mut all),
            ("<= 1 KiB", &mut short),
            ("> 1 KiB", &mut long),
        ] {
            v.sort();
            let q = |f: f64| v[((v.len() as f64 * f) as usize).min(v.len() - 1)];
            eprintln!(
                "learned decision ({backend}), RouteLLM prompts {what}, {pass} pass: p50 {:?} p90 {:?} p99 {:?} max {:?} over {}",
                q(0.5),
                q(0.9),
                q(0.99),
                v[v.len() - 1],
                v.len()
            );
        }
    }
}

/// Wall time of one decision of `prompt` (wire request to decision).
fn time_decision(engine: &DecisionEngine, state: &RuntimeState<'_>, prompt: &str) -> Duration {
    let req = proto::RouteRequest {
        tenant_id: "acme".into(),
        prompt: Some(Prompt::Text(prompt.to_string())),
        ..Default::default()
    };
    let started = Instant::now();
    let input = route_input(req, engine).expect("valid");
    let d = engine
        .decide(&input, state, chrono::Utc::now(), Instant::now())
        .expect("decides");
    let took = started.elapsed();
    black_box(d);
    took
}

/// Every GSM8K prompt and every fourth MMLU prompt of RouteLLM's logs in ../shared (empty when
/// the data is not there).
fn routellm_prompts() -> Vec<String> {
    let root = Path::new("../shared/datasets/routellm");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("mmlu"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "csv"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = Vec::new();
    for (i, f) in files
        .iter()
        .chain([&root.join("gsm8k/gsm8k_responses.csv")])
        .enumerate()
    {
        let Ok(mut r) = csv::Reader::from_path(f) else {
            continue;
        };
        let gsm8k = i == files.len();
        for (k, rec) in r.records().filter_map(Result::ok).enumerate() {
            if gsm8k || k % 4 == 0 {
                out.extend(rec.get(0).map(str::to_string));
            }
        }
    }
    out
}

/// The featurizer of the default bundle: token ids through the exact ASCII fast path against
/// the `tokenizers` pipeline it replaces, and the whole feature vector (fast path).
fn bench_featurize(c: &mut Criterion) {
    let featurizer = signalbox_features::Featurizer::load(Path::new("models/routellm-mmlu"))
        .expect("default bundle loads");
    let mut out = vec![0.0f32; featurizer.dim()];
    let mut group = c.benchmark_group("featurize");
    group.measurement_time(Duration::from_secs(3));
    for (name, prompt) in CASES {
        group.bench_function(format!("{name}/token_ids_fast"), |b| {
            b.iter(|| black_box(featurizer.token_ids(black_box(prompt)).expect("ids")))
        });
        group.bench_function(format!("{name}/token_ids_tokenizers"), |b| {
            b.iter(|| {
                black_box(
                    featurizer
                        .reference_token_ids(black_box(prompt))
                        .expect("ids"),
                )
            })
        });
        group.bench_function(format!("{name}/features"), |b| {
            b.iter(|| {
                featurizer
                    .featurize_into(black_box(prompt), Some("college_physics"), &mut out)
                    .expect("features");
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// One ONNX inference of the default bundle's classifier on a featurized prompt, on the backend
/// in `SIGNALBOX_BENCH_BACKEND` (see `bench_learned`).
fn bench_score(c: &mut Criterion) {
    let backend = match std::env::var("SIGNALBOX_BENCH_BACKEND").as_deref() {
        Ok("onnxruntime") => signalbox::inference::Backend::OnnxRuntime {
            library: signalbox::inference::find_onnxruntime().expect("ONNX Runtime library"),
        },
        _ => signalbox::inference::Backend::Tract,
    };
    signalbox::inference::init_backend(&backend).expect("backend");
    let dir = Path::new("models/routellm-mmlu");
    let featurizer = signalbox_features::Featurizer::load(dir).expect("default bundle loads");
    let scorer = signalbox::inference::Scorer::load(&dir.join("model.onnx"), 1).expect("model");
    let x = featurizer.featurize(CASES[1].1, None).expect("features");
    let mut out = vec![0.0f32; scorer.output_dim()];
    c.bench_function(&format!("score/{}", backend.name()), |b| {
        b.iter(|| {
            scorer.score(black_box(&x), &mut out).expect("score");
            black_box(&out);
        })
    });
}

/// Adversarial 256 KiB prompts (the example policy's `server.max_prompt_bytes`) through the
/// in-process rules path (as `route_in_process`): the PII detectors and the classifier must stay
/// linear in the prompt size. Each shape is also decided at 64 KiB, so the ratio (4 when linear)
/// is in the same report; `tests/fuzz_props.rs` checks the ratio in a debug build.
///
/// cargo bench --bench decide -- adversarial_256k
fn bench_adversarial(c: &mut Criterion) {
    const SHAPES: &[(&str, &str)] = &[
        // Card-, phone-, IBAN- and SSN-like digit groups with every separator.
        ("digits_separators", "4111 1111-1111.1111 (415) 555-0132 +4"),
        ("digit_run", "1"),
        // Real e-mail matches, and long and short ones alternating (overlap resolution).
        ("emails", "jane.doe@example.com "),
        ("emails_mixed_length", "aaaaaaaaaaaaaaaaaaaa@bb.cc x@bb.cc "),
        ("at_dots", "@."),
        ("password_assign", "password="),
        ("a_run", "a"),
        (
            "mixed_script",
            "Zahl 12 число 34 数字 56 رقم 78 ε=mc² e\u{301} 👩🏽 \u{200b}",
        ),
    ];
    let text = std::fs::read_to_string("config/signalbox.toml").expect("run from the repo root");
    let text = text
        .find("\n[learned]")
        .map_or(text.clone(), |at| text[..at].to_string());
    let policy = Policy::from_toml(
        &text,
        Path::new("config/signalbox.toml"),
        Path::new("config"),
    )
    .expect("example policy is valid");
    let engine = DecisionEngine::new(policy).expect("engine builds");
    let limit = engine.policy().server.max_prompt_bytes;
    let budgets = BudgetLedger::new();
    let circuits = CircuitBreakers::new();
    let state = RuntimeState {
        budgets: &budgets,
        circuits: &circuits,
    };
    let mut group = c.benchmark_group("adversarial_256k");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (name, unit) in SHAPES {
        for (size, bytes) in [("64KiB", 64 * 1024), ("256KiB", 256 * 1024)] {
            let bytes: usize = std::cmp::min(bytes, limit);
            let mut prompt = unit.repeat(bytes / unit.len() + 1);
            let mut end = bytes;
            while !prompt.is_char_boundary(end) {
                end -= 1;
            }
            prompt.truncate(end);
            let req = proto::RouteRequest {
                tenant_id: "acme".into(),
                user_id: "alice".into(),
                prompt: Some(Prompt::Text(prompt)),
                ..Default::default()
            };
            group.bench_function(format!("{name}/{size}"), |b| {
                b.iter(|| {
                    let started = Instant::now();
                    let input = route_input(black_box(req.clone()), &engine).expect("valid");
                    let d = engine
                        .decide(&input, &state, chrono::Utc::now(), Instant::now())
                        .expect("decides");
                    black_box(decision_response(
                        String::new(),
                        input.request_id,
                        &d,
                        engine.policy(),
                        started.elapsed(),
                    ))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    bench,
    bench_featurize,
    bench_score,
    bench_learned,
    bench_adversarial
);
criterion_main!(benches);
