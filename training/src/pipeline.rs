//! `train` / `eval`: split, featurize, fit, evaluate, and (for `train`) write a bundle.

use std::path::{Path, PathBuf};
use std::time::Instant;

use signalbox_features::Featurizer;

use crate::dataset::{Dataset, SplitMix64, random_split};
use crate::error::TrainError;
use crate::evaluate::{EvalInput, EvalReport, LEARNED, calibrate, evaluate, preference_table};
use crate::featurize::{FeatureSettings, SparseRows, build_featurizer, featurize_all};
use crate::model::{FitOptions, LinearModel, fit, fit_task_offsets};
use crate::progress;
use crate::report;
use crate::select::{Criterion, Grid, SelectInput, Selection, Settings, select};

/// Default relative costs (USD per 1M tokens, as used by the RouteLLM paper) of
/// the two models in the RouteLLM logs, used when the data has no costs.
pub const ROUTELLM_DEFAULT_COSTS: [(&str, f64); 2] = [
    ("gpt-4-1106-preview", 24.7),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", 0.24),
];

/// The quality_preference values of the report's preference table.
pub const PREFERENCES: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

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
    /// Strong model id (RouteLLM's two-model metrics). Default: RouteLLM's GPT-4 when the data
    /// has it, else the model with the best training quality.
    #[arg(long)]
    pub strong: Option<String>,
    /// Weak model id (RouteLLM's two-model metrics). Default: RouteLLM's Mixtral when the data
    /// has it, else the cheapest model.
    #[arg(long)]
    pub weak: Option<String>,
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
    #[command(flatten)]
    pub cv: CvArgs,
    /// The service's `min_quality_target` and `max_quality_target` (quality targets at
    /// quality_preference 0 and 1), for the report's table of quality and cost per preference.
    #[arg(long, default_value_t = 0.9)]
    pub min_quality_target: f64,
    #[arg(long, default_value_t = 1.0)]
    pub max_quality_target: f64,
}

/// Hyperparameters chosen by cross-validation on the training split (`--cv-folds`).
#[derive(Debug, Clone, clap::Args)]
pub struct CvArgs {
    /// Choose the settings by seeded k-fold cross-validation on the training prompts (0: use
    /// the flags as given). Every combination of the --grid-* lists is tried; a list not given
    /// is the single value of its flag (--epochs, --learning-rate, ...).
    #[arg(long, default_value_t = 0)]
    pub cv_folds: usize,
    /// Seed of the folds.
    #[arg(long, default_value_t = 7)]
    pub cv_seed: u64,
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub grid_epochs: Vec<usize>,
    #[arg(long, value_delimiter = ',', value_name = "X,X,...")]
    pub grid_learning_rate: Vec<f64>,
    #[arg(long, value_delimiter = ',', value_name = "X,X,...")]
    pub grid_l1: Vec<f64>,
    #[arg(long, value_delimiter = ',', value_name = "X,X,...")]
    pub grid_l2: Vec<f64>,
    /// Values of --max-fit-features.
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub grid_columns: Vec<usize>,
    #[arg(long, value_delimiter = ',', value_name = "X,X,...")]
    pub grid_task_lambda: Vec<f64>,
    /// With --cv-folds: Platt-scale each model's probabilities (sigmoid(a * logit + c), fitted
    /// on the out-of-fold logits of the training prompts and folded into the weights), so the
    /// probabilities the router compares across models are calibrated.
    #[arg(long)]
    pub platt: bool,
}

/// The values of `given`, or the single `flag` value when none were given.
fn or_flag<T: Copy>(given: &[T], flag: T) -> Vec<T> {
    if given.is_empty() {
        vec![flag]
    } else {
        given.to_vec()
    }
}

/// `ModelArgs` on their own command line (for [`ModelArgs::defaults`]).
#[derive(clap::Parser)]
struct ModelArgsOnly {
    #[command(flatten)]
    model: ModelArgs,
}

