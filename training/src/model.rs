//! The classifier: one logistic regression per model, fitted with linfa's FTRL-Proximal
//! (`linfa-ftrl`) on sparse feature rows, predicting P(quality >= threshold | prompt features).

use linfa::prelude::*;
use linfa_ftrl::Ftrl;
use ndarray::{Array1, Array2, s};

use crate::dataset::SplitMix64;
use crate::error::TrainError;
use crate::featurize::SparseRows;

/// Per-model linear scorer: `p_m = sigmoid(w_m . x + b_m)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub models: Vec<String>,
    pub dim: usize,
    /// `weights[m]` has `dim` entries.
    pub weights: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl LinearModel {
    /// P(acceptable) for each model, for one feature row.
    pub fn predict_row(&self, x: &[f32]) -> Vec<f64> {
        self.probabilities(x.iter().copied().enumerate())
    }

    /// `sigmoid(w_m . x + b_m)` per model, `x` given as (column, value) entries.
    fn probabilities(&self, x: impl Iterator<Item = (usize, f32)> + Clone) -> Vec<f64> {
        self.logits(x).into_iter().map(sigmoid).collect()
    }

    /// `w_m . x + b_m` per model, `x` given as (column, value) entries.
    fn logits(&self, x: impl Iterator<Item = (usize, f32)> + Clone) -> Vec<f64> {
        self.weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| x.clone().map(|(j, v)| w[j] * f64::from(v)).sum::<f64>() + b)
            .collect()
    }

    /// Logits (`w_m . x + b_m`) of sparse rows.
    pub fn logits_sparse(&self, x: &SparseRows) -> Vec<Vec<f64>> {
        (0..x.len()).map(|i| self.logits(x.row(i))).collect()
    }

    /// Columns with a non-zero weight for some model, ascending (at least one column, so the
    /// exported model always has an input).
    pub fn used_columns(&self) -> Vec<usize> {
        let used: Vec<usize> = (0..self.dim)
            .filter(|&j| self.weights.iter().any(|w| w[j] != 0.0))
            .collect();
        if used.is_empty() { vec![0] } else { used }
    }

    /// The same model over only `columns` of its input (the other weights must be zero for
    /// the predictions to be unchanged).
    pub fn select(&self, columns: &[usize]) -> LinearModel {
        LinearModel {
            models: self.models.clone(),
            dim: columns.len(),
            weights: self
                .weights
                .iter()
                .map(|w| columns.iter().map(|&j| w[j]).collect())
                .collect(),
            bias: self.bias.clone(),
        }
    }

    /// Predictions for sparse rows (the same sums as [`LinearModel::predict_row`] of the dense
    /// rows, over their non-zero entries).
    pub fn predict_sparse(&self, x: &SparseRows) -> Vec<Vec<f64>> {
        (0..x.len()).map(|i| self.probabilities(x.row(i))).collect()
    }

    /// [`LinearModel::predict_sparse`] with the input columns marked in `dropped` read as 0.
    pub fn predict_sparse_without(&self, x: &SparseRows, dropped: &[bool]) -> Vec<Vec<f64>> {
        let kept = |&(j, _): &(usize, f32)| !dropped.get(j).copied().unwrap_or(false);
        (0..x.len())
            .map(|i| self.probabilities(x.row(i).filter(kept)))
            .collect()
    }
}

/// Fitting options of linfa's FTRL-Proximal logistic regression (McMahan et al. 2013),
/// trained in shuffled mini-batches over several epochs.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Learning rate `alpha` of the per-coordinate schedule `alpha / (beta + sqrt(n_i))`.
    pub alpha: f64,
    pub beta: f64,
    /// L1 strength in [0, 1] (linfa's `l1_ratio`): weights with |z_i| <= l1 are exactly 0.
    pub l1: f64,
    /// L2 strength in [0, 1] (linfa's `l2_ratio`).
    pub l2: f64,
    pub epochs: usize,
    /// Rows per FTRL update.
    pub batch_size: usize,
    /// Seed of the mini-batch order.
    pub seed: u64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            alpha: 0.1,
            beta: 1.0,
            l1: 1.0,
            l2: 1.0,
            epochs: 10,
            batch_size: 64,
            seed: 42,
        }
    }
}

/// Fits one classifier per model. `labels[m][i]` is the label of row `i` for model `m`
/// (None: no outcome, row not used for that model). The models are fitted in parallel.
pub fn fit(
    x: &SparseRows,
    models: &[String],
    labels: &[Vec<Option<bool>>],
    opts: FitOptions,
) -> Result<LinearModel, TrainError> {
    fit_epochs(x, models, labels, opts, &[opts.epochs.max(1)])?
        .pop()
        .ok_or_else(|| TrainError::Fit("no model fitted".into()))
}

