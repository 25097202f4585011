//! The evaluator: learned router vs. baselines on a test split, with RouteLLM's
//! metrics (two-model) and quality-vs-cost curves (N models).

use serde::Serialize;
use signalbox_features::QualityTarget;
use signalbox_features::routing::choose;

use crate::dataset::{Dataset, SplitMix64};
use crate::error::TrainError;
use crate::metrics::{CostQuality, aiq, max_quality_within_cost, min_cost_for_quality, pgr_curve};
use crate::reliability::{Calibration, calibration};

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
    #[serde(flatten)]
    pub figures: CostFigures,
}

/// The N-model figures of a quality-vs-cost curve (costs relative to always using the best
/// single model; points of the curve may be mixed with their neighbours).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostFigures {
    /// Highest mean quality at no more than the best single model's cost (None: never that
    /// cheap).
    pub quality_at_best_cost: Option<f64>,
    /// Lowest relative cost reaching 95% / 100% of the best single model's quality.
    pub cost_at_95: Option<f64>,
    pub cost_at_100: Option<f64>,
    /// RouterBench's AIQ over the cost range of the single models ([`aiq`]).
    pub aiq: f64,
}

/// One model used for every prompt.
#[derive(Debug, Clone, Serialize)]
pub struct SingleModel {
    pub model: String,
    /// Mean cost per call relative to the best single model's.
    pub cost: f64,
    pub quality: f64,
    pub cheapest: bool,
    #[serde(flatten)]
    pub figures: CostFigures,
}

/// The realised quality and cost on the test split of the learned router at one
/// `quality_preference` (as the service maps it: a quality target between the policy's
/// `min_quality_target` and `max_quality_target`, then the bundle's calibrated margin).
#[derive(Debug, Clone, Serialize)]
pub struct PreferencePoint {
    pub preference: f64,
    pub quality_target: f64,
    pub margin: f64,
    pub quality: f64,
    /// Relative to always using the best single model.
    pub cost: f64,
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
    /// Mean cost per call of the best single model (the unit of `costs` or of `cost_usd`).
    pub best_cost: f64,
    /// How a call's cost is counted on the curves.
    pub cost_basis: String,
    /// (router name, result) in report order.
    pub routers: Vec<(String, RouterResult)>,
    /// Each model used alone (model order).
    pub single_models: Vec<SingleModel>,
    /// Calibration of the learned router's predictions (with and without the tasks).
    pub calibration: Vec<Calibration>,
    /// The learned router's realised quality and cost per quality_preference (empty when not
    /// measured).
    pub preference: Vec<PreferencePoint>,
    /// Which split the preference table's margins were calibrated on.
    pub preference_calibration: Option<String>,
    /// The cross-validation that chose the classifier's settings, if any.
    pub selection: Option<signalbox_features::CvSelection>,
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
    /// Each test prompt's own cost per model (`prompt_costs[p][m]`), for the curves; None: the
    /// per-model `costs`.
    pub prompt_costs: Option<&'a [Vec<f64>]>,
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
    if let Some(pc) = inp.prompt_costs
        && (pc.len() != ds.len() || pc.iter().any(|r| r.len() != nm))
    {
        return Err(TrainError::Argument(format!(
            "{} per-prompt cost rows for {} test prompts x {nm} models",
            pc.len(),
            ds.len()
        )));
    }
    let cost_of =
        |p: usize, m: usize| -> f64 { inp.prompt_costs.map_or(inp.costs[m], |pc| pc[p][m]) };
    let mean_cost = |m: usize| all.iter().map(|&p| cost_of(p, m)).sum::<f64>() / na;
    let best = (0..nm)
        .max_by(|&a, &b| {
            mean_q(a)
                .total_cmp(&mean_q(b))
                .then(mean_cost(b).total_cmp(&mean_cost(a)))
        })
        .unwrap_or(si);
    let best_q = mean_q(best);
    let best_cost = mean_cost(best).max(1e-12);
    let point = |pick: &dyn Fn(usize) -> usize| -> CostQuality {
        let (mut c, mut q) = (0.0, 0.0);
        for &p in &all {
            let m = pick(p);
            c += cost_of(p, m);
            q += col(ds, p, m).unwrap_or(0.0);
        }
        CostQuality {
            cost: c / na / best_cost,
            quality: q / na,
        }
    };
    let rows: Vec<usize> = (0..ds.len()).collect();
    let curve_of = |probs: &[Vec<f64>]| -> Vec<CostQuality> {
        match learned_curve(ds, &rows, probs, inp.costs, inp.prompt_costs) {
            Some((curve, _)) => curve,
            // No prompt has every model's outcome: the points of an empty mean.
            None => margin_grid()
                .into_iter()
                .map(|_| point(&|_| best))
                .collect(),
        }
    };
    let cheapest = (0..nm)
        .min_by(|&a, &b| {
            mean_cost(a)
                .total_cmp(&mean_cost(b))
                .then(mean_q(b).total_cmp(&mean_q(a)))
        })
        .unwrap_or(wi);
    let singles: Vec<CostQuality> = (0..nm).map(|m| point(&|_| m)).collect();
    let (lo, hi) = singles.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p.cost), hi.max(p.cost))
    });
    let figures = |curve: &[CostQuality]| CostFigures {
        quality_at_best_cost: max_quality_within_cost(curve, 1.0 + 1e-9),
        cost_at_95: min_cost_for_quality(curve, 0.95 * best_q),
        cost_at_100: min_cost_for_quality(curve, best_q),
        aiq: aiq(curve, singles[cheapest], lo, hi),
    };
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
                figures: figures(&curve),
                curve,
                strong_share,
                pgr,
            },
        ));
    }
    let single_models = singles
        .iter()
        .enumerate()
        .map(|(m, p)| SingleModel {
            model: ds.models[m].clone(),
            cost: p.cost,
            quality: p.quality,
            cheapest: m == cheapest,
            figures: figures(&[*p]),
        })
        .collect();
    let labels = ds.labels(inp.quality_threshold);
    let mut calibrations = vec![calibration(LEARNED, &ds.models, inp.probs, &labels)];
    if let Some(po) = inp.prompt_only_probs {
        calibrations.push(calibration(LEARNED_PROMPT_ONLY, &ds.models, po, &labels));
    }
    let with_costs = inp
        .prompt_costs
        .map(|_| ds.cost.iter().flatten().filter(|c| c.is_some()).count());
    let cost_basis = match with_costs {
        Some(n) => format!(
            "each prompt's own cost_usd of the chosen model ({n} of {} prompt x model pairs; the model's mean elsewhere)",
            ds.len() * nm
        ),
        None => "one relative cost per model".to_string(),
    };
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
        best_cost,
        cost_basis,
        routers: out,
        single_models,
        calibration: calibrations,
        preference: Vec::new(),
        preference_calibration: None,
        selection: None,
    })
}

