//! The learned router inside the real server (tract backend, process-global): learned primary
//! with the rules as shadow, rules primary with the learned router as shadow, and hot reload
//! that rejects a truncated model and a bundle naming an unknown model while the old state
//! keeps serving.
//!
//! The bundle is built here: a tokenizer trained on a few prompts, a flat IDF table, and an ONNX
//! model `P(acceptable) = Sigmoid(features · W + b)` whose weak-model column falls with the
//! share of digits in the prompt, so number-heavy prompts go to the strong model.

mod common;

use std::path::Path;

use common::onnx::{Dim, linear_sigmoid};
use common::*;
use signalbox::proto::{self, admin_client::AdminClient};
use signalbox_features::{
    BundleManifest, FeatureConfig, MANIFEST_VERSION, MetaFeature, ModelEntry, OnnxSpec,
    QualityTarget, TrainingInfo,
};

const WEAK: &str = "mistralai/Mixtral-8x7B-Instruct-v0.1";
const STRONG: &str = "gpt-4-1106-preview";
const HASH_BITS: u32 = 6;

/// Write a complete bundle for `models` (weak first) into `dir`.
fn write_bundle(dir: &Path, name: &str, models: [&str; 2]) {
    write_bundle_with_costs(dir, name, models, [1.0, 10.0]);
}

/// [`write_bundle`] with the manifest's relative costs of the two models.
fn write_bundle_with_costs(dir: &Path, name: &str, models: [&str; 2], costs: [f64; 2]) {
    write_bundle_full(dir, name, models, costs, &[]);
}

/// [`write_bundle_with_costs`] with task columns: `(task, weight of the weak model's logit)`,
/// sorted by task.
fn write_bundle_full(
    dir: &Path,
    name: &str,
    models: [&str; 2],
    costs: [f64; 2],
    tasks: &[(&str, f32)],
) {
    std::fs::create_dir_all(dir).unwrap();
    let prompts = [
        "What is the capital of Australia?",
        "Solve 12 * 17 + 3 = ? and 45 / 9 = ?",
        "Write a haiku about the sea.",
        "Janet has 16 eggs, eats 3 and bakes with 4. She sells the rest for $2.",
    ];
    let tokenizer =
        signalbox_features::vocab::train_tokenizer(prompts.iter().copied(), 200, 4096).unwrap();
    tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
    let meta = MetaFeature::ALL.to_vec();
    let hash_dim = 1usize << HASH_BITS;
    let dim = hash_dim + meta.len() + tasks.len();
    std::fs::write(
        dir.join("idf.json"),
        serde_json::to_string(&vec![1.0f32; hash_dim]).unwrap(),
    )
    .unwrap();
    // Column 0 (weak): 2 - 8·digit_share; column 1 (strong): 2.
    let digit = hash_dim
        + meta
            .iter()
            .position(|m| *m == MetaFeature::DigitShare)
            .unwrap();
    let mut w = vec![0.0f32; dim * 2];
    w[digit * 2] = -8.0;
    for (i, (_, weight)) in tasks.iter().enumerate() {
        w[(hash_dim + meta.len() + i) * 2] = *weight;
    }
    let model = linear_sigmoid(&w, &[2.0, 2.0], dim, Dim::Symbolic("batch"), "p_acceptable");
    std::fs::write(dir.join("model.onnx"), model).unwrap();
    let manifest = BundleManifest {
        version: MANIFEST_VERSION,
        name: name.into(),
        created_at: "2026-11-22T00:00:00Z".into(),
        models: vec![
            ModelEntry {
                id: models[0].into(),
                cost: costs[0],
            },
            ModelEntry {
                id: models[1].into(),
                cost: costs[1],
            },
        ],
        quality_threshold: 0.5,
        features: FeatureConfig {
            kind: "hashed_tfidf_v1".into(),
            tokenizer_file: "tokenizer.json".into(),
            idf_file: "idf.json".into(),
            hash_bits: HASH_BITS,
            ngram_max: 2,
            max_prompt_bytes: 4096,
            max_tokens: 512,
            sublinear_tf: true,
            meta,
            tasks: tasks.iter().map(|(t, _)| t.to_string()).collect(),
            columns: None,
            dim,
        },
        onnx: OnnxSpec {
            file: "model.onnx".into(),
            opset: 13,
            ir_version: 8,
            input_name: "features".into(),
            output_name: "p_acceptable".into(),
            input_shape: vec!["batch".into(), dim.to_string()],
            output_shape: vec!["batch".into(), "2".into()],
        },
        routing_rule: "cheapest_within_margin_v1".into(),
        quality_targets: [(0.9, 0.1), (0.95, 0.05), (1.0, 0.0)]
            .iter()
            .map(|&(target, margin)| QualityTarget {
                target,
                margin,
                achieved_quality_ratio: target,
                cost_ratio: 0.5,
            })
            .collect(),
        quality_targets_prompt_only: Vec::new(),
        training: TrainingInfo {
            data_sha256: format!("{:0>64}", name.len()),
            data_sources: vec!["tests/learned.rs".into()],
            train_prompts: prompts.len(),
            test_prompts: 0,
            split: "none".into(),
            calibration_split: "none".into(),
            classifier: "hand-set weights".into(),
            l2_alpha: 0.0,
            tokenizer_vocab_size: 200,
            selection: None,
            signalbox_train_version: "test".into(),
        },
        metrics: Default::default(),
    };
    manifest.save(dir).unwrap();
}

