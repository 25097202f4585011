//! RouteLLM outcome CSVs: `prompt` + one True/False correctness column per model.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::csv_lines::record_start_lines;
use super::{BadRow, BadRowPolicy, IngestReport, list_files, push_prompt_rows};
use crate::error::TrainError;
use crate::table::TableWriter;

/// Which RouteLLM benchmark to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Benchmark {
    Mmlu,
    Gsm8k,
}

impl Benchmark {
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Mmlu => "mmlu",
            Benchmark::Gsm8k => "gsm8k",
        }
    }
}

/// Reads `<root>/<bench>/contaminated_prompts.jsonl` (field `eval_prompt`).
pub fn contaminated(root: &Path, bench: Benchmark) -> Result<HashSet<String>, TrainError> {
    let path = root.join(bench.name()).join("contaminated_prompts.jsonl");
    let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
    let mut set = HashSet::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| TrainError::BadInput {
                path: path.clone(),
                message: format!("line {}: {e}", i + 1),
            })?;
        let p = v
            .get("eval_prompt")
            .and_then(|p| p.as_str())
            .ok_or_else(|| TrainError::BadInput {
                path: path.clone(),
                message: format!("line {}: no string field eval_prompt", i + 1),
            })?;
        set.insert(p.to_string());
    }
    Ok(set)
}

/// The CSV files of a benchmark with their category (MMLU subject from the file name).
pub fn benchmark_files(
    root: &Path,
    bench: Benchmark,
) -> Result<Vec<(PathBuf, String)>, TrainError> {
    let dir = root.join(bench.name());
    match bench {
        Benchmark::Mmlu => Ok(list_files(&dir, "mmlu_", ".csv")?
            .into_iter()
            .map(|p| {
                let subject = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().trim_start_matches("mmlu_").to_string())
                    .unwrap_or_default();
                (p, subject)
            })
            .collect()),
        Benchmark::Gsm8k => Ok(vec![(dir.join("gsm8k_responses.csv"), "gsm8k".to_string())]),
    }
}

/// Ingests one benchmark (all its files) into `writer`.
pub fn ingest_benchmark(
    root: &Path,
    bench: Benchmark,
    writer: &mut TableWriter,
    report: &mut IngestReport,
    policy: BadRowPolicy,
    progress: &indicatif::ProgressBar,
) -> Result<(), TrainError> {
    let drop = contaminated(root, bench)?;
    let source = format!("routellm/{}", bench.name());
    for (path, category) in benchmark_files(root, bench)? {
        progress.set_message(format!("{}", path.display()));
        ingest_csv(
            &path,
            Some(&category),
            &source,
            &drop,
            writer,
            report,
            policy,
        )?;
        progress.inc(1);
    }
    Ok(())
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "True" | "true" | "TRUE" => Some(true),
        "False" | "false" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Ingests one outcome CSV (`prompt` column + model correctness columns; columns
/// ending in `_response` are ignored).
pub fn ingest_csv(
    path: &Path,
    task: Option<&str>,
    source: &str,
    drop: &HashSet<String>,
    writer: &mut TableWriter,
    report: &mut IngestReport,
    policy: BadRowPolicy,
) -> Result<(), TrainError> {
    if !path.is_file() {
        return Err(TrainError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    report.files_read += 1;
    let (df, names) = super::read_csv_text(path)?;
    let models: Vec<&String> = names
        .iter()
        .filter(|n| n.as_str() != "prompt" && !n.ends_with("_response"))
        .collect();
    if !names.iter().any(|n| n == "prompt") || models.is_empty() {
        let row = BadRow {
            file: path.to_path_buf(),
            line: 1,
            reason: format!(
                "missing columns: need `prompt` and at least one model column, header has {names:?}; whole file skipped"
            ),
        };
        return report.bad(row, policy);
    }
    let prompts = df.column("prompt")?.str()?.clone();
    let mut model_cols = Vec::with_capacity(models.len());
    for m in &models {
        model_cols.push(df.column(m)?.str()?.clone());
    }
    let mut lines: Option<Vec<usize>> = None;
    let mut line_of = |record: usize| -> Result<usize, TrainError> {
        if lines.is_none() {
            let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
            lines = Some(record_start_lines(&bytes));
        }
        // record 0 is the header, data row i is record i + 1
        Ok(lines
            .as_ref()
            .and_then(|l| l.get(record + 1).copied())
            .unwrap_or(0))
    };
    let mut written = 0usize;
    for i in 0..df.height() {
        let prompt = prompts.get(i).unwrap_or("");
        let mut reasons = Vec::new();
        if prompt.trim().is_empty() {
            reasons.push("empty prompt".to_string());
        }
        let mut values = Vec::with_capacity(models.len());
        for (m, col) in models.iter().zip(&model_cols) {
            match col.get(i) {
                None => reasons.push(format!("missing value in column {m:?}")),
                Some(v) => match parse_bool(v) {
                    Some(b) => values.push(b),
                    None => reasons.push(format!("non-boolean correctness {v:?} in column {m:?}")),
                },
            }
        }
        if !reasons.is_empty() {
            let row = BadRow {
                file: path.to_path_buf(),
                line: line_of(i)?,
                reason: reasons.join("; "),
            };
            report.bad(row, policy)?;
            continue;
        }
        if drop.contains(prompt) {
            report.contaminated_dropped += 1;
            continue;
        }
        let outcomes = models
            .iter()
            .zip(values)
            .map(|(m, ok)| (m.as_str(), if ok { 1.0 } else { 0.0 }, None));
        written += push_prompt_rows(writer, source, prompt, task, outcomes)?;
    }
    report.rows_written += written;
    report.count_source(source, written);
    Ok(())
}