/// [`fit`] over the rows `rows` of `x` only, keeping the model after each pass count in
/// `epochs` (ascending; the last is the number of passes made): one training run gives the
/// models of several epoch settings, as cross-validation needs. Returns one model per entry of
/// `epochs`.
pub fn fit_epochs_on(
    x: &SparseRows,
    rows: &[usize],
    models: &[String],
    labels: &[Vec<Option<bool>>],
    opts: FitOptions,
    epochs: &[usize],
) -> Result<Vec<LinearModel>, TrainError> {
    if labels.len() != models.len() || labels.iter().any(|l| l.len() != x.len()) {
        return Err(TrainError::Fit(format!(
            "{} label columns of {:?} rows for {} models and {} rows",
            labels.len(),
            labels.iter().map(Vec::len).collect::<Vec<_>>(),
            models.len(),
            x.len()
        )));
    }
    if epochs.is_empty() || epochs.windows(2).any(|w| w[0] >= w[1]) || epochs[0] == 0 {
        return Err(TrainError::Fit(format!(
            "epoch counts {epochs:?} must be ascending and positive"
        )));
    }
    let fitted: Vec<Result<Vec<Fitted>, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = labels
            .iter()
            .map(|lab| scope.spawn(move || fit_one(x, rows, lab, opts, epochs)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(TrainError::Fit("fitting thread panicked".into())))
            })
            .collect()
    });
    let mut out: Vec<LinearModel> = epochs
        .iter()
        .map(|_| LinearModel {
            models: models.to_vec(),
            dim: x.dim,
            weights: Vec::new(),
            bias: Vec::new(),
        })
        .collect();
    for r in fitted {
        for (model, (w, b)) in out.iter_mut().zip(r?) {
            model.weights.push(w);
            model.bias.push(b);
        }
    }
    Ok(out)
}

/// [`fit_epochs_on`] over every row.
pub fn fit_epochs(
    x: &SparseRows,
    models: &[String],
    labels: &[Vec<Option<bool>>],
    opts: FitOptions,
    epochs: &[usize],
) -> Result<Vec<LinearModel>, TrainError> {
    let rows: Vec<usize> = (0..x.len()).collect();
    fit_epochs_on(x, &rows, models, labels, opts, epochs)
}

/// One model's fitted (weights, bias).
type Fitted = (Vec<f64>, f64);

/// One model's fit over `rows` (those with a label), one (weights, bias) per entry of
/// `epochs` (ascending pass counts).
fn fit_one(
    x: &SparseRows,
    rows: &[usize],
    labels: &[Option<bool>],
    opts: FitOptions,
    epochs: &[usize],
) -> Result<Vec<Fitted>, TrainError> {
    let mut rows: Vec<usize> = rows
        .iter()
        .copied()
        .filter(|&i| labels.get(i).copied().flatten().is_some())
        .collect();
    let pos = rows.iter().filter(|&&i| labels[i] == Some(true)).count();
    let dim = x.dim;
    if rows.is_empty() || pos == 0 || pos == rows.len() {
        // One class only: constant (smoothed) probability, no weights.
        let p = (pos as f64 + 1.0) / (rows.len() as f64 + 2.0);
        return Ok(epochs
            .iter()
            .map(|_| (vec![0.0; dim], (p / (1.0 - p)).ln()))
            .collect());
    }
    let params = Ftrl::<f64>::params()
        .alpha(opts.alpha)
        .beta(opts.beta)
        .l1_ratio(opts.l1)
        .l2_ratio(opts.l2)
        .check()
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    // The last column is the constant 1 of the intercept (linfa's FTRL has none of its own).
    let width = dim + 1;
    let batch = opts.batch_size.max(1);
    let mut dense = Array2::<f64>::zeros((batch, width));
    let mut rng = SplitMix64::new(opts.seed);
    let mut model: Option<Ftrl<f64>> = None;
    let mut out = Vec::with_capacity(epochs.len());
    let last = epochs.last().copied().unwrap_or(1);
    for epoch in 1..=last {
        rng.shuffle(&mut rows);
        for chunk in rows.chunks(batch) {
            for (r, &i) in chunk.iter().enumerate() {
                for (j, v) in x.row(i) {
                    dense[[r, j]] = f64::from(v);
                }
                dense[[r, dim]] = 1.0;
            }
            let records = dense.slice(s![..chunk.len(), ..]);
            let targets: Array1<bool> = chunk.iter().map(|&i| labels[i] == Some(true)).collect();
            let step = DatasetBase::new(records, targets);
            model = Some(
                params
                    .fit_with(model.take(), &step)
                    .map_err(|e| TrainError::Fit(e.to_string()))?,
            );
            for (r, &i) in chunk.iter().enumerate() {
                for (j, _) in x.row(i) {
                    dense[[r, j]] = 0.0;
                }
            }
        }
        if epochs.contains(&epoch) {
            let w = model
                .as_ref()
                .ok_or_else(|| TrainError::Fit("no training batch".into()))?
                .get_weights();
            out.push((w.iter().take(dim).copied().collect(), w[dim]));
        }
    }
    Ok(out)
}

