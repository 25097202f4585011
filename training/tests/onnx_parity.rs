//! End to end on a slice of the real RouteLLM MMLU logs: ingest -> featurize -> fit ->
//! bundle; then (1) the exported ONNX file passes the `onnx` checker, (2) ONNX Runtime
//! gives the in-Rust model's scores to 1e-5 on the whole test split, (3) the featurizer
//! loaded from the bundle (as the service loads it) reproduces training features exactly.
//!
//! Needs python3 with `onnx` and `onnxruntime==1.31.1` (or ORT_DYLIB_PATH). Without them
//! the ONNX checks are skipped unless the CI environment variable is set (then they fail).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use signalbox_features::{BundleManifest, Featurizer};
use signalbox_train::featurize::FeatureSettings;
use signalbox_train::ingest::routellm::ingest_csv;
use signalbox_train::ingest::{BadRowPolicy, IngestReport};
use signalbox_train::pipeline::{DataArgs, Experiment, ModelArgs, run_experiment};
use signalbox_train::table::TableWriter;

const SUBJECTS: [&str; 4] = [
    "anatomy",
    "college_physics",
    "marketing",
    "high_school_mathematics",
];

const SUBJECTS_SORTED: [&str; 4] = [
    "anatomy",
    "college_physics",
    "high_school_mathematics",
    "marketing",
];

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

fn model_args() -> ModelArgs {
    ModelArgs {
        strong: Some("gpt-4-1106-preview".into()),
        weak: Some("mistralai/Mixtral-8x7B-Instruct-v0.1".into()),
        max_fit_features: 512,
        features: FeatureSettings {
            hash_bits: 10,
            ngram_max: 2,
            max_prompt_bytes: 1024,
            max_tokens: 256,
            vocab_size: 2000,
            no_meta: false,
            linear_tf: false,
            no_tasks: false,
            min_task_prompts: 20,
            max_tasks: 1024,
            min_df: 2,
        },
        ..ModelArgs::defaults().unwrap()
    }
}

fn train_small(dir: &Path) -> (Experiment, PathBuf) {
    let table = dir.join("mmlu4.parquet");
    let mut w = TableWriter::create(&table).unwrap();
    let mut rep = IngestReport::default();
    for s in SUBJECTS {
        let csv = common::routellm().join(format!("mmlu/mmlu_{s}.csv"));
        ingest_csv(
            &csv,
            Some(s),
            "routellm/mmlu",
            &HashSet::new(),
            &mut w,
            &mut rep,
            BadRowPolicy::Fail,
        )
        .unwrap();
    }
    w.finish().unwrap();
    let data = DataArgs {
        table: Some(table),
        train: None,
        test: None,
        seed: 7,
        test_fraction: 0.3,
    };
    let margs = model_args();
    let exp = run_experiment(&data, &margs, "parity").unwrap();
    let bundle = dir.join("bundle");
    signalbox_train::bundle::write(&bundle, "parity", &exp).unwrap();
    (exp, bundle)
}

/// Whether input column `col` of the bundle (over the `used` training columns) has a
/// non-zero weight for some model.
fn back_weights_nonzero(exp: &Experiment, used: &[usize], col: usize) -> bool {
    exp.model.weights.iter().any(|w| w[used[col]] != 0.0)
}

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success())
}

fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime,os;print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi");
    std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so.1"))
        })
        .max()
}

