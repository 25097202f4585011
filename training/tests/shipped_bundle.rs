//! The shipped default bundle: loads with the shared featurizer, and its parity
//! samples (prompt -> P(acceptable) from the in-Rust model at training time) are
//! reproduced by featurizer + exported weights to 1e-5. The service runs the same
//! featurizer with ONNX Runtime on the same file.

mod common;

use signalbox_features::{BundleManifest, Featurizer};
use signalbox_train::bundle::{PARITY_FILE, ParitySample};

/// Every parity sample of the bundle in `dir` is reproduced by its featurizer and exported
/// weights to 1e-5.
fn reproduces_parity_samples(dir: &std::path::Path) {
    let manifest = BundleManifest::load(dir).unwrap();
    let featurizer = Featurizer::load(dir).unwrap();
    let model = signalbox_train::onnx::read(&dir.join(&manifest.onnx.file)).unwrap();
    let text = std::fs::read_to_string(dir.join(PARITY_FILE)).unwrap();
    let samples: Vec<ParitySample> = serde_json::from_str(&text).unwrap();
    assert!(samples.len() >= 8);
    for s in &samples {
        let x = featurizer.featurize(&s.prompt, s.task.as_deref()).unwrap();
        for (a, b) in model.predict_row(&x).iter().zip(&s.p_acceptable) {
            assert!((a - b).abs() <= 1e-5, "{a} vs {b} in {}", dir.display());
        }
    }
}

/// The nine-model bundle served by `config/examples/llmrouter.toml`: its parity samples, the
/// settings chosen by cross-validation recorded in the manifest (the chosen one among the
/// candidates, with the lowest score), margins calibrated without the test split and shrinking
/// as the target rises (what keeps quality_preference monotone), and LLMRouter's price order.
#[test]
fn llmrouter_bundle_records_its_cross_validated_settings() {
    let dir = common::repo().join("models/llmrouter");
    reproduces_parity_samples(&dir);
    let m = BundleManifest::load(&dir).unwrap();
    assert_eq!(m.models.len(), 9);
    let cost = |id: &str| m.models[m.model_index(id).unwrap()].cost;
    assert!(cost("gemma-2-9b-it") < cost("qwen2.5-7b-instruct"));
    assert!(cost("qwen2.5-7b-instruct") < cost("llama-3.1-nemotron-51b-instruct"));
    let sel = m.training.selection.as_ref().expect("cross-validated");
    assert!(sel.folds >= 2 && sel.candidates.len() > 1);
    assert!(sel.candidates.contains(&sel.chosen));
    assert!(sel.candidates.iter().all(|c| c.score >= sel.chosen.score));
    assert!(m.training.calibration_split.contains("out-of-fold"));
    assert!(m.training.classifier.contains("Platt"));
    for targets in [&m.quality_targets, &m.quality_targets_prompt_only] {
        assert_eq!(targets.len(), 9);
        assert!(
            targets.windows(2).all(|w| w[1].margin <= w[0].margin),
            "{targets:?}"
        );
    }
}

#[test]
fn default_bundle_reproduces_its_parity_samples() {
    let dir = common::repo().join("models/routellm-mmlu");
    reproduces_parity_samples(&dir);
    let manifest = BundleManifest::load(&dir).unwrap();
    let ids: Vec<&str> = manifest.models.iter().map(|m| m.id.as_str()).collect();
    assert!(ids.contains(&"gpt-4-1106-preview"));
    assert!(ids.contains(&"mistralai/Mixtral-8x7B-Instruct-v0.1"));
    let featurizer = Featurizer::load(&dir).unwrap();
    let model = signalbox_train::onnx::read(&dir.join(&manifest.onnx.file)).unwrap();
    assert_eq!(
        model.models.iter().map(String::as_str).collect::<Vec<_>>(),
        ids
    );
    let text = std::fs::read_to_string(dir.join(PARITY_FILE)).unwrap();
    let samples: Vec<ParitySample> = serde_json::from_str(&text).unwrap();
    assert!(samples.len() >= 8);
    for s in &samples {
        let x = featurizer.featurize(&s.prompt, s.task.as_deref()).unwrap();
        let p = model.predict_row(&x);
        for (a, b) in p.iter().zip(&s.p_acceptable) {
            assert!(
                (a - b).abs() <= 1e-5,
                "{a} vs {b} for {:?}",
                &s.prompt[..40.min(s.prompt.len())]
            );
        }
    }
    // Every calibrated target routes something sensible.
    let allowed = vec![true; ids.len()];
    let probs = vec![0.7f32, 0.9f32];
    let costs: Vec<f64> = manifest.models.iter().map(|m| m.cost).collect();
    for q in &manifest.quality_targets {
        for task_known in [true, false] {
            let margin = manifest.margin_for_target(q.target, task_known).unwrap();
            assert!(
                signalbox_features::routing::choose(&probs, &costs, &allowed, margin as f32)
                    .is_some()
            );
        }
    }
    // The bundle has task columns, so requests without a known task get their own calibration
    // (of the prompt-only scores), for the same targets.
    assert!(!manifest.features.tasks.is_empty());
    let targets = |q: &[signalbox_features::QualityTarget]| -> Vec<f64> {
        q.iter().map(|t| t.target).collect()
    };
    assert_eq!(
        targets(&manifest.quality_targets_prompt_only),
        targets(&manifest.quality_targets)
    );
}

/// The featurizer's fast tokenizer gives the `tokenizers` pipeline's token ids on every
/// RouteLLM prompt (MMLU and GSM8K) and covers every one without an added token.
#[test]
fn fast_tokenizer_matches_tokenizers_on_every_routellm_prompt() {
    use signalbox_features::featurizer::window;
    use signalbox_train::dataset::Dataset;
    use signalbox_train::ingest::routellm::{Benchmark, ingest_benchmark};
    use signalbox_train::ingest::{BadRowPolicy, IngestReport};
    use signalbox_train::table::TableWriter;

    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("t.parquet");
    let mut writer = TableWriter::create(&table).unwrap();
    let mut report = IngestReport::default();
    for bench in [Benchmark::Mmlu, Benchmark::Gsm8k] {
        ingest_benchmark(
            &common::routellm(),
            bench,
            &mut writer,
            &mut report,
            BadRowPolicy::Skip,
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap();
    }
    writer.finish().unwrap();
    let prompts = Dataset::load(&table).unwrap().prompts;
    assert!(prompts.len() > 14_000, "{} prompts", prompts.len());

    let featurizer = Featurizer::load(&common::repo().join("models/routellm-mmlu")).unwrap();
    let fast = featurizer
        .fast_path()
        .expect("the bundle tokenizer has a fast path");
    let config = featurizer.config();
    let mut covered = 0;
    let with_added_token = prompts.iter().filter(|p| p.contains("[UNK]")).count();
    for p in &prompts {
        let reference = featurizer.reference_token_ids(p).unwrap();
        if let Some(ids) = fast.encode(window(p, config.max_prompt_bytes), config.max_tokens) {
            assert_eq!(ids, reference, "prompt {:?}", &p[..p.len().min(80)]);
            covered += 1;
        }
        assert_eq!(featurizer.token_ids(p).unwrap(), reference);
    }
    assert_eq!(
        covered + with_added_token,
        prompts.len(),
        "the fast path declined prompts without an added token"
    );
}
