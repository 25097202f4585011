//! Hyperparameters chosen on the training split: seeded k-fold cross-validation over a small
//! grid (passes, learning rate, L1, L2, feature columns, task-offset λ), scored by the figure
//! the router is used for. Only the training prompts are read; the test split cannot move the
//! choice.

use std::fmt;

use serde::Serialize;
use signalbox_features::Featurizer;

use crate::dataset::{Dataset, SplitMix64};
use crate::error::TrainError;
use crate::evaluate::learned_curve;
use crate::featurize::SparseRows;
use crate::metrics::{min_cost_for_quality, pgr_curve};
use crate::model::{FitOptions, fit_epochs_on, fit_platt, fit_task_offsets, sigmoid};

/// One point of the grid, a candidate's cross-validation result and the whole selection: the
/// manifest's types, so the bundle and the report record exactly what was chosen.
pub use signalbox_features::{
    CvCandidate as Candidate, CvSelection as Selection, CvSettings as Settings,
};

/// The values tried per setting (every combination is a candidate).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub epochs: Vec<usize>,
    pub learning_rates: Vec<f64>,
    pub l1: Vec<f64>,
    pub l2: Vec<f64>,
    pub columns: Vec<usize>,
    pub task_lambdas: Vec<f64>,
}

impl Grid {
    /// The grid with each list sorted and without repeated values (a repeated value would be
    /// a second candidate never fitted).
    pub fn normalized(&self) -> Grid {
        fn dedup_f64(v: &[f64]) -> Vec<f64> {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        }
        fn dedup_usize(v: &[usize]) -> Vec<usize> {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        }
        Grid {
            epochs: dedup_usize(&self.epochs),
            learning_rates: dedup_f64(&self.learning_rates),
            l1: dedup_f64(&self.l1),
            l2: dedup_f64(&self.l2),
            columns: dedup_usize(&self.columns),
            task_lambdas: dedup_f64(&self.task_lambdas),
        }
    }