/// The learned router's quality-vs-cost curve over the prompts `rows` of `ds` that have every
/// model's outcome, one point per margin of [`margin_grid`] (cost relative to the best single
/// model over those prompts), and that best model's mean quality. `probs[p]` are prompt `p`'s
/// predictions (rows of `ds`); the rule picks by the per-model `costs`, the curve counts
/// `prompt_costs` where given. None without such prompts.
pub fn learned_curve(
    ds: &Dataset,
    rows: &[usize],
    probs: &[Vec<f64>],
    costs: &[f64],
    prompt_costs: Option<&[Vec<f64>]>,
) -> Option<(Vec<CostQuality>, f64)> {
    let nm = ds.models.len();
    let all: Vec<usize> = rows
        .iter()
        .copied()
        .filter(|&p| (0..nm).all(|m| ds.quality[p][m].is_some()))
        .collect();
    if all.is_empty() || nm == 0 {
        return None;
    }
    let na = all.len() as f64;
    let q = |p: usize, m: usize| f64::from(ds.quality[p][m].unwrap_or(0.0));
    let cost_of = |p: usize, m: usize| prompt_costs.map_or(costs[m], |pc| pc[p][m]);
    let mean_q = |m: usize| all.iter().map(|&p| q(p, m)).sum::<f64>() / na;
    let mean_c = |m: usize| all.iter().map(|&p| cost_of(p, m)).sum::<f64>() / na;
    let best = (0..nm).max_by(|&a, &b| {
        mean_q(a)
            .total_cmp(&mean_q(b))
            .then(mean_c(b).total_cmp(&mean_c(a)))
    })?;
    let best_c = mean_c(best).max(1e-12);
    let allowed = vec![true; nm];
    let picks: Vec<Vec<f32>> = all
        .iter()
        .map(|&p| probs[p].iter().map(|&v| v as f32).collect())
        .collect();
    let curve = margin_grid()
        .into_iter()
        .map(|margin| {
            let (mut c, mut qq) = (0.0, 0.0);
            for (&p, pr) in all.iter().zip(&picks) {
                let m = choose(pr, costs, &allowed, margin as f32).unwrap_or(best);
                c += cost_of(p, m);
                qq += q(p, m);
            }
            CostQuality {
                cost: c / na / best_c,
                quality: qq / na,
            }
        })
        .collect();
    Some((curve, mean_q(best)))
}

/// Calibrates the routing margin for each quality target (fraction of the best
/// model's quality) on `ds` with predictions `probs`: the largest margin (cheapest
/// routing) whose measured quality still reaches the target.
pub fn calibrate(
    ds: &Dataset,
    probs: &[Vec<f64>],
    costs: &[f64],
    prompt_costs: Option<&[Vec<f64>]>,
    targets: &[f64],
) -> Vec<QualityTarget> {
    let rows: Vec<usize> = (0..ds.len()).collect();
    let Some((curve, best_q)) = learned_curve(ds, &rows, probs, costs, prompt_costs) else {
        return Vec::new();
    };
    let best_q = best_q.max(1e-12);
    let sweep: Vec<(f64, f64, f64)> = margin_grid()
        .into_iter()
        .zip(&curve)
        .map(|(m, p)| (m, p.quality / best_q, p.cost))
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

/// The realised quality and cost of the learned router at each `quality_preference` of
/// `preferences`, read off its `curve` (one point per margin of [`margin_grid`]) at the margin
/// the service would use: target = `min_target + (max_target - min_target) * preference`,
/// margin = the calibrated entry with the smallest target at or above it
/// ([`signalbox_features::BundleManifest::margin_for_target`]).
pub fn preference_table(
    curve: &[CostQuality],
    targets: &[QualityTarget],
    (min_target, max_target): (f64, f64),
    preferences: &[f64],
) -> Vec<PreferencePoint> {
    let grid = margin_grid();
    preferences
        .iter()
        .filter_map(|&preference| {
            let target = min_target + (max_target - min_target) * preference.clamp(0.0, 1.0);
            let margin = targets.iter().find(|q| q.target + 1e-12 >= target)?.margin;
            // The calibrated margins are points of the grid; take the nearest.
            let k = grid
                .iter()
                .enumerate()
                .min_by(|a, b| (a.1 - margin).abs().total_cmp(&(b.1 - margin).abs()))?
                .0;
            let point = curve.get(k)?;
            Some(PreferencePoint {
                preference,
                quality_target: target,
                margin,
                quality: point.quality,
                cost: point.cost,
            })
        })
        .collect()
}
