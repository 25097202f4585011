//! Rendering of evaluation reports: JSON, human text, SVG picture.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::TrainError;
use crate::evaluate::EvalReport;
use crate::metrics::CostQuality;

fn pct(v: Option<f64>) -> String {
    v.map_or("never".into(), |v| format!("{:.1}%", 100.0 * v))
}

/// JSON report: per router `apgr`, `cpt50`, `cpt80` (fractions), and more.
pub fn to_json(reports: &[&EvalReport]) -> Value {
    let one = |r: &EvalReport| {
        let mut routers = serde_json::Map::new();
        for (name, res) in &r.routers {
            routers.insert(name.clone(), json!(res));
        }
        json!({
            "title": r.title,
            "strong": r.strong,
            "weak": r.weak,
            "models": r.models,
            "relative_costs": r.costs,
            "test_prompts_two_model": r.test_prompts_two_model,
            "test_prompts_all_models": r.test_prompts_all_models,
            "acc_strong": r.acc_strong,
            "acc_weak": r.acc_weak,
            "best_model": r.best_model,
            "best_quality": r.best_quality,
            "best_cost": r.best_cost,
            "cost_basis": r.cost_basis,
            "routers": Value::Object(routers),
            "single_models": r.single_models,
            "calibration": r.calibration,
            "preference": r.preference,
            "preference_calibration": r.preference_calibration,
            "selection": r.selection,
        })
    };
    if let [r] = reports {
        one(r)
    } else {
        json!({ "reports": reports.iter().map(|r| one(r)).collect::<Vec<_>>() })
    }
}

pub fn write_json(reports: &[&EvalReport], path: &Path) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(&to_json(reports))?;
    std::fs::write(path, text + "\n").map_err(TrainError::io(path))
}

/// Human-readable report (Markdown table).
pub fn to_text(r: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## {}\n", r.title);
    let _ = writeln!(
        s,
        "Test prompts: {} (strong {} acc {:.1}%, weak {} acc {:.1}%); quality-cost curves over {} prompts with every model, best model {} ({:.1}%).\n",
        r.test_prompts_two_model,
        r.strong,
        100.0 * r.acc_strong,
        r.weak,
        100.0 * r.acc_weak,
        r.test_prompts_all_models,
        r.best_model,
        100.0 * r.best_quality
    );
    let _ = writeln!(
        s,
        "| router | APGR | CPT(50%) | CPT(80%) | cost saved at 95% of best quality | operating point |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
    for (name, res) in &r.routers {
        let op = match (res.strong_share, res.pgr) {
            (Some(c), Some(p)) => format!("{:.1}% to strong, PGR {:.3}", 100.0 * c, p),
            _ => "score-ranked (curve)".into(),
        };
        let _ = writeln!(
            s,
            "| {name} | {:.3} | {} | {} | {} | {op} |",
            res.apgr,
            pct(res.cpt50),
            pct(res.cpt80),
            pct(res.cost_saved_at_95)
        );
    }
    n_model_text(r, &mut s);
    preference_text(r, &mut s);
    calibration_text(r, &mut s);
    selection_text(r, &mut s);
    s
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("never".into(), |v| format!("{v:.digits$}"))
}

/// The N-model figures: per router and single model, the quality reached at the best single
/// model's cost, the cost of reaching 95% and 100% of its quality, and AIQ.
fn n_model_text(r: &EvalReport, s: &mut String) {
    let _ = writeln!(
        s,
        "\nQuality and cost (cost relative to always using {}; {}):\n",
        r.best_model, r.cost_basis
    );
    let _ = writeln!(
        s,
        "| router | quality at ≤ best model's cost | cost at 95% of its quality | cost at 100% | AIQ |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    let row = |s: &mut String, name: &str, f: &crate::evaluate::CostFigures| {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {:.4} |",
            num(f.quality_at_best_cost, 4),
            pct(f.cost_at_95),
            pct(f.cost_at_100),
            f.aiq
        );
    };
    for (name, res) in &r.routers {
        row(s, name, &res.figures);
    }
    for m in &r.single_models {
        let tag = if m.cheapest { ", cheapest" } else { "" };
        let name = format!(
            "{} alone (cost {:.1}%{tag}, quality {:.4})",
            m.model,
            100.0 * m.cost,
            m.quality
        );
        row(s, &name, &m.figures);
    }
}

