//! The evaluator: learned router vs. baselines on a test split, with RouteLLM's
//! metrics (two-model) and quality-vs-cost curves (N models).

use serde::Serialize;
use signalbox_features::QualityTarget;
use signalbox_features::routing::choose;

use crate::dataset::{Dataset, SplitMix64};
use crate::error::TrainError;
use crate::metrics::{CostQuality, min_cost_for_quality, pgr_curve};

/// Router names, in report order.
pub const LEARNED: &str = "learned";
/// The learned router scored without the prompts' tasks (what a router that sees only the
/// prompt, like RouteLLM's, is compared with); reported when the model has a task column for
/// some test prompt's task.
pub const LEARNED_PROMPT_ONLY: &str = "learned-prompt-only";
pub const RANDOM: &str = "random";
pub const ALWAYS_WEAK: &str = "always-weak";
pub const ALWAYS_STRONG: &str = "always-strong";
pub const RULES: &str = "rules";
pub const ORACLE: &str = "oracle";

/// Margins swept to trace the learned router's quality-vs-cost curve.
pub fn margin_grid() -> Vec<f64> {
    (0..=400).map(|k| k as f64 / 400.0).collect()
}

/// Results of one router.
#[derive(Debug, Clone, Serialize)]
pub struct RouterResult {
    /// RouteLLM APGR (two-model test prompts).
    pub apgr: f64,
    /// Share of calls to the strong model needed for PGR >= 50% / 80% (None: never).
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
    /// Quality-vs-cost curve on prompts with outcomes of every model (cost relative to
    /// always using the best model).
    pub curve: Vec<CostQuality>,
    /// 1 - (lowest relative cost reaching 95% of the best model's quality).
    pub cost_saved_at_95: Option<f64>,
    /// Where a fixed router sits: share of calls to the strong model and its PGR.
    pub strong_share: Option<f64>,
    pub pgr: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub title: String,
    pub strong: String,
    pub weak: String,
    pub models: Vec<String>,
    /// Relative cost per call of each model (same order as `models`).
    pub costs: Vec<f64>,
    pub test_prompts_two_model: usize,
    pub test_prompts_all_models: usize,
    pub acc_strong: f64,
    pub acc_weak: f64,
    pub best_model: String,
    pub best_quality: f64,
    /// (router name, result) in report order.
    pub routers: Vec<(String, RouterResult)>,
}

/// Inputs of an evaluation.
pub struct EvalInput<'a> {
    pub title: String,
    pub test: &'a Dataset,
    /// `probs[p][m]`: predicted P(acceptable), model order of `test.models`.
    pub probs: &'a [Vec<f64>],
    /// The same model's predictions without the prompts' tasks, if it uses tasks.
    pub prompt_only_probs: Option<&'a [Vec<f64>]>,
    pub costs: &'a [f64],
    pub strong: &'a str,
    pub weak: &'a str,
    /// Model index chosen by the rule-based router per prompt, if available.
    pub rules: Option<&'a [usize]>,
    pub quality_threshold: f64,
    pub seed: u64,
}

fn col(ds: &Dataset, p: usize, m: usize) -> Option<f64> {
    ds.quality[p][m].map(f64::from)
}

