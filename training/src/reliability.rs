//! Calibration of the predicted P(acceptable): Brier scores and reliability tables. The
//! service compares these probabilities across models (the cheapest model within a margin of
//! the best prediction), so a model whose probabilities run high or low is chosen too often or
//! too rarely.

use serde::Serialize;

/// Equal-width bins of the predicted probability in a reliability table.
pub const BINS: usize = 10;

/// One bin of a reliability table: predictions in `[lo, hi)` (the last bin includes 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    /// Mean predicted P(acceptable) of the bin (None: empty bin).
    pub mean_predicted: Option<f64>,
    /// Share of the bin's outcomes that were acceptable (None: empty bin).
    pub observed: Option<f64>,
}

/// Calibration of one model's predictions (or of all models' pooled).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCalibration {
    pub model: String,
    /// Outcomes scored.
    pub n: usize,
    /// Mean squared error of the predicted probability against the 0/1 label.
    pub brier: f64,
    /// The Brier score of always predicting the observed rate (what no skill scores).
    pub brier_of_base_rate: f64,
    /// Mean predicted minus observed rate (> 0: the model is predicted too good).
    pub bias: f64,
    pub bins: Vec<ReliabilityBin>,
}

/// Calibration of one router's predictions: per model and pooled over all models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub router: String,
    pub pooled: ModelCalibration,
    pub models: Vec<ModelCalibration>,
}

/// Calibration of `probs[p][m]` against `labels[m][p]` (the classifier's labels,
/// [`crate::dataset::Dataset::labels`]; None: no outcome, not scored).
pub fn calibration(
    router: &str,
    models: &[String],
    probs: &[Vec<f64>],
    labels: &[Vec<Option<bool>>],
) -> Calibration {
    let pairs = |m: Option<usize>| -> Vec<(f64, bool)> {
        probs
            .iter()
            .enumerate()
            .flat_map(|(p, pr)| {
                (0..models.len())
                    .filter(move |&k| m.is_none_or(|m| m == k))
                    .filter_map(move |k| Some((*pr.get(k)?, (*labels.get(k)?.get(p)?)?)))
            })
            .collect()
    };
    Calibration {
        router: router.to_string(),
        pooled: score("all models", &pairs(None)),
        models: models
            .iter()
            .enumerate()
            .map(|(m, id)| score(id, &pairs(Some(m))))
            .collect(),
    }
}

fn score(model: &str, pairs: &[(f64, bool)]) -> ModelCalibration {
    let n = pairs.len();
    let nf = n.max(1) as f64;
    let y = |v: bool| f64::from(u8::from(v));
    let rate = pairs.iter().map(|&(_, v)| y(v)).sum::<f64>() / nf;
    let mean_p = pairs.iter().map(|&(p, _)| p).sum::<f64>() / nf;
    let brier = pairs.iter().map(|&(p, v)| (p - y(v)).powi(2)).sum::<f64>() / nf;
    let brier_of_base_rate = pairs
        .iter()
        .map(|&(_, v)| (rate - y(v)).powi(2))
        .sum::<f64>()
        / nf;
    let mut sums = vec![(0usize, 0.0f64, 0.0f64); BINS];
    for &(p, v) in pairs {
        let b = ((p * BINS as f64) as usize).min(BINS - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += y(v);
    }
    ModelCalibration {
        model: model.to_string(),
        n,
        brier,
        brier_of_base_rate,
        bias: mean_p - rate,
        bins: sums
            .into_iter()
            .enumerate()
            .map(|(b, (k, sp, sy))| ReliabilityBin {
                lo: b as f64 / BINS as f64,
                hi: (b + 1) as f64 / BINS as f64,
                n: k,
                mean_predicted: (k > 0).then(|| sp / k as f64),
                observed: (k > 0).then(|| sy / k as f64),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brier_and_bins_by_hand() {
        let models = vec!["a".to_string(), "b".to_string()];
        // a: predictions 0.9 (right), 0.9 (wrong), 0.15 (wrong); b: 0.5 (right), no outcome.
        let probs = vec![vec![0.9, 0.5], vec![0.9, 0.7], vec![0.15, 0.2]];
        // labels[m][p]
        let labels = vec![
            vec![Some(true), Some(false), Some(false)],
            vec![Some(true), None, None],
        ];
        let c = calibration("learned", &models, &probs, &labels);
        let a = &c.models[0];
        assert_eq!(a.n, 3);
        let brier = (0.01 + 0.81 + 0.0225) / 3.0;
        assert!((a.brier - brier).abs() < 1e-12, "{}", a.brier);
        // Base rate 1/3: (4/9 + 1/9 + 1/9) / 3.
        assert!((a.brier_of_base_rate - 2.0 / 9.0).abs() < 1e-12);
        assert!((a.bias - ((1.95 / 3.0) - 1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(a.bins[9].n, 2);
        assert_eq!(a.bins[9].observed, Some(0.5));
        assert_eq!(a.bins[1].n, 1);
        assert_eq!(a.bins[1].mean_predicted, Some(0.15));
        assert_eq!(a.bins[0].observed, None);
        assert_eq!(c.models[1].n, 1);
        assert!((c.models[1].brier - 0.25).abs() < 1e-12);
        // Pooled: all four scored outcomes; a prediction of exactly 1 falls in the last bin.
        assert_eq!(c.pooled.n, 4);
        let one = calibration("x", &models[..1], &[vec![1.0]], &[vec![Some(true)]]);
        assert_eq!(one.pooled.bins[9].n, 1);
        assert_eq!(one.pooled.brier, 0.0);
    }
}