fn calibration_text(r: &EvalReport, s: &mut String) {
    for c in &r.calibration {
        let _ = writeln!(
            s,
            "\nCalibration of {}'s predicted P(acceptable) (Brier score; no-skill: always the observed rate; bias: mean predicted − observed):\n",
            c.router
        );
        let _ = writeln!(s, "| model | outcomes | Brier | no-skill Brier | bias |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for m in std::iter::once(&c.pooled).chain(&c.models) {
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} | {:.4} | {:+.3} |",
                m.model, m.n, m.brier, m.brier_of_base_rate, m.bias
            );
        }
        let _ = writeln!(s, "\nReliability, all models pooled:\n");
        let _ = writeln!(s, "| predicted | outcomes | mean predicted | observed |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for b in &c.pooled.bins {
            let _ = writeln!(
                s,
                "| {:.1}–{:.1} | {} | {} | {} |",
                b.lo,
                b.hi,
                b.n,
                num(b.mean_predicted, 3),
                num(b.observed, 3)
            );
        }
    }
}

fn preference_text(r: &EvalReport, s: &mut String) {
    if r.preference.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nThe learned router per quality_preference (margins calibrated on {}):\n",
        r.preference_calibration
            .as_deref()
            .unwrap_or("the test split")
    );
    let _ = writeln!(
        s,
        "| quality_preference | quality target | margin | mean quality | relative cost |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|");
    for p in &r.preference {
        let _ = writeln!(
            s,
            "| {:.2} | {:.3} | {:.4} | {:.4} | {:.1}% |",
            p.preference,
            p.quality_target,
            p.margin,
            p.quality,
            100.0 * p.cost
        );
    }
}

fn selection_text(r: &EvalReport, s: &mut String) {
    let Some(sel) = &r.selection else {
        return;
    };
    let _ = writeln!(
        s,
        "\nSettings chosen by {}-fold cross-validation on the training prompts (seed {}; by {}, lower is better; the test split is not used):\n",
        sel.folds, sel.seed, sel.criterion
    );
    let _ = writeln!(
        s,
        "| epochs | learning rate | L1 | L2 | columns | task λ | CV score (all folds' predictions) | per fold | chosen |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for c in &sel.candidates {
        let folds: Vec<String> = c.fold_scores.iter().map(|v| format!("{v:.4}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.4} | {} | {} |",
            c.settings.epochs,
            c.settings.learning_rate,
            c.settings.l1,
            c.settings.l2,
            c.settings.columns,
            c.settings.task_lambda,
            c.score,
            folds.join(", "),
            if c == &sel.chosen { "✓" } else { "" }
        );
    }
}

/// Mean, sample standard deviation, min and max.
fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), min, max)
}

/// Summary of repeated evaluations (one report per seeded split): per router, APGR mean ±
/// standard deviation and range, and mean CPT(50%) / CPT(80%) (over the repeats that reach
/// them; "never" counts as 100%); then the N-model figures: quality at the best single model's
/// cost, cost at 95% / 100% of its quality ("never" counts as 100%) and AIQ, mean ± sd and range.
pub fn repeats_summary(reports: &[&EvalReport]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## {} repeated splits\n", reports.len());
    let _ = writeln!(
        s,
        "| router | APGR mean ± sd | APGR min–max | CPT(50%) mean | CPT(80%) mean |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    let Some(first) = reports.first() else {
        return s;
    };
    let pick = |name: &str, f: &dyn Fn(&crate::evaluate::RouterResult) -> f64| -> Vec<f64> {
        reports
            .iter()
            .filter_map(|r| r.routers.iter().find(|(n, _)| n == name).map(|(_, x)| f(x)))
            .collect()
    };
    for (name, _) in &first.routers {
        let (m, sd, lo, hi) = stats(&pick(name, &|x| x.apgr));
        let (c50, ..) = stats(&pick(name, &|x| x.cpt50.unwrap_or(1.0)));
        let (c80, ..) = stats(&pick(name, &|x| x.cpt80.unwrap_or(1.0)));
        let _ = writeln!(
            s,
            "| {name} | {m:.3} ± {sd:.3} | {lo:.3}–{hi:.3} | {:.1}% | {:.1}% |",
            100.0 * c50,
            100.0 * c80
        );
    }
    let (bq, bsd, blo, bhi) = stats(&reports.iter().map(|r| r.best_quality).collect::<Vec<_>>());
    let _ = writeln!(
        s,
        "\nN-model figures (best single model's quality {bq:.4} ± {bsd:.4}, {blo:.4}–{bhi:.4}):\n"
    );
    let _ = writeln!(
        s,
        "| router | quality at ≤ best model's cost | cost at 95% (never: 100%) | cost at 100% (never: 100%) | AIQ |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    let cell = |v: &[f64], percent: bool| -> String {
        let (m, sd, lo, hi) = stats(v);
        if percent {
            format!(
                "{:.1}% ± {:.1} ({:.1}–{:.1}%)",
                100.0 * m,
                100.0 * sd,
                100.0 * lo,
                100.0 * hi
            )
        } else {
            format!("{m:.4} ± {sd:.4} ({lo:.4}–{hi:.4})")
        }
    };
    for (name, _) in &first.routers {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} |",
            cell(
                &pick(name, &|x| x.figures.quality_at_best_cost.unwrap_or(0.0)),
                false
            ),
            cell(&pick(name, &|x| x.figures.cost_at_95.unwrap_or(1.0)), true),
            cell(&pick(name, &|x| x.figures.cost_at_100.unwrap_or(1.0)), true),
            cell(&pick(name, &|x| x.figures.aiq), false)
        );
    }
    s
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#7f7f7f", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
];

