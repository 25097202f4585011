//! N-model training and evaluation: hyperparameters chosen by cross-validation on the
//! training split only, per-prompt costs, and the report's N-model figures.

use std::path::{Path, PathBuf};

use signalbox_train::dataset::SplitMix64;
use signalbox_train::pipeline::{DataArgs, ModelArgs, run_experiment};
use signalbox_train::table::{OutcomeRow, TableWriter};

const MODELS: [(&str, f64); 3] = [("small", 0.1), ("medium", 0.3), ("large", 1.0)];
const TOPICS: [&str; 3] = ["algebra", "poetry", "history"];
const WORDS: [&str; 12] = [
    "solve", "equation", "rhyme", "verse", "empire", "war", "integral", "sonnet", "treaty",
    "matrix", "stanza", "dynasty",
];

/// A synthetic outcome table: the small model answers poetry, the medium one poetry and
/// history, the large one everything but a share of history; each answer flips with 10%
/// noise. A call costs price x (characters / 4 + 200) / 1e6.
fn rows(n: usize, seed: u64, source: &str) -> Vec<OutcomeRow> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    for i in 0..n {
        let t = (rng.next_u64() % 3) as usize;
        let topic = TOPICS[t];
        let len = 3 + (rng.next_u64() % 20) as usize;
        let words: Vec<&str> = (0..len)
            .map(|k| {
                if k % 3 == 0 {
                    WORDS[t * 3 + (rng.next_u64() % 3) as usize]
                } else {
                    WORDS[(rng.next_u64() % 12) as usize]
                }
            })
            .collect();
        let prompt = format!("{topic} {} #{i}-{seed}", words.join(" "));
        for (m, &(model, price)) in MODELS.iter().enumerate() {
            let good = match (m, t) {
                (0, 1) => true,
                (0, _) => false,
                (1, 0) => false,
                (1, _) => true,
                (_, 2) => rng.next_f64() < 0.6,
                _ => true,
            };
            let right = good != (rng.next_f64() < 0.1);
            out.push(OutcomeRow {
                prompt_id: format!("{source}:{i}"),
                prompt: Some(prompt.clone()),
                task: Some(topic.to_string()),
                model_id: model.to_string(),
                quality: if right { 1.0 } else { 0.0 },
                cost_usd: Some(price * (prompt.chars().count() as f64 / 4.0 + 200.0) / 1e6),
                latency_ms: None,
                timestamp: None,
                source: source.to_string(),
            });
        }
    }
    out
}

fn write(path: &Path, rows: &[OutcomeRow]) -> PathBuf {
    let mut w = TableWriter::create(path).unwrap();
    for r in rows {
        w.push(r.clone()).unwrap();
    }
    w.finish().unwrap();
    path.to_path_buf()
}

fn args() -> ModelArgs {
    let mut a = ModelArgs::defaults().unwrap();
    a.max_fit_features = 256;
    a.features.vocab_size = 300;
    a.features.hash_bits = 10;
    a.features.min_task_prompts = 5;
    a.cv.cv_folds = 3;
    a.cv.grid_epochs = vec![2, 6];
    a.cv.grid_l1 = vec![0.0, 1.0];
    a.cv.grid_learning_rate = vec![0.1, 0.5];
    a.cv.grid_columns = vec![64, 256];
    a.cv.grid_task_lambda = vec![0.5, 4.0];
    a.cv.platt = true;
    a
}

fn data(train: &Path, test: &Path) -> DataArgs {
    DataArgs {
        table: None,
        train: Some(train.to_path_buf()),
        test: Some(test.to_path_buf()),
        seed: 42,
        test_fraction: 0.3,
    }
}