/// Per-task logit offsets fitted on top of a fitted text model (a second stage, so the text
/// weights are those of the prompt-only model and a request without a known task is scored
/// exactly as by that model). `logits[i][m]` is the model's training logit of row `i` for
/// model `m`, `tasks[i]` the row's task index (None: no task), `labels[m][i]` as in [`fit`].
/// For each model and task, the offset `b` maximises the log-likelihood of that task's labels
/// under `sigmoid(logit + b)` minus `lambda * b^2 / 2` (Newton's method; ridge `lambda` pulls
/// tasks with few rows towards 0). Returns `offsets[m][task]`.
pub fn fit_task_offsets(
    logits: &[Vec<f64>],
    labels: &[Vec<Option<bool>>],
    tasks: &[Option<usize>],
    n_tasks: usize,
    lambda: f64,
) -> Vec<Vec<f64>> {
    let lambda = lambda.max(1e-6);
    labels
        .iter()
        .enumerate()
        .map(|(m, lab)| {
            let mut rows: Vec<Vec<(f64, bool)>> = vec![Vec::new(); n_tasks];
            for (i, task) in tasks.iter().enumerate() {
                if let (Some(t), Some(y)) = (task, lab.get(i).copied().flatten())
                    && let (Some(r), Some(z)) =
                        (rows.get_mut(*t), logits.get(i).and_then(|l| l.get(m)))
                {
                    r.push((*z, y));
                }
            }
            rows.iter().map(|r| task_offset(r, lambda)).collect()
        })
        .collect()
}

/// The root of the penalised score `g(b) = sum(y - sigmoid(z + b)) - lambda * b` (strictly
/// decreasing, so the optimum is unique and lies in `[-n / lambda, n / lambda]`): Newton steps
/// kept inside a bracket that shrinks around the root, with bisection when a step leaves it
/// (a plain Newton step overshoots where the logits are large and `sigmoid'` is tiny).
fn task_offset(rows: &[(f64, bool)], lambda: f64) -> f64 {
    let score = |b: f64| -> (f64, f64) {
        let (mut g, mut h) = (-lambda * b, lambda);
        for &(z, y) in rows {
            let p = sigmoid(z + b);
            g += f64::from(u8::from(y)) - p;
            h += p * (1.0 - p);
        }
        (g, h)
    };
    let bound = rows.len() as f64 / lambda + 1.0;
    let (mut lo, mut hi) = (-bound, bound);
    let mut b = 0.0f64;
    for _ in 0..200 {
        let (g, h) = score(b);
        // Converged at this b: stop before moving it (a step that lands on the bracket's end
        // would otherwise be replaced by a bisection away from the root).
        if (g / h).abs() < 1e-12 || hi - lo < 1e-12 {
            return b;
        }
        if g > 0.0 {
            lo = b;
        } else {
            hi = b;
        }
        let newton = b + g / h;
        b = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
    }
    b
}