impl ModelArgs {
    /// The flags' defaults: what `train` and `eval` use when none is given.
    pub fn defaults() -> Result<ModelArgs, TrainError> {
        use clap::Parser;
        ModelArgsOnly::try_parse_from(["signalbox-train"])
            .map(|a| a.model)
            .map_err(|e| TrainError::Argument(e.to_string()))
    }

    /// The cross-validation grid of these flags.
    pub fn grid(&self) -> Grid {
        let cv = &self.cv;
        Grid {
            epochs: or_flag(&cv.grid_epochs, self.epochs),
            learning_rates: or_flag(&cv.grid_learning_rate, self.learning_rate),
            l1: or_flag(&cv.grid_l1, self.l1),
            l2: or_flag(&cv.grid_l2, self.l2),
            columns: or_flag(&cv.grid_columns, self.max_fit_features),
            task_lambdas: or_flag(&cv.grid_task_lambda, self.task_lambda),
        }
    }

    /// These flags with the settings chosen by cross-validation.
    pub fn with_settings(&self, s: &Settings) -> ModelArgs {
        ModelArgs {
            epochs: s.epochs,
            learning_rate: s.learning_rate,
            l1: s.l1,
            l2: s.l2,
            max_fit_features: s.columns,
            task_lambda: s.task_lambda,
            ..self.clone()
        }
    }

    /// The strong and weak model of the two-model metrics (see `--strong`, `--weak`).
    pub fn pair(&self, train: &Dataset, costs: &[f64]) -> (String, String) {
        let has = |m: &str| train.model_index(m).is_some();
        let [(routellm_strong, _), (routellm_weak, _)] = ROUTELLM_DEFAULT_COSTS;
        let routellm = has(routellm_strong) && has(routellm_weak);
        let mean_q = |m: usize| -> f64 {
            let (s, n) = train
                .quality
                .iter()
                .filter_map(|r| r[m])
                .fold((0.0, 0usize), |(s, n), q| (s + f64::from(q), n + 1));
            if n == 0 {
                f64::NEG_INFINITY
            } else {
                s / n as f64
            }
        };
        let nm = train.models.len();
        let strong = self.strong.clone().unwrap_or_else(|| {
            if routellm {
                routellm_strong.to_string()
            } else {
                (0..nm)
                    .max_by(|&a, &b| {
                        mean_q(a)
                            .total_cmp(&mean_q(b))
                            .then(costs[b].total_cmp(&costs[a]))
                    })
                    .map_or_else(String::new, |m| train.models[m].clone())
            }
        });
        let weak = self.weak.clone().unwrap_or_else(|| {
            if routellm {
                routellm_weak.to_string()
            } else {
                (0..nm)
                    .filter(|&m| train.models[m] != strong)
                    .min_by(|&a, &b| {
                        costs[a]
                            .total_cmp(&costs[b])
                            .then(mean_q(b).total_cmp(&mean_q(a)))
                    })
                    .map_or_else(String::new, |m| train.models[m].clone())
            }
        });
        (strong, weak)
    }

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
    /// The flags the final model was fitted with (the chosen settings after cross-validation).
    pub model_args: ModelArgs,
    /// The cross-validation that chose them, if any.
    pub selection: Option<Selection>,
    /// The Platt scaling `(a, c)` per model folded into the weights (`--platt`), if any.
    pub platt: Option<Vec<(f64, f64)>>,
    /// The calibrated margins (with and without tasks) and the split they were calibrated on.
    pub targets: Vec<signalbox_features::QualityTarget>,
    pub prompt_only_targets: Vec<signalbox_features::QualityTarget>,
    pub calibration_split: String,
    pub report: EvalReport,
    pub split: String,
    pub data_files: Vec<PathBuf>,
    pub timings: Vec<(String, f64)>,
}

/// Each prompt's own cost per model (`cost_usd` of its rows; the model's mean `cost_usd` in
/// `ds` where a pair has none), for the evaluation's curves. None when `--cost` flags set the
/// costs (they are in their own unit) or some model has no `cost_usd` in `ds` (its cost would
/// be in another unit).
pub fn prompt_costs(ds: &Dataset, flags: &[String]) -> Option<Vec<Vec<f64>>> {
    let means: Option<Vec<f64>> = ds.observed_cost.iter().copied().collect();
    let means = means.filter(|m| flags.is_empty() && !m.is_empty())?;
    Some(
        ds.cost
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&means)
                    .map(|(c, &mean)| c.unwrap_or(mean))
                    .collect()
            })
            .collect(),
    )
}

