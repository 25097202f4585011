//! The service's own JSON Lines logs: `decisions-*.jsonl` joined with
//! `outcomes-*.jsonl` on `decision_id`. The prompt comes from the decision; outcome
//! rows whose decision stored no prompt (`prompt: null`) are reported and skipped.
//! Unknown extra fields are ignored (the log schema may grow).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;

use super::{BadRow, BadRowPolicy, IngestReport, list_files};
use crate::error::TrainError;
use crate::table::{OutcomeRow, TableWriter};

pub const SOURCE: &str = "service";

#[derive(Debug, Deserialize)]
struct DecisionRecord {
    decision_id: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    task: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OutcomeRecord {
    ts: String,
    decision_id: String,
    model_id: String,
    success: serde_json::Value,
    quality: f64,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(default)]
    cost_usd: Option<f64>,
}

/// What a decision contributes to the join (prompt stored or not).
struct DecisionInfo {
    prompt: Option<Box<str>>,
    task: Option<u16>,
}

/// Ingests every decision/outcome segment in `dir`.
pub fn ingest_dir(
    dir: &Path,
    writer: &mut TableWriter,
    report: &mut IngestReport,
    policy: BadRowPolicy,
    progress: &indicatif::ProgressBar,
) -> Result<(), TrainError> {
    let decision_files = list_files(dir, "decisions-", ".jsonl")?;
    let outcome_files = list_files(dir, "outcomes-", ".jsonl")?;
    if decision_files.is_empty() && outcome_files.is_empty() {
        return Err(TrainError::BadInput {
            path: dir.to_path_buf(),
            message: "no decisions-*.jsonl or outcomes-*.jsonl segment files".into(),
        });
    }
    let mut tasks: Vec<String> = Vec::new();
    let mut decisions: HashMap<Box<str>, DecisionInfo> = HashMap::new();
    for path in &decision_files {
        report.files_read += 1;
        progress.set_message(format!("{}", path.display()));
        for_each_line(path, |line_no, line| {
            match serde_json::from_str::<DecisionRecord>(line) {
                Ok(d) => {
                    let task = d.task.map(|t| match tasks.iter().position(|x| *x == t) {
                        Some(i) => i as u16,
                        None => {
                            tasks.push(t);
                            (tasks.len() - 1) as u16
                        }
                    });
                    let prompt = d.prompt.filter(|p| !p.trim().is_empty()).map(Into::into);
                    decisions.insert(d.decision_id.into(), DecisionInfo { prompt, task });
                    Ok(())
                }
                Err(e) => report.bad(bad(path, line_no, format!("decision: {e}")), policy),
            }
        })?;
        progress.inc(1);
    }
    let mut written = 0usize;
    for path in &outcome_files {
        report.files_read += 1;
        progress.set_message(format!("{}", path.display()));
        for_each_line(path, |line_no, line| {
            let o = match serde_json::from_str::<OutcomeRecord>(line) {
                Ok(o) => o,
                Err(e) => return report.bad(bad(path, line_no, format!("outcome: {e}")), policy),
            };
            if !o.success.is_boolean() {
                let msg = format!("non-boolean success {}", o.success);
                return report.bad(bad(path, line_no, msg), policy);
            }
            if !(0.0..=1.0).contains(&o.quality) {
                let msg = format!("quality {} outside [0, 1]", o.quality);
                return report.bad(bad(path, line_no, msg), policy);
            }
            let Some(d) = decisions.get(o.decision_id.as_str()) else {
                let msg = format!("unknown decision_id {:?}", o.decision_id);
                return report.bad(bad(path, line_no, msg), policy);
            };
            let Some(prompt) = &d.prompt else {
                report.no_prompt_skipped.push(bad(
                    path,
                    line_no,
                    format!("decision {:?} stored no prompt", o.decision_id),
                ));
                return Ok(());
            };
            writer.push(OutcomeRow {
                prompt_id: format!("{SOURCE}:{}", o.decision_id),
                prompt: Some(prompt.to_string()),
                task: d.task.and_then(|t| tasks.get(usize::from(t)).cloned()),
                model_id: o.model_id,
                quality: o.quality,
                cost_usd: o.cost_usd,
                latency_ms: o.latency_ms,
                timestamp: Some(o.ts),
                source: SOURCE.to_string(),
            })?;
            written += 1;
            Ok(())
        })?;
        progress.inc(1);
    }
    report.rows_written += written;
    report.count_source(SOURCE, written);
    Ok(())
}

fn bad(path: &Path, line: usize, reason: String) -> BadRow {
    BadRow {
        file: path.to_path_buf(),
        line,
        reason,
    }
}

/// Calls `f(line_number, line)` for each non-blank line of a JSONL file.
pub fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &str) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let file = std::fs::File::open(path).map_err(TrainError::io(path))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(TrainError::io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        f(i + 1, &line)?;
    }
    Ok(())
}