/// Platt scaling of one model's logits `z` against its labels: the `(a, c)` maximising the
/// log-likelihood of the labels under `sigmoid(a * z + c)`, with a small ridge pulling towards
/// the identity `(1, 0)` (Newton's method with step halving). Fitted on out-of-fold logits, it
/// corrects predictions that run too confident or too timid; folded into the weights
/// ([`LinearModel::rescale`]) it changes neither the ONNX graph nor the service.
pub fn fit_platt(z: &[f64], labels: &[bool]) -> (f64, f64) {
    const RIDGE: f64 = 1e-3;
    let loss = |a: f64, c: f64| -> f64 {
        let nll: f64 = z
            .iter()
            .zip(labels)
            .map(|(&z, &y)| {
                let t = a * z + c;
                // -log sigmoid(t) = softplus(-t); -log(1 - sigmoid(t)) = softplus(t).
                let softplus = |x: f64| if x > 30.0 { x } else { x.exp().ln_1p() };
                if y { softplus(-t) } else { softplus(t) }
            })
            .sum();
        nll + RIDGE / 2.0 * ((a - 1.0).powi(2) + c * c)
    };
    let (mut a, mut c) = (1.0f64, 0.0f64);
    let mut current = loss(a, c);
    for _ in 0..100 {
        let (mut ga, mut gc) = (RIDGE * (a - 1.0), RIDGE * c);
        let (mut haa, mut hac, mut hcc) = (RIDGE, 0.0, RIDGE);
        for (&z, &y) in z.iter().zip(labels) {
            let p = sigmoid(a * z + c);
            let r = p - f64::from(u8::from(y));
            ga += r * z;
            gc += r;
            let w = p * (1.0 - p);
            haa += w * z * z;
            hac += w * z;
            hcc += w;
        }
        let det = haa * hcc - hac * hac;
        if det.abs() < 1e-300 {
            break;
        }
        let (da, dc) = ((hcc * ga - hac * gc) / det, (haa * gc - hac * ga) / det);
        let mut step = 1.0;
        let mut improved = false;
        while step > 1e-8 {
            let (na, nc) = (a - step * da, c - step * dc);
            let l = loss(na, nc);
            if l <= current {
                improved = current - l > 1e-12 * current.abs().max(1.0);
                (a, c, current) = (na, nc, l);
                break;
            }
            step /= 2.0;
        }
        if !improved {
            break;
        }
    }
    (a, c)
}

