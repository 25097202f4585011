//! Shadow report: decisions where the service recorded both the live and the shadow
//! router's choice, with outcomes: agreement and estimated quality/cost of each.
//!
//! A router's choice is scored with the observed outcome when it was the model that
//! ran; otherwise quality is estimated by the decision's `predicted_quality` for that
//! model, else the mean observed quality of that model on the same task (else overall),
//! and cost by the mean observed cost of that model (same task, else overall). The task
//! means use the outcomes of every decision, with or without a shadow decision.
//! Unreadable lines are counted and listed as `file:line: reason`. Records are read as the
//! projections [`DecisionRouting`] and [`OutcomeLabel`] of the service's log schema (every
//! version of it).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use signalbox_features::log_schema::{DecisionRouting, OutcomeLabel};
use signalbox_features::log_segments::sort_segments;

use crate::error::TrainError;
use crate::ingest::segment_files;
use crate::lines::for_each_line;

/// Per-router estimate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouterEstimate {
    pub decisions: usize,
    pub mean_quality: f64,
    pub mean_cost_usd: f64,
    /// Decisions whose quality for this router was observed (not estimated).
    pub observed: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowReport {
    pub decisions_with_shadow: usize,
    pub with_outcome: usize,
    pub agreement: f64,
    /// Keyed by router name (`rules`, `learned`).
    pub routers: BTreeMap<String, RouterEstimate>,
    pub unestimable: usize,
    pub bad_lines: usize,
    /// Unreadable lines as `file:line: reason`.
    pub malformed: Vec<String>,
}

/// The report of one log directory.
pub fn run(dir: &Path) -> Result<ShadowReport, TrainError> {
    run_dirs(std::slice::from_ref(&dir.to_path_buf()))
}