/// The relative cost per call of each model: its `--cost` flag, else the mean `cost_usd` of
/// its training rows, else of its test rows (not with cross-validation: the test split must not
/// move the choice), else the RouteLLM paper's price.
fn parse_costs(
    models: &[String],
    train: &Dataset,
    test: Option<&Dataset>,
    flags: &[String],
) -> Result<Vec<f64>, TrainError> {
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
            None => match train
                .observed_cost
                .get(m)
                .copied()
                .flatten()
                .or_else(|| test.and_then(|t| t.observed_cost.get(m).copied().flatten()))
            {
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
            let name = |p: &Path| {
                p.file_name()
                    .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
            };
            let split = format!("explicit files {} / {}", name(train), name(test));
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

/// Runs split -> featurize -> (choose settings by cross-validation) -> fit -> predict ->
/// calibrate -> evaluate.
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
    let cv = margs.cv.cv_folds > 0;
    let costs = parse_costs(&test.models, &train, (!cv).then_some(&test), &margs.costs)?;
    let train_costs = prompt_costs(&train, &margs.costs);
    let train_prompts: Vec<&str> = train.prompts.iter().map(String::as_str).collect();
    let train_tasks: Vec<Option<&str>> = train.tasks.iter().map(Option::as_deref).collect();
    let train_labels = train.labels(margs.quality_threshold);
    let (strong, weak) = margs.pair(&train, &costs);

    // Settings: the flags, or those chosen by cross-validation on the training prompts.
    let mut built: Option<(Featurizer, SparseRows)> = None;
    let (chosen, selection, out_of_fold) = if cv {
        let grid = margs.grid();
        let widest = grid
            .columns
            .iter()
            .copied()
            .max()
            .unwrap_or(margs.max_fit_features);
        let (featurizer, x) =
            featurize_training(&train_prompts, &train_tasks, margs, widest, &mut timings)?;
        let t = Instant::now();
        let criterion = match (
            train.models.len(),
            train.model_index(&strong),
            train.model_index(&weak),
        ) {
            (2, Some(s), Some(w)) => Criterion::NegativeApgr { strong: s, weak: w },
            _ => Criterion::CostAt95,
        };
        let candidates = grid.candidates().len();
        let bar = progress::bar(
            crate::select::fits(&grid, margs.cv.cv_folds) as u64,
            &format!(
                "{}-fold cross-validation of {candidates} settings (fits)",
                margs.cv.cv_folds
            ),
        );
        let (selection, oof) = select(&SelectInput {
            train: &train,
            featurizer: &featurizer,
            x: &x,
            labels: &train_labels,
            costs: &costs,
            prompt_costs: train_costs.as_deref(),
            criterion,
            grid: &grid,
            base: margs.fit_options(data.seed),
            folds: margs.cv.cv_folds,
            seed: margs.cv.cv_seed,
            platt: margs.cv.platt,
            progress: &bar,
        })?;
        bar.finish_and_clear();
        timings.push((
            format!("cross-validation ({candidates} settings)"),
            t.elapsed().as_secs_f64(),
        ));
        let chosen = margs.with_settings(&selection.chosen.settings);
        if chosen.max_fit_features == widest {
            built = Some((featurizer, x));
        }
        (chosen, Some(selection), Some(oof))
    } else {
        (margs.clone(), None, None)
    };
    let (featurizer, x_train) = match built {
        Some(b) => b,
        None => featurize_training(
            &train_prompts,
            &train_tasks,
            &chosen,
            chosen.max_fit_features,
            &mut timings,
        )?,
    };

    let t = Instant::now();
    let spinner = progress::spinner("fitting linfa FTRL logistic regressions");
    let mut model = fit(
        &x_train,
        &train.models,
        &train_labels,
        chosen.fit_options(data.seed),
    )?;
    add_task_offsets(
        &mut model,
        &featurizer,
        &x_train,
        &train_tasks,
        &train_labels,
        chosen.task_lambda,
    )?;
    if let Some(platt) = out_of_fold.as_ref().and_then(|o| o.platt.as_ref()) {
        for (m, &(a, c)) in platt.iter().enumerate() {
            model.rescale(m, a, c);
        }
    }
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
    let per_prompt = prompt_costs(&test, &margs.costs);
    let rules = match &margs.rules_config {
        Some(path) => Some(rules_decisions(path, &test, &weak)?),
        None => None,
    };
    let mut report = evaluate(&EvalInput {
        title: title.to_string(),
        test: &test,
        probs: &probs,
        prompt_only_probs: prompt_only_probs.as_deref(),
        costs: &costs,
        prompt_costs: per_prompt.as_deref(),
        strong: &strong,
        weak: &weak,
        rules: rules.as_deref(),
        quality_threshold: margs.quality_threshold,
        seed: data.seed,
    })?;
    // Margins: calibrated on the out-of-fold predictions of the training prompts when
    // cross-validation ran (the test split stays unseen), else on the test split.
    let (cal_ds, cal_probs, cal_prompt_only, cal_costs, calibration_split) = match &out_of_fold {
        Some(o) => (
            &train,
            &o.probs,
            o.prompt_only_probs.as_ref(),
            train_costs.as_deref(),
            format!(
                "out-of-fold predictions of the {}-fold cross-validation on the training split",
                margs.cv.cv_folds
            ),
        ),
        None => (
            &test,
            &probs,
            prompt_only_probs.as_ref(),
            per_prompt.as_deref(),
            "test (held-out) split".to_string(),
        ),
    };
    let calibrate_on = |p: &[Vec<f64>]| calibrate(cal_ds, p, &costs, cal_costs, &QUALITY_TARGETS);
    let targets = calibrate_on(cal_probs);
    let prompt_only_targets = cal_prompt_only.map(|p| calibrate_on(p)).unwrap_or_default();
    if targets.is_empty() {
        return Err(TrainError::NotEnoughData(format!(
            "no prompt of the {calibration_split} has an outcome of every model, so no routing margin can be calibrated"
        )));
    }
    report.preference = report
        .routers
        .iter()
        .find(|(name, _)| name == LEARNED)
        .map(|(_, learned)| {
            preference_table(
                &learned.curve,
                &targets,
                (margs.min_quality_target, margs.max_quality_target),
                &PREFERENCES,
            )
        })
        .unwrap_or_default();
    report.preference_calibration = Some(calibration_split.clone());
    report.selection.clone_from(&selection);
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
        model_args: chosen,
        platt: out_of_fold.as_ref().and_then(|o| o.platt.clone()),
        selection,
        targets,
        prompt_only_targets,
        calibration_split,
        report,
        split,
        data_files,
        timings,
    })
}

/// Trains the tokenizer and IDF on the training prompts (keeping `columns` n-gram columns) and
/// featurizes them without their tasks (the text weights are fitted without the tasks; the
/// task offsets come second, on top).
fn featurize_training(
    prompts: &[&str],
    tasks: &[Option<&str>],
    margs: &ModelArgs,
    columns: usize,
    timings: &mut Vec<(String, f64)>,
) -> Result<(Featurizer, SparseRows), TrainError> {
    let t = Instant::now();
    let spinner = progress::spinner("training tokenizer + IDF");
    let featurizer = build_featurizer(prompts, tasks, &margs.features, columns)?;
    spinner.finish_and_clear();
    timings.push(("tokenizer + IDF".to_string(), t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let bar = progress::bar(prompts.len() as u64, "featurizing train");
    let x = featurize_all(&featurizer, prompts, &[], &bar)?;
    bar.finish_and_clear();
    timings.push(("featurize train".to_string(), t.elapsed().as_secs_f64()));
    Ok((featurizer, x))
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