impl LinearModel {
    /// Model `m`'s logit becomes `a * logit + c` (Platt scaling folded into its weights).
    pub fn rescale(&mut self, m: usize, a: f64, c: f64) {
        if let (Some(w), Some(b)) = (self.weights.get_mut(m), self.bias.get_mut(m)) {
            w.iter_mut().for_each(|v| *v *= a);
            *b = a * *b + c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_direction_of_a_separable_signal() {
        // feature 0 high => model A acceptable; model B the opposite (B has more positives).
        let mut x = SparseRows::new(2);
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..40 {
            let on = i % 2 == 1;
            x.push_dense(&[if on { 1.0 } else { 0.0 }, 0.5]);
            a.push(Some(on));
            b.push(if i == 3 { None } else { Some(!on || i == 5) });
        }
        let m = fit(
            &x,
            &["a".into(), "b".into()],
            &[a, b],
            FitOptions {
                alpha: 0.5,
                l1: 0.0,
                l2: 0.0,
                epochs: 100,
                batch_size: 8,
                ..FitOptions::default()
            },
        )
        .unwrap();
        let hi = m.predict_row(&[1.0, 0.5]);
        let lo = m.predict_row(&[0.0, 0.5]);
        assert!(hi[0] > 0.8 && lo[0] < 0.2, "{hi:?} {lo:?}");
        assert!(hi[1] < 0.2 && lo[1] > 0.8, "{hi:?} {lo:?}");
        // Sparse and dense prediction agree.
        assert_eq!(m.predict_sparse(&x)[1], m.predict_row(&x.dense_row(1)));
    }

    #[test]
    fn task_offsets_fit_each_tasks_rate_on_top_of_the_logits_shrunk_by_lambda() {
        // Model 0: task 0 has 8 of 10 rows acceptable, task 1 has 2 of 10, with logits 0; rows
        // without a task or without a label are ignored. Model 1: every logit is already
        // ln(4) and task 0's rate is 4/5, so its offset is 0.
        let mut logits = Vec::new();
        let mut tasks = Vec::new();
        let (mut l0, mut l1) = (Vec::new(), Vec::new());
        for i in 0..20 {
            let task = i / 10;
            logits.push(vec![0.0, 4f64.ln()]);
            tasks.push(Some(task));
            l0.push(Some(if task == 0 { i % 10 < 8 } else { i % 10 < 2 }));
            l1.push(if task == 0 { Some(i % 5 != 0) } else { None });
        }
        logits.push(vec![5.0, 5.0]);
        tasks.push(None);
        l0.push(Some(false));
        l1.push(Some(false));
        let labels = [l0, l1];
        let off = fit_task_offsets(&logits, &labels, &tasks, 3, 1e-9);
        assert!((off[0][0] - 4f64.ln()).abs() < 1e-6, "{off:?}");
        assert!((off[0][1] + 4f64.ln()).abs() < 1e-6, "{off:?}");
        assert!(off[1][0].abs() < 1e-6, "{off:?}");
        // A task without rows (task 2, and task 1 for model 1) gets no offset.
        assert_eq!((off[0][2], off[1][1], off[1][2]), (0.0, 0.0, 0.0));
        // Ridge: the offset shrinks towards 0 as lambda grows.
        let shrunk = fit_task_offsets(&logits, &labels, &tasks, 3, 10.0);
        assert!(
            shrunk[0][0] > 0.0 && shrunk[0][0] < 0.5 * off[0][0],
            "{shrunk:?}"
        );
    }

    #[test]
    fn task_offsets_converge_where_the_logits_are_large() {
        // A model the text calls near-certain (logit +3 or -4) that is right on half / three
        // quarters of a task's rows: plain Newton from 0 overshoots here (steps of ~g / lambda
        // where sigmoid' is tiny); the offset must be the root of the penalised score.
        for (z, n, pos, lambda) in [
            (3.0, 200, 100, 2.0),
            (4.0, 40, 20, 2.0),
            (-4.0, 40, 30, 2.0),
        ] {
            let logits: Vec<Vec<f64>> = (0..n).map(|_| vec![z]).collect();
            let labels = [(0..n).map(|i| Some(i < pos)).collect::<Vec<_>>()];
            let tasks = vec![Some(0); n];
            let b = fit_task_offsets(&logits, &labels, &tasks, 1, lambda)[0][0];
            let g = pos as f64 - n as f64 * sigmoid(z + b) - lambda * b;
            assert!(g.abs() < 1e-6, "z {z}: offset {b}, score {g}");
            assert!(
                b.signum() == -z.signum() && b.abs() < z.abs() + 1.0,
                "z {z}: offset {b}"
            );
        }
        // Ordinary tasks (varied logits): the offset is the root too, to 1e-6.
        let mut rng = SplitMix64::new(3);
        for _ in 0..200 {
            let n = 20 + (rng.next_f64() * 180.0) as usize;
            let shift = 3.0 * rng.next_f64() - 1.5;
            let rows: Vec<(f64, bool)> = (0..n)
                .map(|_| {
                    let z = 4.0 * rng.next_f64() - 2.0 + shift;
                    (z, rng.next_f64() < sigmoid(z - shift))
                })
                .collect();
            let b = task_offset(&rows, 2.0);
            let g: f64 = rows
                .iter()
                .map(|&(z, y)| f64::from(u8::from(y)) - sigmoid(z + b))
                .sum::<f64>()
                - 2.0 * b;
            assert!(g.abs() < 1e-6, "offset {b}, score {g}");
        }
    }

    #[test]
    fn platt_scaling_recovers_a_known_distortion() {
        // Labels drawn with P = sigmoid(2 z - 1): the fit on the raw logits z is near (2, -1).
        let mut rng = SplitMix64::new(5);
        let z: Vec<f64> = (0..20_000).map(|_| 6.0 * rng.next_f64() - 3.0).collect();
        let y: Vec<bool> = z
            .iter()
            .map(|&z| rng.next_f64() < sigmoid(2.0 * z - 1.0))
            .collect();
        let (a, c) = fit_platt(&z, &y);
        assert!((a - 2.0).abs() < 0.1 && (c + 1.0).abs() < 0.1, "{a} {c}");
        // Already calibrated logits stay near the identity.
        let y1: Vec<bool> = z.iter().map(|&z| rng.next_f64() < sigmoid(z)).collect();
        let (a1, c1) = fit_platt(&z, &y1);
        assert!((a1 - 1.0).abs() < 0.06 && c1.abs() < 0.06, "{a1} {c1}");
        // Folded into a model, the prediction is sigmoid(a z + c).
        let mut m = LinearModel {
            models: vec!["m".into()],
            dim: 1,
            weights: vec![vec![0.5]],
            bias: vec![0.25],
        };
        m.rescale(0, a, c);
        let p = m.predict_row(&[2.0])[0];
        assert!((p - sigmoid(a * 1.25 + c)).abs() < 1e-12);
    }

    #[test]
    fn one_class_labels_give_a_constant_model_and_bad_shapes_are_errors() {
        let mut x = SparseRows::new(1);
        x.push_dense(&[1.0]);
        x.push_dense(&[0.0]);
        let m = fit(
            &x,
            &["a".into()],
            &[vec![Some(true), Some(true)]],
            FitOptions::default(),
        )
        .unwrap();
        assert_eq!(m.weights[0], vec![0.0]);
        assert!((sigmoid(m.bias[0]) - 0.75).abs() < 1e-12);
        assert!(
            fit(
                &x,
                &["a".into()],
                &[vec![Some(true)]],
                FitOptions::default()
            )
            .is_err()
        );
    }
}