    /// The candidates of the [`Grid::normalized`] grid, in a fixed order.
    pub fn candidates(&self) -> Vec<Settings> {
        let s = self.normalized();
        let mut out = Vec::new();
        for &columns in &s.columns {
            for &learning_rate in &s.learning_rates {
                for &l1 in &s.l1 {
                    for &l2 in &s.l2 {
                        for &epochs in &s.epochs {
                            for &task_lambda in &s.task_lambdas {
                                out.push(Settings {
                                    epochs,
                                    learning_rate,
                                    l1,
                                    l2,
                                    columns,
                                    task_lambda,
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: &str, why: &str| {
            Err(TrainError::Argument(format!(
                "--grid-{what}: {why} (give a comma-separated list)"
            )))
        };
        let positive = |v: &[f64]| v.iter().all(|&x| x.is_finite() && x > 0.0);
        let unit = |v: &[f64]| v.iter().all(|&x| (0.0..=1.0).contains(&x));
        if self.epochs.is_empty() || self.epochs.contains(&0) {
            return bad("epochs", "needs positive pass counts");
        }
        if self.learning_rates.is_empty() || !positive(&self.learning_rates) {
            return bad("learning-rate", "needs positive rates");
        }
        if self.l1.is_empty() || !unit(&self.l1) {
            return bad("l1", "needs strengths in [0, 1]");
        }
        if self.l2.is_empty() || !unit(&self.l2) {
            return bad("l2", "needs strengths in [0, 1]");
        }
        if self.columns.is_empty() || self.columns.contains(&0) {
            return bad("columns", "needs positive column counts");
        }
        if self.task_lambdas.is_empty() || !positive(&self.task_lambdas) {
            return bad("task-lambda", "needs positive strengths");
        }
        Ok(())
    }
}

/// What a candidate is scored by (lower is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Criterion {
    /// Cost relative to the best single model at which the learned router reaches 95% of its
    /// quality (N models); a curve that never gets there scores 1 + its shortfall.
    CostAt95,
    /// Minus RouteLLM's APGR of strong vs. weak (two models).
    NegativeApgr { strong: usize, weak: usize },
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Criterion::CostAt95 => {
                write!(f, "relative cost to reach 95% of the best model's quality")
            }
            Criterion::NegativeApgr { .. } => write!(f, "minus APGR"),
        }
    }
}

/// The chosen candidate's out-of-fold predictions on the training prompts (with and without
/// their tasks, after Platt scaling when asked for), which calibrate the served margins
/// without the test split, and the Platt scaling `(a, c)` per model fitted on them.
pub struct OutOfFold {
    pub probs: Vec<Vec<f64>>,
    pub prompt_only_probs: Option<Vec<Vec<f64>>>,
    pub platt: Option<Vec<(f64, f64)>>,
}

/// The inputs of a selection run.
pub struct SelectInput<'a> {
    pub train: &'a Dataset,
    /// Featurizer built on the whole training split with the largest column count of the grid.
    pub featurizer: &'a Featurizer,
    /// The training prompts featurized by `featurizer` without their tasks.
    pub x: &'a SparseRows,
    pub labels: &'a [Vec<Option<bool>>],
    pub costs: &'a [f64],
    pub prompt_costs: Option<&'a [Vec<f64>]>,
    pub criterion: Criterion,
    pub grid: &'a Grid,
    pub base: FitOptions,
    pub folds: usize,
    pub seed: u64,
    /// Platt-scale each candidate's out-of-fold logits per model before scoring it (and the
    /// chosen one's for serving).
    pub platt: bool,
    /// Advanced by one per model fit ([`fits`] of them).
    pub progress: &'a indicatif::ProgressBar,
}

/// The number of training runs a selection makes: one per fold and (columns, learning rate,
/// L1, L2); the epochs and task λ of the grid come from the same runs.
pub fn fits(grid: &Grid, folds: usize) -> usize {
    let g = grid.normalized();
    folds * g.columns.len() * g.learning_rates.len() * g.l1.len() * g.l2.len()
}

/// Per model, the Platt scaling of out-of-fold `logits[p][m]` against `labels[m][p]`.
pub fn platt_of(logits: &[Vec<f64>], labels: &[Vec<Option<bool>>]) -> Vec<(f64, f64)> {
    labels
        .iter()
        .enumerate()
        .map(|(m, lab)| {
            let (z, y): (Vec<f64>, Vec<bool>) = logits
                .iter()
                .zip(lab)
                .filter_map(|(l, y)| Some((*l.get(m)?, (*y)?)))
                .unzip();
            fit_platt(&z, &y)
        })
        .collect()
}

/// `sigmoid(a * z + c)` of every logit (`a = 1, c = 0` without a scaling).
pub fn probabilities(logits: &[Vec<f64>], platt: Option<&[(f64, f64)]>) -> Vec<Vec<f64>> {
    logits
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(m, &z)| {
                    let (a, c) = platt.and_then(|p| p.get(m).copied()).unwrap_or((1.0, 0.0));
                    sigmoid(a * z + c)
                })
                .collect()
        })
        .collect()
}

/// The fold of each training prompt: a seeded shuffle dealt round robin.
pub fn fold_of(n: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed ^ 0xc0ffee).shuffle(&mut idx);
    let mut out = vec![0; n];
    for (k, &i) in idx.iter().enumerate() {
        out[i] = k % folds.max(1);
    }
    out
}

/// The hashed n-gram columns of `featurizer` (input order) ranked by how many training
/// prompts have them (highest first; the IDF falls as that count grows; ties: lower column).
fn columns_by_frequency(featurizer: &Featurizer) -> Vec<usize> {
    let config = featurizer.config();
    let hash_dim = config.hash_dim();
    let buckets: Vec<usize> = match &config.columns {
        Some(cols) => cols.iter().map(|&c| c as usize).collect(),
        None => (0..hash_dim).collect(),
    };
    let idf = featurizer.idf();
    let mut ranked: Vec<(usize, f32)> = buckets
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b < hash_dim)
        .map(|(input, &b)| (input, idf.get(b).copied().unwrap_or(f32::INFINITY)))
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    ranked.into_iter().map(|(input, _)| input).collect()
}

/// `x` without the hashed n-gram columns past the `keep` most frequent (meta and task columns
/// stay): what a featurizer built with `--max-fit-features keep` emits, as the TF-IDF norm is
/// taken over all buckets either way.
fn keep_columns(x: &SparseRows, ranked: &[usize], keep: usize) -> SparseRows {
    let mut dropped = vec![false; x.dim];
    for &c in ranked.iter().skip(keep) {
        if let Some(d) = dropped.get_mut(c) {
            *d = true;
        }
    }
    let mut out = SparseRows::new(x.dim);
    for i in 0..x.len() {
        for (j, v) in x.row(i) {
            if !dropped[j] {
                out.indices.push(j as u32);
                out.values.push(v);
            }
        }
        out.offsets.push(out.indices.len());
    }
    out
}