fn policy_text(log_dir: &Path, bundle: &Path, mode: &str) -> String {
    format!(
        "{}\n[learned]\nmode = \"{mode}\"\nbundle = {:?}\nbackend = \"tract\"\nsessions = 2\nwatch_secs = 0\n",
        example_policy_text(log_dir),
        bundle.display().to_string()
    )
}

#[tokio::test]
async fn learned_router_serves_with_rules_shadow_and_reload_swaps_or_rejects_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let bundle_a = tmp.path().join("bundle-a");
    write_bundle(&bundle_a, "tiny-a", [WEAK, STRONG]);
    let config = tmp.path().join("policy.toml");
    std::fs::write(&config, policy_text(&log_dir, &bundle_a, "learned_primary")).unwrap();
    let policy = signalbox::config::Policy::load(&config).unwrap();
    let server =
        signalbox::server::start_from_file(policy, config.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let url = format!("http://{}", server.local_addr());
    let mut client = signalbox::proto::router_client::RouterClient::connect(url.clone())
        .await
        .unwrap();
    let mut admin = AdminClient::connect(url).await.unwrap();

    // Plain text: both predicted equally good → the cheaper (weak) model.
    let d = client
        .route(text_request("acme", "Tell me about the history of Rome."))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        d.router,
        proto::RouterKind::Learned as i32,
        "{:?}",
        d.reasons
    );
    assert_eq!(primary_id(&d), WEAK);
    assert!(
        d.model_version.starts_with("tiny-a@"),
        "{}",
        d.model_version
    );
    assert_eq!(d.predicted_quality.len(), 2);
    assert!((d.predicted_quality[STRONG] - 0.8808).abs() < 1e-3);
    assert_eq!(d.quality_target, Some(0.95));
    assert_eq!(d.quality_margin, Some(0.05));
    let shadow = d.shadow.as_ref().expect("rules shadow");
    assert_eq!(shadow.router, proto::RouterKind::Rules as i32);
    assert_eq!(
        shadow.primary.as_ref().unwrap().model_id,
        WEAK,
        "default rule"
    );
    assert!(shadow.agrees);
    assert!(policy_ids(&d).contains(&"learned.route"));

    // Digit-heavy text: the weak model's prediction drops → the strong model.
    let d = client
        .route(text_request(
            "acme",
            "Compute 1234 * 5678 - 9012 / 34 + 567 = ?",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(primary_id(&d), STRONG, "{:?}", d.reasons);
    assert!(d.predicted_quality[WEAK] < 0.7);

    // Policy filters come first: PII keeps it off the hosted strong model whatever the model says.
    let d = client
        .route(text_request(
            "acme",
            "Compute 1234 * 5678 for jane@example.com",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(primary_id(&d), WEAK);
    assert_eq!(d.effective_data_class, proto::DataClass::Pii as i32);

    // A truncated model is rejected; the old bundle keeps serving.
    let bundle_b = tmp.path().join("bundle-b");
    write_bundle(&bundle_b, "tiny-b", [WEAK, STRONG]);
    let onnx = std::fs::read(bundle_b.join("model.onnx")).unwrap();
    std::fs::write(bundle_b.join("model.onnx"), &onnx[..onnx.len() / 2]).unwrap();
    std::fs::write(&config, policy_text(&log_dir, &bundle_b, "learned_primary")).unwrap();
    let err = admin.reload(proto::ReloadRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("bundle-b"), "{}", err.message());
    let d = client
        .route(text_request("acme", "Tell me about Rome."))
        .await
        .unwrap()
        .into_inner();
    assert!(d.model_version.starts_with("tiny-a@"));

    // A bundle naming a model the catalog does not have is rejected too.
    let bundle_c = tmp.path().join("bundle-c");
    write_bundle(&bundle_c, "tiny-c", [WEAK, "gpt-7-ultra"]);
    std::fs::write(&config, policy_text(&log_dir, &bundle_c, "learned_primary")).unwrap();
    let err = admin.reload(proto::ReloadRequest {}).await.unwrap_err();
    assert!(err.message().contains("gpt-7-ultra"), "{}", err.message());

    // A valid new bundle in rules_primary mode: swapped as one unit, learned becomes the shadow.
    let bundle_d = tmp.path().join("bundle-d");
    write_bundle(&bundle_d, "tiny-d", [WEAK, STRONG]);
    std::fs::write(&config, policy_text(&log_dir, &bundle_d, "rules_primary")).unwrap();
    let reply = admin
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(reply.model_version.starts_with("tiny-d@"));
    assert_eq!(reply.router_mode, "rules_primary");
    let d = client
        .route(text_request(
            "acme",
            "Compute 1234 * 5678 - 9012 / 34 + 567 = ?",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.router, proto::RouterKind::Rules as i32);
    assert!(d.model_version.starts_with("tiny-d@"));
    let shadow = d.shadow.as_ref().unwrap();
    assert_eq!(shadow.router, proto::RouterKind::Learned as i32);
    assert_eq!(shadow.primary.as_ref().unwrap().model_id, STRONG);

    let stats = admin
        .stats(proto::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.reloads, stats.failed_reloads), (1, 2));
    assert_eq!(stats.with_shadow, 5);
    assert!(
        stats
            .decisions
            .iter()
            .any(|c| c.router == proto::RouterKind::Learned as i32 && c.model_id == STRONG)
    );

    server.shutdown().await.unwrap();
    // Both routers' decisions are in the log, for the training CLI's shadow report.
    let decisions = read_log(&log_dir, "decisions");
    assert_eq!(decisions.len(), 5);
    assert_eq!(decisions[0]["router"], "learned");
    assert_eq!(decisions[0]["shadow"]["router"], "rules");
    assert_eq!(decisions[0]["shadow"]["agrees"], true);
    let weak = decisions[1]["predicted_quality"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == WEAK)
        .and_then(|m| m["p"].as_f64())
        .unwrap();
    assert!(weak < 0.7, "{}", decisions[1]["predicted_quality"]);
    assert_eq!(decisions[4]["router"], "rules");
    assert_eq!(decisions[4]["shadow"]["router"], "learned");
}

/// A category the bundle has a task column for moves the prediction by that column's weight;
/// an unknown one is ignored; without a category the task (here the hint) is used; the
/// category is validated and logged.
#[tokio::test]
async fn a_category_the_bundle_knows_shifts_the_prediction_and_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let bundle = tmp.path().join("bundle");
    let tasks = [("summarization", -8.0), ("tax_forms", -8.0)];
    write_bundle_full(&bundle, "tasks", [WEAK, STRONG], [1.0, 10.0], &tasks);
    let config = tmp.path().join("policy.toml");
    std::fs::write(&config, policy_text(&log_dir, &bundle, "learned_primary")).unwrap();
    let policy = signalbox::config::Policy::load(&config).unwrap();
    let server = signalbox::server::start_from_file(policy, config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut client = signalbox::proto::router_client::RouterClient::connect(format!(
        "http://{}",
        server.local_addr()
    ))
    .await
    .unwrap();
    let text = "Tell me about the history of Rome.";
    let ask = |category: &str, hint: proto::TaskType| proto::RouteRequest {
        category: category.into(),
        task_hint: hint as i32,
        ..text_request("acme", text)
    };
    let cases = [
        ("", proto::TaskType::Unspecified, WEAK),
        ("tax_forms", proto::TaskType::Unspecified, STRONG),
        ("history", proto::TaskType::Unspecified, WEAK),
        ("", proto::TaskType::Summarization, STRONG),
        ("history", proto::TaskType::Summarization, WEAK),
    ];
    for (category, hint, want) in cases {
        let d = client
            .route(ask(category, hint))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            primary_id(&d),
            want,
            "{category:?} {hint:?}: {:?}",
            d.reasons
        );
        let weak = d.predicted_quality[WEAK];
        if want == STRONG {
            assert!(weak < 0.01, "{weak}");
        } else {
            assert!((weak - 0.8808).abs() < 1e-3, "{weak}");
        }
    }
    // Each refused category: INVALID_ARGUMENT, and the message starts with `want`.
    let cases: Vec<(String, &str)> = [
        ("tax forms", "category: character ' '"),
        ("jane@example.com", "category: character '@'"),
        (&"x".repeat(65), "category: longer than 64 bytes"),
        // Identifiers the character set lets through are caught by the PII detectors, and the
        // message names what was found.
        (
            "078-05-1120",
            "category: looks like personal data or a secret (national_id)",
        ),
        (
            "4111-1111-1111-1111",
            "category: looks like personal data or a secret (card_number)",
        ),
        (
            "415-555-0132",
            "category: looks like personal data or a secret (phone)",
        ),
        (
            "AKIAIOSFODNN7EXAMPLE",
            "category: looks like personal data or a secret (secret)",
        ),
        // A long number is refused whatever its checksum: ids are not labels.
        ("4111111111111111", "category: holds a 16-digit number"),
        (
            "order/6011000990139424",
            "category: holds a 16-digit number",
        ),
        (
            "order/6011000990139425",
            "category: holds a 16-digit number",
        ),
        ("ts:1733100000000", "category: holds a 13-digit number"),
    ]
    .into_iter()
    .map(|(bad, want)| (bad.to_string(), want))
    .collect();
    for (bad, want) in &cases {
        let err = client
            .route(ask(bad, proto::TaskType::Unspecified))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
        assert!(
            err.message().starts_with(want),
            "{bad:?}: {}",
            err.message()
        );
    }
    // Keyword-anchored detectors do not run on a label.
    for fine in [
        "2024-06-01",
        "v1.2.3",
        "billing/refunds",
        "auth:password:reset-2fa",
        "secret:santa/2024",
        "order/60110009",
    ] {
        client
            .route(ask(fine, proto::TaskType::Unspecified))
            .await
            .unwrap_or_else(|e| panic!("{fine:?}: {e}"));
    }
    server.shutdown().await.unwrap();
    let decisions = read_log(&log_dir, "decisions");
    let logged: Vec<Option<&str>> = decisions.iter().map(|d| d["category"].as_str()).collect();
    assert_eq!(
        logged,
        [
            None,
            Some("tax_forms"),
            Some("history"),
            None,
            Some("history"),
            Some("2024-06-01"),
            Some("v1.2.3"),
            Some("billing/refunds"),
            Some("auth:password:reset-2fa"),
            Some("secret:santa/2024"),
            Some("order/60110009"),
        ]
    );
}

fn cascade_ids(d: &proto::RouteDecision) -> Vec<&str> {
    d.cascade
        .as_ref()
        .map(|c| {
            c.steps
                .iter()
                .map(|s| s.target.as_ref().unwrap().model_id.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// The cascade follows the predictions: a batch request whose cheap model is predicted just
/// below the bar starts on it and escalates; one whose cheap model is predicted far below goes
/// straight to the strong model (the rules' cascade would start cheap for both). Interactive
/// requests get no cascade (the example policy's `[cascade]`).
#[tokio::test]
async fn learned_cascade_escalates_only_when_the_cheap_model_is_near_the_bar() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    write_bundle(&bundle, "tiny", [WEAK, STRONG]);
    let policy = policy_from(
        &policy_text(&tmp.path().join("log"), &bundle, "learned_primary"),
        tmp.path(),
    );
    let (server, mut client) = start_with(policy).await;
    let batch = |prompt: &str| proto::RouteRequest {
        mode: proto::Mode::Batch as i32,
        ..text_request("acme", prompt)
    };
    // 4 digits in 40 bytes: P(weak) = sigmoid(2 - 8 * 0.1) = 0.769; P(strong) = 0.881.
    // Target 0.95 → margin 0.05: the bar is 0.831, so the strong model serves; the cascade band
    // (0.1) reaches down to 0.731, so the weak model is tried first.
    let near = "Please add the numbers 12 and 34 for me.";
    let d = client.route(batch(near)).await.unwrap().into_inner();
    assert_eq!(primary_id(&d), STRONG, "{:?}", d.reasons);
    assert!((d.predicted_quality[WEAK] - 0.7685).abs() < 1e-3);
    assert_eq!(cascade_ids(&d), [WEAK, STRONG]);
    let steps = &d.cascade.as_ref().unwrap().steps;
    assert!(!steps[0].escalate_on.is_empty());
    assert!(steps[1].escalate_on.is_empty());
    assert!(policy_ids(&d).contains(&"cascade.batch"));
    // The rules shadow would have cascaded too (it has no predictions to stop it).
    assert_eq!(
        d.shadow.as_ref().unwrap().router,
        proto::RouterKind::Rules as i32
    );

    // Digit-heavy: P(weak) far below the bar: no cascade, straight to the strong model.
    let far = "Compute 1234 * 5678 - 9012 / 34 + 567 = ?";
    let d = client.route(batch(far)).await.unwrap().into_inner();
    assert_eq!(primary_id(&d), STRONG);
    assert!(d.predicted_quality[WEAK] < 0.5);
    assert_eq!(cascade_ids(&d), Vec::<&str>::new(), "{:?}", d.reasons);

    // Near the bar but interactive: the policy allows no interactive cascade.
    let d = client
        .route(text_request("acme", near))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(primary_id(&d), STRONG);
    assert_eq!(cascade_ids(&d), Vec::<&str>::new());
    server.shutdown().await.unwrap();
}

/// The bundle's margins were calibrated with its own cost order; a catalog that prices the two
/// models the other way round would invert every decision, so such a bundle is refused.
#[test]
fn bundle_whose_cost_order_contradicts_the_catalog_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    write_bundle_with_costs(&bundle, "swapped", [WEAK, STRONG], [10.0, 1.0]);
    let policy = policy_from(
        &policy_text(&tmp.path().join("log"), &bundle, "learned_primary"),
        tmp.path(),
    );
    let err = match signalbox::engine::DecisionEngine::new(policy) {
        Ok(_) => panic!("a bundle with the catalog's cost order reversed was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("calibrated with"), "{err}");
    assert!(err.contains(WEAK) && err.contains(STRONG), "{err}");
}

/// A file cut before `[learned]` (what a non-atomic save leaves for a moment) is a valid
/// rules-only policy: with `learned.required` a reload of it is refused and the learned router
/// keeps serving; a whole file reloads.
#[tokio::test]
async fn a_reload_that_would_drop_a_required_learned_router_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let bundle = tmp.path().join("bundle");
    write_bundle(&bundle, "tiny-a", [WEAK, STRONG]);
    let config = tmp.path().join("policy.toml");
    let whole = format!(
        "{}required = true\n",
        policy_text(&log_dir, &bundle, "learned_primary")
    );
    std::fs::write(&config, &whole).unwrap();
    let policy = signalbox::config::Policy::load(&config).unwrap();
    let server =
        signalbox::server::start_from_file(policy, config.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let url = format!("http://{}", server.local_addr());
    let mut client = signalbox::proto::router_client::RouterClient::connect(url.clone())
        .await
        .unwrap();
    let mut admin = AdminClient::connect(url).await.unwrap();

    let cut = &whole[..whole.find("\n[learned]").unwrap()];
    std::fs::write(&config, cut).unwrap();
    let err = admin.reload(proto::ReloadRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("learned.required"),
        "{}",
        err.message()
    );
    let d = client
        .route(text_request("acme", "Tell me about Rome."))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.router, proto::RouterKind::Learned as i32);

    std::fs::write(&config, &whole).unwrap();
    let reply = admin
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.router_mode, "learned_primary");
    server.shutdown().await.unwrap();
}
