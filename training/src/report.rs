//! Rendering of evaluation reports: JSON, human text, SVG picture.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::TrainError;
use crate::evaluate::EvalReport;

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
            "routers": Value::Object(routers),
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
    s
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
/// them; "never" counts as 100%).
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
    for (name, _) in &first.routers {
        let pick = |f: &dyn Fn(&crate::evaluate::RouterResult) -> f64| -> Vec<f64> {
            reports
                .iter()
                .filter_map(|r| r.routers.iter().find(|(n, _)| n == name).map(|(_, x)| f(x)))
                .collect()
        };
        let (m, sd, lo, hi) = stats(&pick(&|x| x.apgr));
        let (c50, ..) = stats(&pick(&|x| x.cpt50.unwrap_or(1.0)));
        let (c80, ..) = stats(&pick(&|x| x.cpt80.unwrap_or(1.0)));
        let _ = writeln!(
            s,
            "| {name} | {m:.3} ± {sd:.3} | {lo:.3}–{hi:.3} | {:.1}% | {:.1}% |",
            100.0 * c50,
            100.0 * c80
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
    for (_, res) in &r.routers {
        for p in &res.curve {
            qmin = qmin.min(p.quality);
            qmax = qmax.max(p.quality);
            cmax = cmax.max(p.cost);
        }
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