/// Scores `probs` (rows of `train`) over the prompts `rows` by `criterion`.
pub fn score(
    criterion: Criterion,
    train: &Dataset,
    rows: &[usize],
    probs: &[Vec<f64>],
    costs: &[f64],
    prompt_costs: Option<&[Vec<f64>]>,
) -> f64 {
    match criterion {
        Criterion::CostAt95 => match learned_curve(train, rows, probs, costs, prompt_costs) {
            Some((curve, best_q)) => {
                let target = 0.95 * best_q;
                min_cost_for_quality(&curve, target).unwrap_or_else(|| {
                    let reached = curve.iter().map(|p| p.quality).fold(0.0, f64::max);
                    1.0 + (target - reached) / best_q.max(1e-12)
                })
            }
            None => f64::INFINITY,
        },
        Criterion::NegativeApgr { strong, weak } => {
            let both: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&p| train.quality[p][strong].is_some() && train.quality[p][weak].is_some())
                .collect();
            let q = |p: usize, m: usize| f64::from(train.quality[p][m].unwrap_or(0.0));
            let scores: Vec<f64> = both
                .iter()
                .map(|&p| probs[p][strong] - probs[p][weak])
                .collect();
            let s: Vec<f64> = both.iter().map(|&p| q(p, strong)).collect();
            let w: Vec<f64> = both.iter().map(|&p| q(p, weak)).collect();
            pgr_curve(&scores, &s, &w).map_or(f64::INFINITY, |c| -c.apgr())
        }
    }
}