pub fn evaluate(inp: &EvalInput<'_>) -> Result<EvalReport, TrainError> {
    let ds = inp.test;
    let nm = ds.models.len();
    for probs in std::iter::once(inp.probs).chain(inp.prompt_only_probs) {
        if probs.len() != ds.len() || probs.iter().any(|p| p.len() != nm) {
            return Err(TrainError::Argument(format!(
                "{} prediction rows for {} test prompts x {nm} models",
                probs.len(),
                ds.len()
            )));
        }
    }
    let si = ds
        .model_index(inp.strong)
        .ok_or_else(|| TrainError::Argument(format!("strong model {} not in data", inp.strong)))?;
    let wi = ds
        .model_index(inp.weak)
        .ok_or_else(|| TrainError::Argument(format!("weak model {} not in data", inp.weak)))?;
    let two: Vec<usize> = (0..ds.len())
        .filter(|&p| col(ds, p, si).is_some() && col(ds, p, wi).is_some())
        .collect();
    let all: Vec<usize> = (0..ds.len())
        .filter(|&p| (0..nm).all(|m| col(ds, p, m).is_some()))
        .collect();
    if two.is_empty() {
        return Err(TrainError::NotEnoughData(
            "no test prompt has outcomes of both the strong and the weak model".into(),
        ));
    }
    let s: Vec<f64> = two.iter().map(|&p| col(ds, p, si).unwrap_or(0.0)).collect();
    let w: Vec<f64> = two.iter().map(|&p| col(ds, p, wi).unwrap_or(0.0)).collect();
    let n2 = two.len() as f64;
    let acc_s = s.iter().sum::<f64>() / n2;
    let acc_w = w.iter().sum::<f64>() / n2;

    // Quality-vs-cost over prompts with every model's outcome.
    let na = all.len().max(1) as f64;
    let mean_q = |m: usize| {
        all.iter()
            .map(|&p| col(ds, p, m).unwrap_or(0.0))
            .sum::<f64>()
            / na
    };
    let best = (0..nm)
        .max_by(|&a, &b| {
            mean_q(a)
                .total_cmp(&mean_q(b))
                .then(inp.costs[b].total_cmp(&inp.costs[a]))
        })
        .unwrap_or(si);
    let best_q = mean_q(best);
    let best_cost = inp.costs[best].max(1e-12);
    let point = |pick: &dyn Fn(usize) -> usize| -> CostQuality {
        let (mut c, mut q) = (0.0, 0.0);
        for &p in &all {
            let m = pick(p);
            c += inp.costs[m];
            q += col(ds, p, m).unwrap_or(0.0);
        }
        CostQuality {
            cost: c / na / best_cost,
            quality: q / na,
        }
    };
    let allowed = vec![true; nm];
    let curve_of = |probs: &[Vec<f64>]| -> Vec<CostQuality> {
        let pick = |p: usize, margin: f64| -> usize {
            let pr: Vec<f32> = probs[p].iter().map(|&v| v as f32).collect();
            choose(&pr, inp.costs, &allowed, margin as f32).unwrap_or(best)
        };
        margin_grid()
            .into_iter()
            .map(|mg| point(&|p| pick(p, mg)))
            .collect()
    };
    let cheapest = (0..nm)
        .min_by(|&a, &b| inp.costs[a].total_cmp(&inp.costs[b]))
        .unwrap_or(wi);
    let fixed = |m: usize| vec![point(&|_| m)];
    let oracle_pick = |p: usize| -> usize {
        let mut order: Vec<usize> = (0..nm).collect();
        order.sort_by(|&a, &b| inp.costs[a].total_cmp(&inp.costs[b]));
        order
            .iter()
            .copied()
            .find(|&m| col(ds, p, m).unwrap_or(0.0) >= inp.quality_threshold)
            .unwrap_or(cheapest)
    };
    let saved = |curve: &[CostQuality]| min_cost_for_quality(curve, 0.95 * best_q).map(|c| 1.0 - c);

    let mut rng = SplitMix64::new(inp.seed ^ 0x5eed);
    let mut routers: Vec<(String, Vec<f64>, Vec<CostQuality>, bool)> = Vec::new();
    let scores_of = |probs: &[Vec<f64>]| -> Vec<f64> {
        two.iter().map(|&p| probs[p][si] - probs[p][wi]).collect()
    };
    routers.push((
        LEARNED.into(),
        scores_of(inp.probs),
        curve_of(inp.probs),
        false,
    ));
    if let Some(po) = inp.prompt_only_probs {
        routers.push((
            LEARNED_PROMPT_ONLY.into(),
            scores_of(po),
            curve_of(po),
            false,
        ));
    }
    let random_scores: Vec<f64> = two.iter().map(|_| rng.next_f64()).collect();
    let mut rc = fixed(cheapest);
    rc.extend(fixed(best));
    routers.push((RANDOM.into(), random_scores, rc, false));
    routers.push((ALWAYS_WEAK.into(), vec![0.0; two.len()], fixed(wi), true));
    routers.push((ALWAYS_STRONG.into(), vec![1.0; two.len()], fixed(si), true));
    if let Some(rules) = inp.rules {
        let sc = two
            .iter()
            .map(|&p| if rules[p] == si { 1.0 } else { 0.0 })
            .collect();
        routers.push((RULES.into(), sc, vec![point(&|p| rules[p])], true));
    }
    let oracle_scores: Vec<f64> = s.iter().zip(&w).map(|(s, w)| s - w).collect();
    routers.push((
        ORACLE.into(),
        oracle_scores,
        vec![point(&oracle_pick)],
        false,
    ));

    let mut out = Vec::new();
    for (name, scores, curve, is_fixed) in routers {
        let pc = pgr_curve(&scores, &s, &w).ok_or_else(|| {
            TrainError::NotEnoughData("strong and weak model have equal test accuracy".into())
        })?;
        let (strong_share, pgr) = if is_fixed {
            let k = scores.iter().filter(|&&v| v > 0.5).count() as f64 / n2;
            let acc: f64 = scores
                .iter()
                .zip(s.iter().zip(&w))
                .map(|(sc, (s, w))| if *sc > 0.5 { *s } else { *w })
                .sum::<f64>()
                / n2;
            (Some(k), Some((acc - acc_w) / (acc_s - acc_w)))
        } else {
            (None, None)
        };
        out.push((
            name,
            RouterResult {
                apgr: pc.apgr(),
                cpt50: pc.cpt(0.5),
                cpt80: pc.cpt(0.8),
                cost_saved_at_95: saved(&curve),
                curve,
                strong_share,
                pgr,
            },
        ));
    }
    Ok(EvalReport {
        title: inp.title.clone(),
        strong: inp.strong.into(),
        weak: inp.weak.into(),
        models: ds.models.clone(),
        costs: inp.costs.to_vec(),
        test_prompts_two_model: two.len(),
        test_prompts_all_models: all.len(),
        acc_strong: acc_s,
        acc_weak: acc_w,
        best_model: ds.models[best].clone(),
        best_quality: best_q,
        routers: out,
    })
}

