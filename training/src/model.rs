//! The classifier: one L2-regularised logistic regression per model (linfa-logistic),
//! predicting P(quality >= threshold | prompt features).

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, ArrayView2, Axis, ShapeBuilder};

use crate::error::TrainError;

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
        self.weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| {
                let z: f64 = w.iter().zip(x).map(|(w, &x)| w * f64::from(x)).sum::<f64>() + b;
                sigmoid(z)
            })
            .collect()
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

    /// Predictions for a row-major matrix of `n x dim` features.
    pub fn predict(&self, x: &[f32]) -> Vec<Vec<f64>> {
        x.chunks(self.dim)
            .map(|row| self.predict_row(row))
            .collect()
    }
}

/// Fitting options.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// linfa `alpha`: L2 penalty `alpha/2 |w|^2` added to the summed log-loss.
    pub alpha: f64,
    pub max_iterations: u64,
    /// Only the `max_features` columns non-zero in the most training rows are given to
    /// linfa (document-frequency feature selection); the others get weight 0.
    pub max_features: usize,
}

/// Fits one logistic regression per model. `labels[m][i]` is the label of prompt row
/// `i` for model `m` (None: no outcome, row not used for that model).
pub fn fit(
    x: &[f32],
    dim: usize,
    models: &[String],
    labels: &[Vec<Option<bool>>],
    opts: FitOptions,
) -> Result<LinearModel, TrainError> {
    let n = x.len() / dim.max(1);
    let mut nnz = vec![0usize; dim];
    for row in x.chunks(dim) {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                nnz[j] += 1;
            }
        }
    }
    let mut cols: Vec<usize> = (0..dim).filter(|&j| nnz[j] > 0).collect();
    cols.sort_by(|&a, &b| nnz[b].cmp(&nnz[a]).then(a.cmp(&b)));
    cols.truncate(opts.max_features.max(1));
    cols.sort_unstable();
    let k = cols.len();
    // Column-major: linfa's gradient is X^T r, which ndarray (no BLAS) computes row by
    // row of X^T; column-major X makes those rows contiguous.
    let mut col_major = vec![0.0f64; n * k];
    for (c, &j) in cols.iter().enumerate() {
        for i in 0..n {
            col_major[c * n + i] = f64::from(x[i * dim + j]);
        }
    }
    let full: Array2<f64> = Array2::from_shape_vec((n, k).f(), col_major)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    let fitted: Vec<Result<(Vec<f64>, f64), TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = labels
            .iter()
            .map(|lab| {
                let full = full.view();
                scope.spawn(move || fit_one(full, lab, opts))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(TrainError::Fit("fitting thread panicked".into())))
            })
            .collect()
    });
    let mut weights = Vec::new();
    let mut bias = Vec::new();
    for r in fitted {
        let (w_sel, b) = r?;
        let mut w = vec![0.0; dim];
        for (&j, v) in cols.iter().zip(w_sel) {
            w[j] = v;
        }
        weights.push(w);
        bias.push(b);
    }
    Ok(LinearModel {
        models: models.to_vec(),
        dim,
        weights,
        bias,
    })
}

fn fit_one(
    full: ArrayView2<'_, f64>,
    labels: &[Option<bool>],
    opts: FitOptions,
) -> Result<(Vec<f64>, f64), TrainError> {
    let rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i].is_some()).collect();
    let y: Array1<bool> = rows.iter().map(|&i| labels[i] == Some(true)).collect();
    let dim = full.ncols();
    let pos = y.iter().filter(|&&v| v).count();
    if rows.is_empty() || pos == 0 || pos == rows.len() {
        // One class only: constant (smoothed) probability, no weights.
        let p = (pos as f64 + 1.0) / (rows.len() as f64 + 2.0);
        return Ok((vec![0.0; dim], (p / (1.0 - p)).ln()));
    }
    let params = LogisticRegression::default()
        .alpha(opts.alpha)
        .max_iterations(opts.max_iterations)
        .with_intercept(true);
    let fitted = if rows.len() == full.nrows() {
        params.fit(&DatasetBase::new(full, y))
    } else {
        let sub = full.select(Axis(0), &rows);
        params.fit(&DatasetBase::new(sub, y))
    }
    .map_err(|e| TrainError::Fit(e.to_string()))?;
    // linfa's positive class is the more frequent label: flip if that is `false`.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let w = fitted.params().iter().map(|v| sign * v).collect();
    Ok((w, sign * fitted.intercept()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_direction_of_a_separable_signal() {
        // feature 0 high => model A acceptable; model B the opposite (B has more positives).
        let mut x = Vec::new();
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..40 {
            let on = i % 2 == 1;
            x.extend_from_slice(&[if on { 1.0 } else { 0.0 }, 0.5]);
            a.push(Some(on));
            b.push(if i == 3 { None } else { Some(!on || i == 5) });
        }
        let m = fit(
            &x,
            2,
            &["a".into(), "b".into()],
            &[a, b],
            FitOptions {
                alpha: 0.1,
                max_iterations: 200,
                max_features: 2,
            },
        )
        .unwrap();
        let hi = m.predict_row(&[1.0, 0.5]);
        let lo = m.predict_row(&[0.0, 0.5]);
        assert!(hi[0] > 0.8 && lo[0] < 0.2, "{hi:?} {lo:?}");
        assert!(hi[1] < 0.2 && lo[1] > 0.8, "{hi:?} {lo:?}");
    }
}
