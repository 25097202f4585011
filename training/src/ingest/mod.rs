//! `ingest`: normalise RouteLLM CSVs, LLMRouter outcome data, wide outcome matrices and service
//! logs into the canonical table.

pub mod csv_lines;
pub mod llmrouter;
pub mod routellm;
pub mod service_logs;
pub mod spill;
pub mod wide;

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use signalbox_features::log_segments;

use crate::error::TrainError;

/// What to do with a malformed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BadRowPolicy {
    /// Report, count and skip it.
    Skip,
    /// Stop with an error at the end of the file that contains it.
    Fail,
}

/// A malformed row, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub file: PathBuf,
    /// 1-based line where the record starts.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// Counts and findings of one ingest run.
#[derive(Debug, Default, Clone)]
pub struct IngestReport {
    pub rows_written: usize,
    /// (source, rows) in first-seen order.
    pub rows_per_source: Vec<(String, usize)>,
    pub bad_rows: Vec<BadRow>,
    /// Prompts dropped because they are on a contamination list.
    pub contaminated_dropped: usize,
    /// Outcome rows skipped because their decision stored no prompt.
    pub no_prompt_skipped: Vec<BadRow>,
    pub files_read: usize,
    /// Partitions of the service-log join (one join over every directory; 0: none read).
    pub join_partitions: usize,
    /// LLMRouter prompts listed under more than one task (the first listed task was used).
    pub ambiguous_tasks: usize,
}

impl IngestReport {
    pub fn count_source(&mut self, source: &str, n: usize) {
        match self.rows_per_source.iter_mut().find(|(s, _)| s == source) {
            Some((_, c)) => *c += n,
            None => self.rows_per_source.push((source.to_string(), n)),
        }
    }

    /// Records a bad row; with [`BadRowPolicy::Fail`] this is an error.
    pub fn bad(&mut self, row: BadRow, policy: BadRowPolicy) -> Result<(), TrainError> {
        let fatal = policy == BadRowPolicy::Fail;
        if fatal {
            return Err(TrainError::BadRowsFatal {
                count: self.bad_rows.len() + 1,
                first: row.to_string(),
            });
        }
        self.bad_rows.push(row);
        Ok(())
    }

    /// Human summary (bad rows listed up to `max_listed`).
    pub fn render(&self, max_listed: usize) -> String {
        let mut s = format!(
            "ingest: {} rows written from {} file(s)\n",
            self.rows_written, self.files_read
        );
        for (src, n) in &self.rows_per_source {
            s += &format!("  {src}: {n} rows\n");
        }
        s += &format!(
            "  contaminated prompts dropped: {}\n  outcome rows without stored prompt (skipped): {}\n  bad rows (skipped): {}\n",
            self.contaminated_dropped,
            self.no_prompt_skipped.len(),
            self.bad_rows.len()
        );
        if self.ambiguous_tasks > 0 {
            s += &format!(
                "  prompts listed under several tasks (first task used): {}\n",
                self.ambiguous_tasks
            );
        }
        if self.join_partitions > 1 {
            s += &format!("  service-log join: {} partitions\n", self.join_partitions);
        }
        for b in self
            .bad_rows
            .iter()
            .chain(&self.no_prompt_skipped)
            .take(max_listed)
        {
            s += &format!("    {b}\n");
        }
        let listed = self.bad_rows.len() + self.no_prompt_skipped.len();
        if listed > max_listed {
            s += &format!("    ... and {} more\n", listed - max_listed);
        }
        s
    }
}

/// Characters per token of the default token estimate.
pub const CHARS_PER_TOKEN: f64 = 4.0;
/// Output tokens per call of the default token estimate.
pub const OUTPUT_TOKENS: f64 = 200.0;

/// Estimated tokens of a call on `prompt`: (input, output) = (characters / 4, 200), characters
/// counted as Unicode scalar values.
pub fn estimated_tokens(prompt: &str) -> (f64, f64) {
    (
        prompt.chars().count() as f64 / CHARS_PER_TOKEN,
        OUTPUT_TOKENS,
    )
}

