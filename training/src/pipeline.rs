//! `train` / `eval`: split, featurize, fit, evaluate, and (for `train`) write a bundle.

use std::path::{Path, PathBuf};
use std::time::Instant;

use signalbox_features::Featurizer;

use crate::dataset::{Dataset, SplitMix64, random_split};
use crate::error::TrainError;
use crate::evaluate::{EvalInput, EvalReport, calibrate, evaluate};
use crate::featurize::{FeatureSettings, SparseRows, build_featurizer, featurize_all};
use crate::model::{FitOptions, LinearModel, fit, fit_task_offsets};
use crate::progress;
use crate::report;

/// Default relative costs (USD per 1M tokens, as used by the RouteLLM paper) of
/// the two models in the RouteLLM logs, used when the data has no costs.
pub const ROUTELLM_DEFAULT_COSTS: [(&str, f64); 2] = [
    ("gpt-4-1106-preview", 24.7),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", 0.24),
];

/// Quality targets (fractions of the best model's quality) calibrated into bundles.
pub const QUALITY_TARGETS: [f64; 9] = [0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 1.0];

#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Canonical table (Parquet) split at random into train/test.
    #[arg(long, conflicts_with_all = ["train", "test"])]
    pub table: Option<PathBuf>,
    /// Explicit training table (canonical format); needs --test.
    #[arg(long, requires = "test")]
    pub train: Option<PathBuf>,
    /// Explicit test table (canonical format).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Seed of the random split (and of the random baseline).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of prompts held out for testing in the random split.
    #[arg(long, default_value_t = 0.3)]
    pub test_fraction: f64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Strong model id (RouteLLM metrics).
    #[arg(long, default_value = "gpt-4-1106-preview")]
    pub strong: String,
    /// Weak model id (RouteLLM metrics).
    #[arg(long, default_value = "mistralai/Mixtral-8x7B-Instruct-v0.1")]
    pub weak: String,
    /// Quality at or above which an answer counts as acceptable (the label).
    #[arg(long, default_value_t = 0.5)]
    pub quality_threshold: f64,
    /// FTRL learning rate `alpha` (per-coordinate rate alpha / (beta + sqrt(n))).
    #[arg(long, default_value_t = 0.1)]
    pub learning_rate: f64,
    /// FTRL `beta`.
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// L1 strength in [0, 1] (weights of rarely useful features become exactly 0).
    #[arg(long, default_value_t = 1.0)]
    pub l1: f64,
    /// L2 strength in [0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub l2: f64,
    /// Passes over the training prompts (shuffled mini-batches).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Prompts per FTRL update.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Ridge strength of the per-task offsets: a task seen in few training prompts gets an
    /// offset near 0 (prompt-only scoring).
    #[arg(long, default_value_t = 2.0)]
    pub task_lambda: f64,
    /// Hashed n-gram columns kept as features (those in the most training prompts).
    #[arg(long, default_value_t = 4096)]
    pub max_fit_features: usize,
    /// Relative cost per call, `MODEL=COST` (repeatable); default: observed mean
    /// `cost_usd`, else the RouteLLM paper prices for its two models.
    #[arg(long = "cost", value_name = "MODEL=COST")]
    pub costs: Vec<String>,
    /// At most this many training prompts (seeded sample) are used for fitting.
    #[arg(long, default_value_t = 100_000)]
    pub max_train_prompts: usize,
    /// Example service config whose rule-based router is a baseline.
    #[arg(long)]
    pub rules_config: Option<PathBuf>,
    #[command(flatten)]
    pub features: FeatureSettings,
}