/// The report of the logs in `dirs` (those of several replicas, say), read as one log: every
/// directory's segments, oldest first.
pub fn run_dirs(dirs: &[PathBuf]) -> Result<ShadowReport, TrainError> {
    let files = |kind: &str| -> Result<Vec<PathBuf>, TrainError> {
        let mut all = Vec::new();
        for dir in dirs {
            all.extend(segment_files(dir, kind)?);
        }
        sort_segments(&mut all, kind);
        Ok(all)
    };
    let mut decisions = Vec::new();
    // decision_id -> task of every decision (for the per-task means).
    let mut task_of: HashMap<String, Option<String>> = HashMap::new();
    let mut malformed: Vec<String> = Vec::new();
    for p in files("decisions")? {
        for_each_line(&p, |line_no, line| {
            match serde_json::from_str::<DecisionRouting>(line) {
                Ok(d) => {
                    task_of.insert(d.decision_id.clone(), d.task.clone());
                    if d.shadow.is_some() {
                        decisions.push(d);
                    }
                }
                Err(e) => malformed.push(format!("{}:{line_no}: decision: {e}", p.display())),
            }
            Ok(())
        })?;
    }
    let mut outcomes: HashMap<String, Vec<OutcomeLabel>> = HashMap::new();
    let mut task_model: HashMap<(String, String), (f64, f64, usize, usize)> = HashMap::new();
    let mut model_mean: HashMap<String, (f64, f64, usize, usize)> = HashMap::new();
    for p in files("outcomes")? {
        for_each_line(&p, |line_no, line| {
            let o = match serde_json::from_str::<OutcomeLabel>(line) {
                Ok(o) => o,
                Err(e) => {
                    malformed.push(format!("{}:{line_no}: outcome: {e}", p.display()));
                    return Ok(());
                }
            };
            let add = |e: &mut (f64, f64, usize, usize)| {
                e.0 += o.quality;
                e.2 += 1;
                if let Some(c) = o.cost_usd {
                    e.1 += c;
                    e.3 += 1;
                }
            };
            if let Some(Some(t)) = task_of.get(o.decision_id.as_str()) {
                add(task_model
                    .entry((t.to_string(), o.model_id.clone()))
                    .or_default());
            }
            add(model_mean.entry(o.model_id.clone()).or_default());
            outcomes.entry(o.decision_id.clone()).or_default().push(o);
            Ok(())
        })?;
    }
    drop(task_of);
    let bad_lines = malformed.len();
    let mean = |e: &(f64, f64, usize, usize)| {
        (
            (e.2 > 0).then(|| e.0 / e.2 as f64),
            (e.3 > 0).then(|| e.1 / e.3 as f64),
        )
    };
    let estimate = |d: &DecisionRouting, model: &str| -> (Option<f64>, Option<f64>) {
        let tm = d
            .task
            .as_ref()
            .and_then(|t| task_model.get(&(t.clone(), model.to_string())))
            .map(mean)
            .unwrap_or((None, None));
        let mm = model_mean.get(model).map(mean).unwrap_or((None, None));
        let q = d
            .predicted_quality
            .iter()
            .find(|p| p.model == model)
            .map(|p| p.p)
            .or(tm.0)
            .or(mm.0);
        (q, tm.1.or(mm.1))
    };
    let mut rep = ShadowReport {
        decisions_with_shadow: decisions.len(),
        bad_lines,
        malformed,
        ..ShadowReport::default()
    };
    let mut agree = 0usize;
    let mut sums: BTreeMap<String, (f64, f64, usize, usize)> = BTreeMap::new();
    for d in &decisions {
        let Some(sh) = &d.shadow else { continue };
        let Some(outs) = outcomes.get(&d.decision_id) else {
            continue;
        };
        let Some(live) = outs.iter().find(|o| o.model_id == d.primary) else {
            continue;
        };
        rep.with_outcome += 1;
        if sh.agrees {
            agree += 1;
        }
        let live_cost = live.cost_usd.or_else(|| estimate(d, &d.primary).1);
        let shadow_obs = outs.iter().find(|o| o.model_id == sh.primary);
        let (sq, sc, s_obs) = match shadow_obs {
            Some(o) => (
                Some(o.quality),
                o.cost_usd.or_else(|| estimate(d, &sh.primary).1),
                true,
            ),
            None => {
                let (q, c) = estimate(d, &sh.primary);
                (q, c, false)
            }
        };
        let (Some(lc), Some(sq), Some(sc)) = (live_cost, sq, sc) else {
            rep.unestimable += 1;
            continue;
        };
        for (router, q, c, obs) in [
            (&d.router, live.quality, lc, true),
            (&sh.router, sq, sc, s_obs),
        ] {
            let e = sums.entry(router.clone()).or_default();
            e.0 += q;
            e.1 += c;
            e.2 += 1;
            e.3 += usize::from(obs);
        }
    }
    rep.agreement = if rep.with_outcome > 0 {
        agree as f64 / rep.with_outcome as f64
    } else {
        0.0
    };
    for (router, (q, c, n, obs)) in sums {
        rep.routers.insert(
            router,
            RouterEstimate {
                decisions: n,
                mean_quality: q / n.max(1) as f64,
                mean_cost_usd: c / n.max(1) as f64,
                observed: obs,
            },
        );
    }
    Ok(rep)
}

pub fn render(r: &ShadowReport) -> String {
    let mut s = format!(
        "shadow report: {} decisions with a shadow decision, {} with an outcome of the live model\n  agreement: {:.1}%\n",
        r.decisions_with_shadow,
        r.with_outcome,
        100.0 * r.agreement
    );
    for (name, e) in &r.routers {
        s += &format!(
            "  {name}: {} decisions, est. quality {:.3}, est. cost ${:.6}/request ({} observed, {} estimated)\n",
            e.decisions,
            e.mean_quality,
            e.mean_cost_usd,
            e.observed,
            e.decisions - e.observed
        );
    }
    s += &format!(
        "  not estimable: {}, unreadable lines: {}\n",
        r.unestimable, r.bad_lines
    );
    for m in r.malformed.iter().take(20) {
        s += &format!("    {m}\n");
    }
    if r.malformed.len() > 20 {
        s += &format!("    ... and {} more\n", r.malformed.len() - 20);
    }
    s
}
