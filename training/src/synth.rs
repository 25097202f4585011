//! Synthetic service logs (decisions + outcomes in the service's JSONL schema), for
//! scale measurements. Deterministic given the seed.

use std::io::Write;
use std::path::Path;

use crate::dataset::SplitMix64;
use crate::error::TrainError;

const TASKS: [&str; 7] = [
    "code",
    "math",
    "extraction",
    "classification",
    "summarization",
    "chat",
    "qa",
];
/// (model id, cost per call in USD, base P(correct)): models of the example catalog, with
/// costs in the catalog's order so a bundle trained on these logs serves under it.
const MODELS: [(&str, f64, f64); 3] = [
    ("gpt-4o-mini", 0.0003, 0.50),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", 0.0006, 0.60),
    ("gpt-4-1106-preview", 0.02, 0.85),
];
const WORDS: [&str; 24] = [
    "compute",
    "integral",
    "refactor",
    "function",
    "summarize",
    "article",
    "extract",
    "invoice",
    "classify",
    "sentiment",
    "explain",
    "history",
    "proof",
    "matrix",
    "python",
    "rust",
    "table",
    "email",
    "contract",
    "recipe",
    "translate",
    "bug",
    "latency",
    "budget",
];

/// Writes `rows` outcome rows (one decision per `models` outcomes) into `dir`, in
/// segments of `segment_rows` lines. Returns (decisions, outcomes) written.
pub fn generate(
    dir: &Path,
    rows: usize,
    segment_rows: usize,
    seed: u64,
) -> Result<(usize, usize), TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let mut rng = SplitMix64::new(seed);
    let decisions = rows.div_ceil(MODELS.len());
    let mut written = 0usize;
    let mut seg = 0usize;
    let open = |kind: &str, seg: usize| -> Result<std::io::BufWriter<std::fs::File>, TrainError> {
        let p = dir.join(format!("{kind}-20250101T000000-{seg:06}.jsonl"));
        let f = std::fs::File::create(&p).map_err(TrainError::io(&p))?;
        Ok(std::io::BufWriter::with_capacity(1 << 20, f))
    };
    let mut dw = open("decisions", seg)?;
    let mut ow = open("outcomes", seg)?;
    let mut in_seg = 0usize;
    for d in 0..decisions {
        if in_seg >= segment_rows {
            dw.flush().map_err(TrainError::io(dir))?;
            ow.flush().map_err(TrainError::io(dir))?;
            seg += 1;
            in_seg = 0;
            dw = open("decisions", seg)?;
            ow = open("outcomes", seg)?;
        }
        let task = TASKS[(rng.next_u64() % TASKS.len() as u64) as usize];
        let n_words = 8 + (rng.next_u64() % 60) as usize;
        let mut prompt = format!("[{task}] ");
        let mut hard = 0.0;
        for _ in 0..n_words {
            let w = WORDS[(rng.next_u64() % WORDS.len() as u64) as usize];
            if matches!(w, "proof" | "integral" | "matrix" | "contract") {
                hard += 0.08;
            }
            prompt += w;
            prompt.push(' ');
        }
        let id = format!("d{seed:x}-{d:09}");
        let ts = format!("2025-01-01T00:{:02}:{:02}Z", (d / 60) % 60, d % 60);
        let rec = serde_json::json!({
            "ts": ts, "decision_id": id, "request_id": format!("r{d}"), "tenant_id": "synthetic",
            "user_id": "", "task": task, "task_source": "detected", "data_class": "public",
            "mode": "batch", "risk_tier": "low", "prompt": prompt, "prompt_chars": prompt.len(),
            "pii": {}, "router": "rules", "primary": MODELS[0].0, "fallbacks": [],
            "shadow": null, "predicted_quality": null, "estimated_cost_usd": 0.001,
            "policy_version": "synthetic", "model_version": "", "reasons": [], "denied": false
        });
        writeln!(dw, "{rec}").map_err(TrainError::io(dir))?;
        for (model, cost, base) in MODELS {
            if written >= rows {
                break;
            }
            let p_ok: f64 = (base - hard
                + if task == "math" && base < 0.8 {
                    -0.15
                } else {
                    0.0
                })
            .clamp(0.02, 0.98);
            let ok = rng.next_f64() < p_ok;
            let rec = serde_json::json!({
                "ts": ts, "decision_id": id, "tenant_id": "synthetic", "user_id": "",
                "model_id": model, "success": true, "quality": if ok { 1.0 } else { 0.0 },
                "latency_ms": 200 + (rng.next_u64() % 800), "tokens_in": prompt.len() / 4,
                "tokens_out": 100, "cost_usd": cost, "error": "none"
            });
            writeln!(ow, "{rec}").map_err(TrainError::io(dir))?;
            written += 1;
        }
        in_seg += 1;
    }
    dw.flush().map_err(TrainError::io(dir))?;
    ow.flush().map_err(TrainError::io(dir))?;
    Ok((decisions, written))
}