impl ModelArgs {
    /// The classifier options of these flags (mini-batch order seeded by `seed`).
    pub fn fit_options(&self, seed: u64) -> FitOptions {
        FitOptions {
            alpha: self.learning_rate,
            beta: self.beta,
            l1: self.l1,
            l2: self.l2,
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// JSON report (per router apgr, cpt50, cpt80 as fractions, curves).
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Human report (Markdown).
    #[arg(long)]
    pub report_md: Option<PathBuf>,
    /// SVG picture of the quality-vs-cost curves.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Title of the report.
    #[arg(long, default_value = "held-out evaluation")]
    pub title: String,
}

/// Everything a train/eval run produced.
pub struct Experiment {
    pub featurizer: Featurizer,
    pub model: LinearModel,
    pub train: Dataset,
    pub test: Dataset,
    pub test_features: SparseRows,
    pub probs: Vec<Vec<f64>>,
    /// The same model's test predictions without the prompts' tasks (when it has task
    /// columns and knows a test prompt's task).
    pub prompt_only_probs: Option<Vec<Vec<f64>>>,
    pub costs: Vec<f64>,
    pub report: EvalReport,
    pub split: String,
    pub data_files: Vec<PathBuf>,
    pub timings: Vec<(String, f64)>,
}

fn parse_costs(models: &[String], ds: &Dataset, flags: &[String]) -> Result<Vec<f64>, TrainError> {
    let mut out = Vec::with_capacity(models.len());
    for (m, model) in models.iter().enumerate() {
        let flag = flags.iter().find_map(|f| {
            let (k, v) = f.rsplit_once('=')?;
            (k == model).then_some(v)
        });
        let cost = match flag {
            Some(v) => v
                .parse::<f64>()
                .map_err(|_| TrainError::Argument(format!("bad cost {v:?} for {model}")))?,
            None => match ds.observed_cost.get(m).copied().flatten() {
                Some(c) => c,
                None => ROUTELLM_DEFAULT_COSTS
                    .iter()
                    .find(|(k, _)| k == model)
                    .map(|(_, c)| *c)
                    .ok_or_else(|| {
                        TrainError::Argument(format!(
                            "no cost for model {model}: pass --cost {model}=COST"
                        ))
                    })?,
            },
        };
        if !(cost.is_finite() && cost >= 0.0) {
            return Err(TrainError::Argument(format!(
                "cost of {model} must be >= 0"
            )));
        }
        out.push(cost);
    }
    Ok(out)
}

fn labels(ds: &Dataset, threshold: f64) -> Vec<Vec<Option<bool>>> {
    (0..ds.models.len())
        .map(|m| {
            ds.quality
                .iter()
                .map(|row| row[m].map(|q| f64::from(q) >= threshold))
                .collect()
        })
        .collect()
}

/// Loads data and splits it per `args`.
pub fn load_split(args: &DataArgs) -> Result<(Dataset, Dataset, String, Vec<PathBuf>), TrainError> {
    match (&args.table, &args.train, &args.test) {
        (Some(table), None, None) => {
            let ds = Dataset::load(table)?;
            let (tr, te) = random_split(ds.len(), args.test_fraction, args.seed);
            let split = format!(
                "seeded random split, {:.0}/{:.0}, seed {}",
                100.0 * (1.0 - args.test_fraction),
                100.0 * args.test_fraction,
                args.seed
            );
            Ok((ds.subset(&tr), ds.subset(&te), split, vec![table.clone()]))
        }
        (None, Some(train), Some(test)) => {
            let tr = Dataset::load(train)?;
            let te = Dataset::load(test)?;
            let mut models = tr.models.clone();
            models.extend(te.models.iter().filter(|m| !tr.models.contains(m)).cloned());
            let split = format!("explicit files {} / {}", train.display(), test.display());
            Ok((
                tr.with_models(&models),
                te.with_models(&models),
                split,
                vec![train.clone(), test.clone()],
            ))
        }
        _ => Err(TrainError::Argument(
            "pass either --table FILE or --train FILE --test FILE".into(),
        )),
    }
}

/// Runs split -> featurize -> fit -> predict -> evaluate.
pub fn run_experiment(
    data: &DataArgs,
    margs: &ModelArgs,
    title: &str,
) -> Result<Experiment, TrainError> {
    let mut timings = Vec::new();
    let t0 = Instant::now();
    let (mut train, test, split, data_files) = load_split(data)?;
    timings.push(("load + split".to_string(), t0.elapsed().as_secs_f64()));
    if train.len() > margs.max_train_prompts {
        let mut idx: Vec<usize> = (0..train.len()).collect();
        SplitMix64::new(data.seed ^ 0xca9).shuffle(&mut idx);
        idx.truncate(margs.max_train_prompts);
        idx.sort_unstable();
        train = train.subset(&idx);
    }
    if train.len() < 10 || test.is_empty() {
        return Err(TrainError::NotEnoughData(format!(
            "{} training and {} test prompts",
            train.len(),
            test.len()
        )));
    }
    let t = Instant::now();
    let spinner = progress::spinner("training tokenizer + IDF");
    let train_prompts: Vec<&str> = train.prompts.iter().map(String::as_str).collect();
    let train_tasks: Vec<Option<&str>> = train.tasks.iter().map(Option::as_deref).collect();
    let featurizer = build_featurizer(
        &train_prompts,
        &train_tasks,
        &margs.features,
        margs.max_fit_features,
    )?;
    spinner.finish_and_clear();
    timings.push(("tokenizer + IDF".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let bar = progress::bar(train.len() as u64, "featurizing train");
    // The text weights are fitted without the tasks; the task offsets come second, on top.
    let x_train = featurize_all(&featurizer, &train_prompts, &[], &bar)?;
    bar.finish_and_clear();
    timings.push(("featurize train".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let spinner = progress::spinner("fitting linfa FTRL logistic regressions");
    let train_labels = labels(&train, margs.quality_threshold);
    let mut model = fit(
        &x_train,
        &train.models,
        &train_labels,
        margs.fit_options(data.seed),
    )?;
    add_task_offsets(
        &mut model,
        &featurizer,
        &x_train,
        &train_tasks,
        &train_labels,
        margs.task_lambda,
    )?;
    drop(x_train);
    spinner.finish_and_clear();
    timings.push(("fit".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let test_prompts: Vec<&str> = test.prompts.iter().map(String::as_str).collect();
    let test_tasks: Vec<Option<&str>> = test.tasks.iter().map(Option::as_deref).collect();
    let bar = progress::bar(test.len() as u64, "featurizing test");
    let test_features = featurize_all(&featurizer, &test_prompts, &test_tasks, &bar)?;
    bar.finish_and_clear();
    let probs = model.predict_sparse(&test_features);
    let prompt_only_probs = prompt_only_predictions(&featurizer, &model, &test_features);
    let costs = parse_costs(&test.models, &test, &margs.costs)?;
    let rules = match &margs.rules_config {
        Some(path) => Some(rules_decisions(path, &test, &margs.weak)?),
        None => None,
    };
    let report = evaluate(&EvalInput {
        title: title.to_string(),
        test: &test,
        probs: &probs,
        prompt_only_probs: prompt_only_probs.as_deref(),
        costs: &costs,
        strong: &margs.strong,
        weak: &margs.weak,
        rules: rules.as_deref(),
        quality_threshold: margs.quality_threshold,
        seed: data.seed,
    })?;
    timings.push(("predict + evaluate".to_string(), t.elapsed().as_secs_f64()));
    Ok(Experiment {
        featurizer,
        model,
        train,
        test,
        test_features,
        probs,
        prompt_only_probs,
        costs,
        report,
        split,
        data_files,
        timings,
    })
}

/// The predictions of `model` for the rows of `x` (featurized with their tasks) without their
/// tasks (as RouteLLM's routers see them): the task columns read as 0, which is what
/// featurizing the prompts without a task gives. `None` when no row has a task column set.
pub fn prompt_only_predictions(
    featurizer: &Featurizer,
    model: &LinearModel,
    x: &SparseRows,
) -> Option<Vec<Vec<f64>>> {
    let mut task_column = vec![false; featurizer.dim()];
    for task in &featurizer.config().tasks {
        if let Some(c) = featurizer.task_input_column(task) {
            task_column[c] = true;
        }
    }
    let knows_a_task = x
        .indices
        .iter()
        .any(|&j| task_column.get(j as usize).copied().unwrap_or(false));
    knows_a_task.then(|| model.predict_sparse_without(x, &task_column))
}

/// Second training stage: per-task logit offsets ([`fit_task_offsets`]) on top of the fitted
/// text model, written as the weights of the featurizer's task columns (which are zero in
/// `x_train`, featurized without tasks). Without task columns, nothing changes.
pub fn add_task_offsets(
    model: &mut LinearModel,
    featurizer: &Featurizer,
    x_train: &SparseRows,
    train_tasks: &[Option<&str>],
    train_labels: &[Vec<Option<bool>>],
    lambda: f64,
) -> Result<(), TrainError> {
    let tasks = &featurizer.config().tasks;
    if tasks.is_empty() {
        return Ok(());
    }
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(TrainError::Argument(format!(
            "--task-lambda {lambda} must be a positive number"
        )));
    }
    let index: Vec<Option<usize>> = train_tasks
        .iter()
        .map(|t| t.and_then(|t| featurizer.config().task_index(t)))
        .collect();
    let offsets = fit_task_offsets(
        &model.logits_sparse(x_train),
        train_labels,
        &index,
        tasks.len(),
        lambda,
    );
    for (k, task) in tasks.iter().enumerate() {
        let col = featurizer
            .task_input_column(task)
            .ok_or_else(|| TrainError::Fit(format!("task {task:?} has no input column")))?;
        for (w, off) in model.weights.iter_mut().zip(&offsets) {
            w[col] = off[k];
        }
    }
    Ok(())
}

/// Writes the report files requested in `out` and prints the human report.
pub fn emit_reports(reports: &[&EvalReport], out: &OutputArgs) -> Result<(), TrainError> {
    let text: String = reports.iter().map(|r| report::to_text(r) + "\n").collect();
    println!("{text}");
    if let Some(p) = &out.report_json {
        report::write_json(reports, p)?;
        println!("report JSON: {}", p.display());
    }
    if let Some(p) = &out.report_md {
        std::fs::write(p, &text).map_err(TrainError::io(p))?;
        println!("report: {}", p.display());
    }
    if let (Some(p), Some(first)) = (&out.plot, reports.first()) {
        std::fs::write(p, report::to_svg(first)).map_err(TrainError::io(p))?;
        println!("plot: {}", p.display());
    }
    Ok(())
}

/// Calibrated quality targets of an experiment (on its test split).
pub fn targets(exp: &Experiment) -> Vec<signalbox_features::QualityTarget> {
    calibrate(&exp.test, &exp.probs, &exp.costs, &QUALITY_TARGETS)
}

/// The calibration of the prompt-only predictions, for requests without a known task (empty
/// when the model has no task columns).
pub fn prompt_only_targets(exp: &Experiment) -> Vec<signalbox_features::QualityTarget> {
    exp.prompt_only_probs
        .as_ref()
        .map(|p| calibrate(&exp.test, p, &exp.costs, &QUALITY_TARGETS))
        .unwrap_or_default()
}

/// sha256 (hex) over the given files, in order.
pub fn files_sha256(files: &[PathBuf]) -> Result<String, TrainError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(TrainError::io(f))?;
        h.update(&bytes);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

pub fn ensure_dir(p: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(p).map_err(TrainError::io(p))
}

/// Rule-based baseline decisions for `test` (model index per prompt).
#[cfg(feature = "rules-baseline")]
pub fn rules_decisions(
    config: &Path,
    test: &Dataset,
    weak: &str,
) -> Result<Vec<usize>, TrainError> {
    let weak = test.model_index(weak).unwrap_or(0);
    crate::rules::decisions(config, test, weak)
}

/// Rule-based baseline decisions: unavailable in this build.
#[cfg(not(feature = "rules-baseline"))]
pub fn rules_decisions(
    config: &Path,
    _test: &Dataset,
    _weak: &str,
) -> Result<Vec<usize>, TrainError> {
    Err(TrainError::Argument(format!(
        "--rules-config {}: signalbox-train was built without the `rules-baseline` feature",
        config.display()
    )))
}