/// SVG plot of the quality-vs-cost curves of all routers.
pub fn to_svg(r: &EvalReport) -> String {
    let (w, h, l, t, pr, pb) = (720.0, 460.0, 70.0, 40.0, 190.0, 50.0);
    let (pw, ph) = (w - l - pr, h - t - pb);
    let mut qmin = f64::INFINITY;
    let mut qmax = f64::NEG_INFINITY;
    let mut cmax: f64 = 1.0;
    let singles = r.single_models.iter().map(|m| CostQuality {
        cost: m.cost,
        quality: m.quality,
    });
    let curves = r
        .routers
        .iter()
        .flat_map(|(_, res)| res.curve.iter().copied());
    for p in curves.chain(singles) {
        qmin = qmin.min(p.quality);
        qmax = qmax.max(p.quality);
        cmax = cmax.max(p.cost);
    }
    if !qmin.is_finite() {
        qmin = 0.0;
        qmax = 1.0;
    }
    let pad = ((qmax - qmin) * 0.05).max(0.01);
    let (qmin, qmax) = (qmin - pad, qmax + pad);
    let x = |c: f64| l + pw * c / cmax;
    let y = |q: f64| t + ph * (1.0 - (q - qmin) / (qmax - qmin));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{l}" y="22" font-size="14">{}: quality vs. cost</text>"#,
        escape(&r.title)
    );
    let _ = writeln!(
        s,
        r#"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    for k in 0..=5 {
        let c = cmax * k as f64 / 5.0;
        let q = qmin + (qmax - qmin) * k as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.2}</text>"#,
            x(c),
            t + ph + 16.0,
            c
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{:.3}</text>"#,
            l - 6.0,
            y(q) + 4.0,
            q
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">cost relative to always using {}</text>"#,
        l + pw / 2.0,
        h - 12.0,
        escape(&r.best_model)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">mean quality</text>"#,
        t + ph / 2.0,
        t + ph / 2.0
    );
    for (k, (name, res)) in r.routers.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let mut pts = res.curve.clone();
        pts.sort_by(|a, b| a.cost.total_cmp(&b.cost));
        if pts.len() > 1 {
            let path: Vec<String> = pts
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.cost), y(p.quality)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        for p in pts.iter().filter(|_| res.curve.len() == 1) {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{color}"/>"#,
                x(p.cost),
                y(p.quality)
            );
        }
        let ly = t + 16.0 + 20.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{color}"/>"#,
            w - pr + 12.0,
            ly - 6.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{} (APGR {:.3})</text>"#,
            w - pr + 32.0,
            ly,
            escape(name),
            res.apgr
        );
    }
    // Each model alone: a grey ring with its name (models of the same cost and quality share
    // one label).
    let mut labelled: Vec<(f64, f64)> = Vec::new();
    for m in &r.single_models {
        let (cx, cy) = (x(m.cost), y(m.quality));
        let _ = writeln!(
            s,
            r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="4" fill="none" stroke="#555"/>"##
        );
        let near = labelled
            .iter()
            .filter(|(lx, ly)| (lx - cx).abs() < 1.0 && (ly - cy).abs() < 12.0)
            .count();
        labelled.push((cx, cy));
        // Right of the ring, or left of it near the right edge (the legend is there).
        let (lx, anchor) = if cx > l + 0.75 * pw {
            (cx - 6.0, "end")
        } else {
            (cx + 6.0, "start")
        };
        let _ = writeln!(
            s,
            r##"<text x="{lx:.1}" y="{:.1}" font-size="10" fill="#555" text-anchor="{anchor}">{}</text>"##,
            cy + 3.0 + 11.0 * near as f64,
            escape(&m.model)
        );
    }
    s += "</svg>\n";
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::stats;

    #[test]
    fn stats_of_a_small_sample() {
        let (m, sd, lo, hi) = stats(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (sd - 1.0).abs() < 1e-12);
        assert_eq!((lo, hi), (1.0, 3.0));
        assert_eq!(stats(&[5.0]), (5.0, 0.0, 5.0, 5.0));
    }
}