#[test]
fn cross_validation_chooses_on_the_training_split_alone() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(
        &dir.path().join("train.parquet"),
        &rows(240, 1, "synth/train"),
    );
    let test_rows = rows(90, 2, "synth/test");
    let test = write(&dir.path().join("test.parquet"), &test_rows);
    let a = run_experiment(&data(&train, &test), &args(), "cv").unwrap();
    let sel = a.selection.as_ref().expect("cross-validation ran");
    assert_eq!(sel.candidates.len(), 2 * 2 * 2 * 2 * 2);
    assert_eq!(sel.folds, 3);
    assert!(
        sel.candidates.iter().all(|c| c.fold_scores.len() == 3),
        "{sel:?}"
    );
    // The chosen candidate has the lowest pooled score, and the final model uses it.
    let min = sel
        .candidates
        .iter()
        .map(|c| c.score)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(sel.chosen.score, min);
    let s = sel.chosen.settings;
    assert_eq!(
        (
            a.model_args.epochs,
            a.model_args.l1,
            a.model_args.learning_rate,
            a.model_args.max_fit_features,
            a.model_args.task_lambda
        ),
        (s.epochs, s.l1, s.learning_rate, s.columns, s.task_lambda)
    );
    // Platt scaling was fitted per model on the out-of-fold logits and is in the classifier.
    assert_eq!(a.platt.as_ref().map(Vec::len), Some(3));
    // Not every candidate scores the same: the grid matters on this data.
    assert!(sel.candidates.iter().any(|c| c.score != min), "{sel:?}");
    // The margins were calibrated without the test split, and the report and manifest say so.
    assert!(
        a.calibration_split.contains("out-of-fold"),
        "{}",
        a.calibration_split
    );
    let manifest = signalbox_train::bundle::manifest("cv", &a).unwrap();
    let recorded = manifest
        .training
        .selection
        .as_ref()
        .expect("selection in the manifest");
    assert_eq!(recorded, sel);
    assert_eq!(a.report.selection.as_ref(), Some(recorded));

    // The test split's rows permuted, then its outcomes and costs changed: the choice, the
    // calibrated margins and the fitted weights stay the same.
    let mut permuted = test_rows.clone();
    SplitMix64::new(9).shuffle(&mut permuted);
    let permuted = write(&dir.path().join("permuted.parquet"), &permuted);
    let mut flipped = test_rows.clone();
    for (k, r) in flipped.iter_mut().enumerate() {
        r.quality = 1.0 - r.quality;
        // Test costs in another order: they must not move the choice either.
        r.cost_usd = r.cost_usd.map(|c| c * (1 + k % 7) as f64);
    }
    let flipped = write(&dir.path().join("flipped.parquet"), &flipped);
    for other in [permuted, flipped] {
        let b = run_experiment(&data(&train, &other), &args(), "cv").unwrap();
        assert_eq!(b.selection, a.selection, "{}", other.display());
        assert_eq!(b.targets, a.targets);
        assert_eq!(b.prompt_only_targets, a.prompt_only_targets);
        assert_eq!(b.model, a.model);
        assert_eq!(b.platt, a.platt);
        assert_eq!(b.costs, a.costs);
    }
    // A different fold seed may choose otherwise but is reported as such.
    let mut reseeded = args();
    reseeded.cv.cv_seed = 8;
    let c = run_experiment(&data(&train, &test), &reseeded, "cv").unwrap();
    assert_eq!(c.selection.as_ref().map(|s| s.seed), Some(8));
}

#[test]
fn per_prompt_costs_need_every_models_cost_in_the_same_unit() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = rows(30, 5, "synth/units");
    let path = write(&dir.path().join("all.parquet"), &rows);
    let ds = signalbox_train::dataset::Dataset::load(&path).unwrap();
    let pc = signalbox_train::pipeline::prompt_costs(&ds, &[]).unwrap();
    assert_eq!(pc.len(), 30);
    let large = ds.model_index("large").unwrap();
    assert_eq!(pc[0][large], ds.cost[0][large].unwrap());
    // `--cost` flags, or a model without any cost_usd: the per-model costs count instead.
    assert!(signalbox_train::pipeline::prompt_costs(&ds, &["large=1".into()]).is_none());
    for r in rows.iter_mut().filter(|r| r.model_id == "large") {
        r.cost_usd = None;
    }
    let path = write(&dir.path().join("some.parquet"), &rows);
    let ds = signalbox_train::dataset::Dataset::load(&path).unwrap();
    assert!(signalbox_train::pipeline::prompt_costs(&ds, &[]).is_none());
    // A pair without a cost takes its model's mean over the same rows.
    rows.iter_mut()
        .filter(|r| r.model_id == "large")
        .enumerate()
        .for_each(|(k, r)| r.cost_usd = (k > 0).then_some(2.0));
    let path = write(&dir.path().join("gap.parquet"), &rows);
    let ds = signalbox_train::dataset::Dataset::load(&path).unwrap();
    let first = ds
        .prompt_ids
        .iter()
        .position(|id| id == "synth/units:0")
        .unwrap();
    let pc = signalbox_train::pipeline::prompt_costs(&ds, &[]).unwrap();
    assert_eq!(pc[first][ds.model_index("large").unwrap()], 2.0);
}