#[test]
fn bundle_onnx_is_valid_matches_ort_and_featurizer_reloads_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (exp, bundle) = train_small(dir.path());
    let manifest = BundleManifest::load(&bundle).unwrap();
    assert_eq!(manifest.models.len(), 2);
    assert_eq!(manifest.onnx.opset, 13);

    // Training keeps the --max-fit-features (here 512) most frequent of the 2^10 buckets plus
    // the 7 meta features and the 4 subjects' task columns; the bundle keeps those the
    // classifier gives a weight.
    let train_config = exp.featurizer.config();
    assert_eq!(train_config.tasks, SUBJECTS_SORTED);
    assert_eq!(train_config.full_dim(), 1024 + 7 + 4);
    let columns_of = |c: &signalbox_features::FeatureConfig| -> Vec<usize> {
        let cols = c.columns.as_ref().expect("a column selection");
        cols.iter().map(|&c| c as usize).collect()
    };
    let train_columns = columns_of(train_config);
    assert!(
        train_columns.len() <= 512 + 7 + 4,
        "{}",
        train_columns.len()
    );
    assert_eq!(exp.featurizer.dim(), train_columns.len());
    let used = exp.model.used_columns();
    let columns = columns_of(&manifest.features);
    let expected: Vec<usize> = used.iter().map(|&j| train_columns[j]).collect();
    assert_eq!(columns, expected);

    // Featurizer parity: the service's load path gives bit-identical features (the used
    // columns of the training features).
    let served = Featurizer::load(&bundle).unwrap();
    let dim = served.dim();
    assert_eq!(dim, used.len());
    let mut served_rows = Vec::with_capacity(exp.test.len() * dim);
    for (i, p) in exp.test.prompts.iter().enumerate() {
        let f = served.featurize(p, exp.test.tasks[i].as_deref()).unwrap();
        let row = exp.test_features.dense_row(i);
        let selected: Vec<f32> = used.iter().map(|&j| row[j]).collect();
        assert_eq!(f, selected, "prompt {i}");
        // Nothing the classifier weights is lost.
        for (j, &v) in row.iter().enumerate() {
            assert!(v == 0.0 || used.contains(&j) || exp.model.weights.iter().all(|w| w[j] == 0.0));
        }
        served_rows.extend(f);
    }
    // Each subject's task column carries its second-stage offsets, and the same router scored
    // on the prompts alone is reported beside it.
    for t in SUBJECTS {
        let col = served
            .task_input_column(t)
            .expect("a column for every subject");
        assert!(
            back_weights_nonzero(&exp, &used, col),
            "task {t} has no weight"
        );
    }
    let names: Vec<&str> = exp.report.routers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..2], ["learned", "learned-prompt-only"]);
    // The prompt-only predictions (taken from the test features with the task columns read
    // as 0) are those of the test prompts featurized without their tasks.
    let prompts: Vec<&str> = exp.test.prompts.iter().map(String::as_str).collect();
    let hidden = indicatif::ProgressBar::hidden();
    let untasked =
        signalbox_train::featurize::featurize_all(&exp.featurizer, &prompts, &[], &hidden).unwrap();
    assert_ne!(untasked, exp.test_features);
    assert_eq!(
        exp.prompt_only_probs.as_ref(),
        Some(&exp.model.predict_sparse(&untasked))
    );

    // ONNX round trip through our own reader equals the trained weights of those columns
    // (as f32).
    let back = signalbox_train::onnx::read(&bundle.join("model.onnx")).unwrap();
    assert_eq!(back.models, exp.model.models);
    assert_eq!(back.dim, dim);
    for (a, b) in back
        .weights
        .iter()
        .flatten()
        .zip(exp.model.select(&used).weights.iter().flatten())
    {
        assert_eq!(*a, f64::from(*b as f32));
    }

    // ONNX checker.
    let model_path = bundle.join("model.onnx");
    if python_has("onnx") {
        let status = Command::new("python3")
            .args([
                "-c",
                "import onnx,sys; m=onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print('onnx checker ok, opset', m.opset_import[0].version)",
            ])
            .arg(&model_path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "onnx.checker rejected {}",
            model_path.display()
        );
    } else {
        assert!(!in_ci(), "CI must have the python package onnx");
        eprintln!("SKIPPED onnx checker: python package onnx not installed");
    }

    // ONNX Runtime parity on the whole test split.
    let Some(lib) = ort_library() else {
        assert!(!in_ci(), "CI must have onnxruntime (pip) or ORT_DYLIB_PATH");
        eprintln!("SKIPPED ONNX Runtime parity: no onnxruntime library found");
        return;
    };
    // Through the service's own inference path (ort's API is process-global: the service's
    // loader installs ONNX Runtime, `Scorer` runs it).
    signalbox::inference::init_backend(&signalbox::inference::Backend::OnnxRuntime {
        library: lib,
    })
    .unwrap();
    let scorer = signalbox::inference::Scorer::load(&model_path, 1).unwrap();
    let n = exp.test.len();
    assert_eq!((scorer.input_dim(), scorer.output_dim()), (dim, 2));
    let scores = scorer.score_batch(&served_rows, n).unwrap();
    assert_eq!(scores.len(), n * 2);
    let mut max_diff = 0.0f64;
    for (i, row) in exp.probs.iter().enumerate() {
        for (m, &p) in row.iter().enumerate() {
            max_diff = max_diff.max((f64::from(scores[i * 2 + m]) - p).abs());
        }
    }
    eprintln!(
        "ONNX Runtime vs in-Rust model: max |diff| = {max_diff:.2e} over {n} prompts x 2 models"
    );
    assert!(max_diff <= 1e-5, "max diff {max_diff}");
    // The model is not trivial: scores vary across prompts.
    let first = exp.probs[0][0];
    assert!(exp.probs.iter().any(|r| (r[0] - first).abs() > 1e-3));
}