/// Estimated cost in USD of a call on `prompt`, from prices in USD per 1M tokens:
/// `(input_price × characters / 4 + output_price × 200) / 1e6`. With one price for both, this is
/// `price × (characters / 4 + 200) / 1e6`.
pub fn estimated_cost_usd(input_price_per_m: f64, output_price_per_m: f64, prompt: &str) -> f64 {
    let (input, output) = estimated_tokens(prompt);
    (input_price_per_m * input + output_price_per_m * output) / 1e6
}

/// Stable prompt id: `<source>:<first 16 hex chars of sha256(prompt)>`.
pub fn prompt_id(source: &str, prompt: &str) -> String {
    let digest = Sha256::digest(prompt.as_bytes());
    let mut hex = String::with_capacity(16);
    for b in &digest[..8] {
        hex += &format!("{b:02x}");
    }
    format!("{source}:{hex}")
}

/// The segment files of one kind (`decisions` or `outcomes`) of a service log directory: every
/// replica's (`{kind}-{replica}-{start}-{seq}.jsonl`) and those named before replica ids existed
/// (`{kind}-{start}-{seq}.jsonl`), oldest first
/// ([`signalbox_features::log_segments::segment_order`]).
pub fn segment_files(dir: &Path, kind: &str) -> Result<Vec<PathBuf>, TrainError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(TrainError::io(dir))? {
        let entry = entry.map_err(TrainError::io(dir))?;
        let name = entry.file_name();
        if log_segments::is_segment_of(&name.to_string_lossy(), kind) {
            out.push(entry.path());
        }
    }
    log_segments::sort_segments(&mut out, kind);
    Ok(out)
}

/// Files in `dir` whose names start with `prefix` and end with `suffix`, sorted by name.
pub fn list_files(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<PathBuf>, TrainError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(TrainError::io(dir))? {
        let entry = entry.map_err(TrainError::io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(suffix) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Writes one prompt's outcomes, a row per (model, quality, cost), under `prompt_id(source,
/// prompt)`; returns how many rows were written. The outcome-matrix ingests (RouteLLM,
/// LLMRouter, `--wide`) all write their rows this way.
pub(crate) fn push_prompt_rows<'m>(
    writer: &mut crate::table::TableWriter,
    source: &str,
    prompt: &str,
    task: Option<&str>,
    outcomes: impl IntoIterator<Item = (&'m str, f64, Option<f64>)>,
) -> Result<usize, TrainError> {
    let id = prompt_id(source, prompt);
    let mut written = 0;
    for (model, quality, cost_usd) in outcomes {
        writer.push(crate::table::OutcomeRow {
            prompt_id: id.clone(),
            prompt: Some(prompt.to_string()),
            task: task.map(str::to_string),
            model_id: model.to_string(),
            quality,
            cost_usd,
            latency_ms: None,
            timestamp: None,
            source: source.to_string(),
        })?;
        written += 1;
    }
    Ok(written)
}

/// A CSV file with a header, every column read as text (empty cells null), and its column
/// names: the outcome matrices of RouteLLM and `--wide`.
pub(crate) fn read_csv_text(
    path: &Path,
) -> Result<(polars::prelude::DataFrame, Vec<String>), TrainError> {
    use polars::prelude::*;
    let text_path = path.to_str().ok_or_else(|| TrainError::BadInput {
        path: path.to_path_buf(),
        message: "path is not UTF-8".into(),
    })?;
    let df = LazyCsvReader::new(PlRefPath::from(text_path))
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_missing_is_null(true)
        .finish()
        .and_then(|lf| lf.collect())
        .map_err(|e| TrainError::BadInput {
            path: path.to_path_buf(),
            message: format!("unreadable CSV: {e}"),
        })?;
    let names = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok((df, names))
}