#[test]
fn the_report_has_the_n_model_figures_with_per_prompt_costs() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(
        &dir.path().join("train.parquet"),
        &rows(300, 3, "synth/train"),
    );
    let test = write(
        &dir.path().join("test.parquet"),
        &rows(120, 4, "synth/test"),
    );
    let mut margs = args();
    margs.cv.cv_folds = 0;
    margs.epochs = 6;
    margs.l1 = 0.0;
    let exp = run_experiment(&data(&train, &test), &margs, "n-model").unwrap();
    let r = &exp.report;
    assert!(r.cost_basis.contains("own cost_usd"), "{}", r.cost_basis);
    assert_eq!(r.best_model, "large");
    // Each single model: its cost is its per-prompt costs over the best model's, its quality
    // the mean; the cheapest is marked.
    assert_eq!(r.single_models.len(), 3);
    for m in &r.single_models {
        let price = MODELS.iter().find(|(id, _)| *id == m.model).unwrap().1;
        assert!((m.cost - price).abs() < 1e-9, "{m:?}");
        assert_eq!(m.cheapest, m.model == "small");
    }
    let learned = &r.routers.iter().find(|(n, _)| n == "learned").unwrap().1;
    let random = &r.routers.iter().find(|(n, _)| n == "random").unwrap().1;
    let f = learned.figures;
    // The learned router, which can tell the topics apart, beats the best model's quality at
    // its cost, reaches it far cheaper, and has a higher AIQ than random routing.
    assert!(f.quality_at_best_cost.unwrap() > r.best_quality, "{f:?}");
    assert!(f.cost_at_100.unwrap() < 0.8, "{f:?}");
    assert!(f.cost_at_95.unwrap() <= f.cost_at_100.unwrap(), "{f:?}");
    assert!(f.aiq > random.figures.aiq, "{f:?} vs {:?}", random.figures);
    assert_eq!(learned.cost_saved_at_95, f.cost_at_95.map(|c| 1.0 - c));
    // Calibration: every outcome is scored, and the learned model beats the no-skill Brier.
    let cal = &r.calibration[0];
    assert_eq!(cal.router, "learned");
    assert_eq!(cal.pooled.n, 120 * 3);
    assert_eq!(cal.pooled.bins.iter().map(|b| b.n).sum::<usize>(), 360);
    assert!(cal.pooled.brier < cal.pooled.brier_of_base_rate, "{cal:?}");
    // The preference table: five rows, quality and cost never fall as the preference rises.
    assert_eq!(r.preference.len(), 5);
    for w in r.preference.windows(2) {
        assert!(w[1].quality >= w[0].quality - 1e-12, "{:?}", r.preference);
        assert!(w[1].cost >= w[0].cost - 1e-12, "{:?}", r.preference);
        assert!(w[1].margin <= w[0].margin, "{:?}", r.preference);
    }
    // The text and JSON reports carry the figures.
    let text = signalbox_train::report::to_text(r);
    for needle in [
        "quality at ≤ best model's cost",
        "AIQ",
        "Brier",
        "quality_preference",
        "small alone",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    // The picture: every router's curve or point, and each model alone with its name.
    let svg = signalbox_train::report::to_svg(r);
    for (id, _) in MODELS {
        assert!(
            svg.contains(&format!(">{id}</text>")),
            "{id} missing from the picture"
        );
    }
    assert_eq!(
        svg.matches("<polyline").count(),
        3,
        "learned, prompt-only, random"
    );
    let json = signalbox_train::report::to_json(&[r]);
    assert!(json["routers"]["learned"]["aiq"].is_f64(), "{json}");
    assert!(json["calibration"][0]["pooled"]["brier"].is_f64(), "{json}");
    assert_eq!(json["preference"].as_array().unwrap().len(), 5);
}
