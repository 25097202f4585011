//! The canonical outcome table: one row per prompt x model, stored as Parquet (`.parquet`,
//! zstd, 50k-row groups) or JSON Lines (`.jsonl` / `.ndjson`: one object per row with the
//! columns below as keys; null or absent for missing values). The extension picks the format
//! for both writing and reading.
//!
//! | column       | type          | meaning                                            |
//! |--------------|---------------|----------------------------------------------------|
//! | `prompt_id`  | utf8          | stable prompt id (`<source>:<sha256-16>` or decision id) |
//! | `prompt`     | utf8, null    | prompt text (null: not stored)                     |
//! | `task`       | utf8, null    | task / category (MMLU subject, LLMRouter task, service task) |
//! | `model_id`   | utf8          | model that answered                                |
//! | `quality`    | f64           | quality in [0, 1] (RouteLLM: 1 correct, 0 wrong)   |
//! | `cost_usd`   | f64, null     | cost of the call (this prompt x model)             |
//! | `latency_ms` | f64, null     | latency of the call                                |
//! | `timestamp`  | utf8, null    | RFC 3339 UTC time of the outcome                   |
//! | `source`     | utf8          | `routellm/mmlu`, `llmrouter/train`, `service`, ... |

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

pub const COLUMNS: [&str; 9] = [
    "prompt_id",
    "prompt",
    "task",
    "model_id",
    "quality",
    "cost_usd",
    "latency_ms",
    "timestamp",
    "source",
];

/// One canonical row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRow {
    pub prompt_id: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    pub model_id: String,
    pub quality: f64,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub latency_ms: Option<f64>,
    #[serde(default)]
    pub timestamp: Option<String>,
    pub source: String,
}

/// On-disk format of a canonical table, from its file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Parquet,
    JsonLines,
}

impl TableFormat {
    pub fn of(path: &Path) -> Result<TableFormat, TrainError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => Ok(TableFormat::Parquet),
            Some("jsonl" | "ndjson") => Ok(TableFormat::JsonLines),
            _ => Err(TrainError::BadInput {
                path: path.to_path_buf(),
                message: "canonical table files end in .parquet, .jsonl or .ndjson".into(),
            }),
        }
    }
}

pub fn schema() -> Schema {
    let mut s = Schema::default();
    for name in COLUMNS {
        let dt = match name {
            "quality" | "cost_usd" | "latency_ms" => DataType::Float64,
            _ => DataType::String,
        };
        s.insert(name.into(), dt);
    }
    s
}

/// Rows buffered in memory before a Parquet row group is written.
const BATCH_ROWS: usize = 50_000;

/// Streaming writer of canonical rows; memory is bounded by [`BATCH_ROWS`] (Parquet) or one
/// row (JSON Lines).
pub struct TableWriter {
    path: PathBuf,
    sink: Sink,
    buffer: Vec<OutcomeRow>,
    written: usize,
}

enum Sink {
    Parquet(Box<polars::io::parquet::write::BatchedWriter<File>>),
    JsonLines(BufWriter<File>),
}