/// Cross-validates every candidate of the grid on the training prompts and returns the
/// selection (lowest pooled score; ties: the earlier candidate) with the chosen candidate's
/// out-of-fold predictions.
pub fn select(inp: &SelectInput<'_>) -> Result<(Selection, OutOfFold), TrainError> {
    inp.grid.validate()?;
    let grid = inp.grid.normalized();
    let train = inp.train;
    let n = train.len();
    let folds = inp.folds;
    if folds < 2 || n < 2 * folds {
        return Err(TrainError::Argument(format!(
            "--cv-folds {folds}: needs at least 2 folds and 2 training prompts per fold ({n} prompts)"
        )));
    }
    let fold = fold_of(n, folds, inp.seed);
    let candidates = grid.candidates();
    let nm = train.models.len();
    let config = inp.featurizer.config();
    let task_of: Vec<Option<usize>> = train
        .tasks
        .iter()
        .map(|t| t.as_deref().and_then(|t| config.task_index(t)))
        .collect();
    let has_tasks = !config.tasks.is_empty() && task_of.iter().any(Option::is_some);
    let ranked = columns_by_frequency(inp.featurizer);
    // Out-of-fold logits oof[c][p][m], and the prompt-only ones (the same for every task λ).
    let mut oof = vec![vec![Vec::new(); n]; candidates.len()];
    let mut oof_prompt_only = vec![vec![Vec::new(); n]; candidates.len()];
    for &keep in &grid.columns {
        let x = keep_columns(inp.x, &ranked, keep);
        for f in 0..folds {
            let fit_rows: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
            let held: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
            // The task offsets are fitted on the other folds' prompts only.
            let fit_tasks: Vec<Option<usize>> = (0..n)
                .map(|i| if fold[i] != f { task_of[i] } else { None })
                .collect();
            for &lr in &grid.learning_rates {
                for &l1 in &grid.l1 {
                    for &l2 in &grid.l2 {
                        let opts = FitOptions {
                            alpha: lr,
                            l1,
                            l2,
                            ..inp.base
                        };
                        let models = fit_epochs_on(
                            &x,
                            &fit_rows,
                            &train.models,
                            inp.labels,
                            opts,
                            &grid.epochs,
                        )?;
                        inp.progress.inc(1);
                        for (model, &ep) in models.iter().zip(&grid.epochs) {
                            let logits = model.logits_sparse(&x);
                            for &lambda in &grid.task_lambdas {
                                let offsets = has_tasks.then(|| {
                                    fit_task_offsets(
                                        &logits,
                                        inp.labels,
                                        &fit_tasks,
                                        config.tasks.len(),
                                        lambda,
                                    )
                                });
                                let Some(c) = candidates.iter().position(|s| {
                                    s.columns == keep
                                        && s.learning_rate == lr
                                        && s.l1 == l1
                                        && s.l2 == l2
                                        && s.epochs == ep
                                        && s.task_lambda == lambda
                                }) else {
                                    continue;
                                };
                                for &i in &held {
                                    let z = &logits[i];
                                    oof_prompt_only[c][i].clone_from(z);
                                    oof[c][i] = (0..nm)
                                        .map(|m| {
                                            let off = match (&offsets, task_of[i]) {
                                                (Some(o), Some(t)) => o[m][t],
                                                _ => 0.0,
                                            };
                                            z[m] + off
                                        })
                                        .collect();
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let all: Vec<usize> = (0..n).collect();
    let by_fold: Vec<Vec<usize>> = (0..folds)
        .map(|f| (0..n).filter(|&i| fold[i] == f).collect())
        .collect();
    let platts: Vec<Option<Vec<(f64, f64)>>> = oof
        .iter()
        .map(|logits| inp.platt.then(|| platt_of(logits, inp.labels)))
        .collect();
    let scored: Vec<Candidate> = candidates
        .iter()
        .zip(oof.iter().zip(&platts))
        .map(|(&settings, (logits, platt))| (settings, probabilities(logits, platt.as_deref())))
        .map(|(settings, probs)| Candidate {
            settings,
            score: score(
                inp.criterion,
                train,
                &all,
                &probs,
                inp.costs,
                inp.prompt_costs,
            ),
            fold_scores: by_fold
                .iter()
                .map(|rows| {
                    score(
                        inp.criterion,
                        train,
                        rows,
                        &probs,
                        inp.costs,
                        inp.prompt_costs,
                    )
                })
                .collect(),
        })
        .collect();
    let best = (0..scored.len())
        .min_by(|&a, &b| scored[a].score.total_cmp(&scored[b].score).then(a.cmp(&b)))
        .ok_or_else(|| TrainError::Argument("the hyperparameter grid is empty".into()))?;
    if !scored[best].score.is_finite() {
        return Err(TrainError::NotEnoughData(
            "cross-validation scored no candidate: no training prompt has an outcome of every model (or of both the strong and the weak model)".into(),
        ));
    }
    let chosen = scored[best].clone();
    let platt = platts[best].clone();
    let out_of_fold = OutOfFold {
        probs: probabilities(&oof[best], platt.as_deref()),
        prompt_only_probs: has_tasks
            .then(|| probabilities(&oof_prompt_only[best], platt.as_deref())),
        platt,
    };
    Ok((
        Selection {
            folds,
            seed: inp.seed,
            criterion: inp.criterion.to_string(),
            candidates: scored,
            chosen,
        },
        out_of_fold,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_seeded_balanced_and_cover_every_prompt() {
        let f = fold_of(103, 5, 7);
        assert_eq!(f, fold_of(103, 5, 7));
        assert_ne!(f, fold_of(103, 5, 8));
        for k in 0..5 {
            let size = f.iter().filter(|&&x| x == k).count();
            assert!(size == 20 || size == 21, "fold {k}: {size}");
        }
    }

    #[test]
    fn the_grid_lists_every_combination_and_rejects_bad_values() {
        let g = Grid {
            epochs: vec![5, 10],
            learning_rates: vec![0.1],
            l1: vec![0.0, 1.0],
            l2: vec![1.0],
            columns: vec![1024],
            task_lambdas: vec![1.0, 4.0],
        };
        assert_eq!(g.candidates().len(), 8);
        // One training run per fold and (columns, rate, L1, L2): epochs and λ come free.
        assert_eq!(fits(&g, 3), 3 * 2);
        // Repeated values are one candidate, not a second one that is never fitted.
        let repeated = Grid {
            epochs: vec![10, 5, 10],
            l2: vec![1.0, 1.0],
            ..g.clone()
        };
        assert_eq!(repeated.candidates().len(), 8);
        assert_eq!(repeated.normalized().epochs, vec![5, 10]);
        assert_eq!(fits(&repeated, 3), 3 * 2);
        assert!(g.validate().is_ok());
        let bad = Grid {
            l1: vec![1.5],
            ..g.clone()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--grid-l1")
        );
        let none = Grid {
            epochs: vec![],
            ..g
        };
        assert!(none.validate().is_err());
    }
}
