//! Synthetic service logs (decisions + outcomes as the service writes them: the records of
//! [`signalbox_features::log_schema`], current version), for scale measurements and the
//! quickstart. Deterministic given the seed.

use std::io::Write;
use std::path::Path;

use signalbox_features::log_schema::{DecisionRecord, OutcomeRecord, SCHEMA_VERSION};
use signalbox_features::log_segments::segment_file_name;

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
/// segments of `segment_rows` lines named as replica `synth` names them. Returns (decisions, outcomes) written.
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
        let p = dir.join(segment_file_name(
            kind,
            "synth",
            "20250101T000000",
            seg as u64,
        ));
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
        let tokens = u32::try_from(prompt.len() / 4).unwrap_or(u32::MAX);
        let rec = DecisionRecord {
            schema: SCHEMA_VERSION,
            ts: ts.clone(),
            decision_id: id.clone(),
            request_id: format!("r{d}"),
            tenant_id: "synthetic".into(),
            user_id: String::new(),
            task: task.into(),
            category: None,
            task_source: "detected".into(),
            data_class: "public".into(),
            mode: "batch".into(),
            risk_tier: "low".into(),
            prompt_chars: prompt.len(),
            prompt: Some(prompt),
            prompt_tokens_est: tokens,
            pii: Vec::new(),
            capabilities: Vec::new(),
            quality_preference: None,
            latency_budget_ms: None,
            router: "rules".into(),
            primary: MODELS[0].0.into(),
            fallbacks: Vec::new(),
            cascade: Vec::new(),
            shadow: None,
            predicted_quality: Vec::new(),
            quality_target: None,
            estimated_cost_usd: 0.001,
            policy_version: "synthetic".into(),
            model_version: String::new(),
            reasons: Vec::new(),
            denied: false,
        };
        write_record(&mut dw, &rec, dir)?;
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
            let rec = OutcomeRecord {
                schema: SCHEMA_VERSION,
                ts: ts.clone(),
                decision_id: id.clone(),
                tenant_id: "synthetic".into(),
                user_id: String::new(),
                model_id: model.into(),
                success: true,
                quality: if ok { 1.0 } else { 0.0 },
                latency_ms: 200 + (rng.next_u64() % 800) as u32,
                tokens_in: tokens,
                tokens_out: 100,
                cost_usd: cost,
                error: "none".into(),
                attempt: 0,
            };
            write_record(&mut ow, &rec, dir)?;
            written += 1;
        }
        in_seg += 1;
    }
    dw.flush().map_err(TrainError::io(dir))?;
    ow.flush().map_err(TrainError::io(dir))?;
    Ok((decisions, written))
}

/// One JSON line.
fn write_record(
    w: &mut impl Write,
    rec: &impl serde::Serialize,
    dir: &Path,
) -> Result<(), TrainError> {
    let mut line = serde_json::to_vec(rec).map_err(|e| TrainError::BadInput {
        path: dir.to_path_buf(),
        message: format!("cannot serialize a log record: {e}"),
    })?;
    line.push(b'\n');
    w.write_all(&line).map_err(TrainError::io(dir))
}