impl TableWriter {
    /// Creates `path` (and its parent directories); the extension picks the format.
    pub fn create(path: &Path) -> Result<TableWriter, TrainError> {
        let format = TableFormat::of(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(TrainError::io(parent))?;
        }
        let file = File::create(path).map_err(TrainError::io(path))?;
        let sink = match format {
            TableFormat::Parquet => Sink::Parquet(Box::new(
                ParquetWriter::new(file)
                    .with_compression(ParquetCompression::Zstd(None))
                    .batched(&schema())?,
            )),
            TableFormat::JsonLines => Sink::JsonLines(BufWriter::with_capacity(1 << 20, file)),
        };
        Ok(TableWriter {
            path: path.to_path_buf(),
            sink,
            buffer: Vec::new(),
            written: 0,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn push(&mut self, row: OutcomeRow) -> Result<(), TrainError> {
        match &mut self.sink {
            Sink::Parquet(_) => {
                self.buffer.push(row);
                if self.buffer.len() >= BATCH_ROWS {
                    self.flush()?;
                }
            }
            Sink::JsonLines(w) => {
                serde_json::to_writer(&mut *w, &row).map_err(|e| TrainError::BadInput {
                    path: self.path.clone(),
                    message: format!("cannot write row: {e}"),
                })?;
                w.write_all(b"\n").map_err(TrainError::io(&self.path))?;
                self.written += 1;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TrainError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Sink::Parquet(w) = &mut self.sink {
            let df = rows_to_frame(&self.buffer)?;
            w.write_batch(&df)?;
            self.written += self.buffer.len();
            self.buffer.clear();
        }
        Ok(())
    }

    /// Flushes and closes the file; returns the number of rows written.
    pub fn finish(mut self) -> Result<usize, TrainError> {
        self.flush()?;
        match self.sink {
            Sink::Parquet(w) => {
                w.finish()?;
            }
            Sink::JsonLines(mut w) => {
                w.flush().map_err(TrainError::io(&self.path))?;
                w.get_ref().sync_all().map_err(TrainError::io(&self.path))?;
            }
        }
        Ok(self.written)
    }
}

pub fn rows_to_frame(rows: &[OutcomeRow]) -> Result<DataFrame, TrainError> {
    let s = |name: &str, v: Vec<Option<&str>>| Column::new(name.into(), v);
    let f = |name: &str, v: Vec<Option<f64>>| Column::new(name.into(), v);
    let cols = vec![
        s(
            "prompt_id",
            rows.iter().map(|r| Some(r.prompt_id.as_str())).collect(),
        ),
        s("prompt", rows.iter().map(|r| r.prompt.as_deref()).collect()),
        s("task", rows.iter().map(|r| r.task.as_deref()).collect()),
        s(
            "model_id",
            rows.iter().map(|r| Some(r.model_id.as_str())).collect(),
        ),
        f("quality", rows.iter().map(|r| Some(r.quality)).collect()),
        f("cost_usd", rows.iter().map(|r| r.cost_usd).collect()),
        f("latency_ms", rows.iter().map(|r| r.latency_ms).collect()),
        s(
            "timestamp",
            rows.iter().map(|r| r.timestamp.as_deref()).collect(),
        ),
        s(
            "source",
            rows.iter().map(|r| Some(r.source.as_str())).collect(),
        ),
    ];
    Ok(DataFrame::new(rows.len(), cols)?)
}

/// Lazily scans a canonical table file (Parquet or JSON Lines) and checks its columns.
pub fn scan(path: &Path) -> Result<LazyFrame, TrainError> {
    let text = path.to_str().ok_or_else(|| TrainError::BadInput {
        path: path.to_path_buf(),
        message: "path is not UTF-8".into(),
    })?;
    let format = TableFormat::of(path)?;
    if !path.exists() {
        return Err(TrainError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    if format == TableFormat::JsonLines {
        return Ok(read_json_lines(path)?.lazy());
    }
    let lf = LazyFrame::scan_parquet(PlRefPath::from(text), ScanArgsParquet::default())?;
    let mut lf2 = lf.clone();
    let have = lf2.collect_schema()?;
    for name in COLUMNS {
        if have.get(name).is_none() {
            return Err(TrainError::BadInput {
                path: path.to_path_buf(),
                message: format!("not a canonical table: column {name:?} missing"),
            });
        }
    }
    Ok(lf)
}

/// Reads a JSON Lines canonical table; a malformed line is an error naming its line number.
fn read_json_lines(path: &Path) -> Result<DataFrame, TrainError> {
    let mut frames: Vec<DataFrame> = Vec::new();
    let mut rows = Vec::with_capacity(BATCH_ROWS.min(4096));
    crate::lines::for_each_line(path, |line_no, line| {
        let row: OutcomeRow = serde_json::from_str(line).map_err(|e| {
            let what = e.to_string();
            let what = what.split(" at line ").next().unwrap_or(&what).to_string();
            TrainError::BadInput {
                path: path.to_path_buf(),
                message: format!(
                    "line {line_no}, column {}: not a canonical row: {what}",
                    e.column()
                ),
            }
        })?;
        if !(0.0..=1.0).contains(&row.quality) {
            return Err(TrainError::BadInput {
                path: path.to_path_buf(),
                message: format!("line {line_no}: quality {} outside [0, 1]", row.quality),
            });
        }
        rows.push(row);
        if rows.len() >= BATCH_ROWS {
            frames.push(rows_to_frame(&rows)?);
            rows.clear();
        }
        Ok(())
    })?;
    let mut df = rows_to_frame(&rows)?;
    if let Some((first, rest)) = frames.split_first_mut() {
        for f in rest {
            first.vstack_mut(f)?;
        }
        first.vstack_mut(&df)?;
        df = std::mem::take(first);
    }
    Ok(df)
}