/// Calibrates the routing margin for each quality target (fraction of the best
/// model's quality) on `ds` with predictions `probs`: the largest margin (cheapest
/// routing) whose measured quality still reaches the target.
pub fn calibrate(
    ds: &Dataset,
    probs: &[Vec<f64>],
    costs: &[f64],
    targets: &[f64],
) -> Vec<QualityTarget> {
    let nm = ds.models.len();
    let all: Vec<usize> = (0..ds.len())
        .filter(|&p| (0..nm).all(|m| ds.quality[p][m].is_some()))
        .collect();
    let na = all.len().max(1) as f64;
    let q = |p: usize, m: usize| f64::from(ds.quality[p][m].unwrap_or(0.0));
    let mean_q = |m: usize| all.iter().map(|&p| q(p, m)).sum::<f64>() / na;
    let best = (0..nm)
        .max_by(|&a, &b| mean_q(a).total_cmp(&mean_q(b)))
        .unwrap_or(0);
    let (best_q, best_c) = (mean_q(best).max(1e-12), costs[best].max(1e-12));
    let allowed = vec![true; nm];
    let at = |margin: f64| -> (f64, f64) {
        let (mut c, mut qq) = (0.0, 0.0);
        for &p in &all {
            let pr: Vec<f32> = probs[p].iter().map(|&v| v as f32).collect();
            let m = choose(&pr, costs, &allowed, margin as f32).unwrap_or(best);
            c += costs[m];
            qq += q(p, m);
        }
        (qq / na / best_q, c / na / best_c)
    };
    let sweep: Vec<(f64, f64, f64)> = margin_grid()
        .into_iter()
        .map(|m| {
            let (qr, cr) = at(m);
            (m, qr, cr)
        })
        .collect();
    targets
        .iter()
        .map(|&t| {
            let pick = sweep
                .iter()
                .filter(|(_, qr, _)| *qr + 1e-12 >= t)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .copied()
                .unwrap_or(sweep[0]);
            QualityTarget {
                target: t,
                margin: pick.0,
                achieved_quality_ratio: pick.1,
                cost_ratio: pick.2,
            }
        })
        .collect()
}
