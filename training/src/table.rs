//! The canonical outcome table: one row per prompt x model, stored as Parquet.
//!
//! | column       | type          | meaning                                            |
//! |--------------|---------------|----------------------------------------------------|
//! | `prompt_id`  | utf8          | stable prompt id (`<source>:<sha256-16>` or decision id) |
//! | `prompt`     | utf8, null    | prompt text (null: not stored)                     |
//! | `task`       | utf8, null    | task / category (MMLU subject, service task)       |
//! | `model_id`   | utf8          | model that answered                                |
//! | `quality`    | f64           | quality in [0, 1] (RouteLLM: 1 correct, 0 wrong)   |
//! | `cost_usd`   | f64, null     | cost of the call                                   |
//! | `latency_ms` | f64, null     | latency of the call                                |
//! | `timestamp`  | utf8, null    | RFC 3339 UTC time of the outcome                   |
//! | `source`     | utf8          | `routellm/mmlu`, `routellm/gsm8k`, `service`, ...  |

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

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
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRow {
    pub prompt_id: String,
    pub prompt: Option<String>,
    pub task: Option<String>,
    pub model_id: String,
    pub quality: f64,
    pub cost_usd: Option<f64>,
    pub latency_ms: Option<f64>,
    pub timestamp: Option<String>,
    pub source: String,
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

/// Streaming Parquet writer of canonical rows (memory bounded by [`BATCH_ROWS`]).
pub struct TableWriter {
    path: PathBuf,
    writer: polars::io::parquet::write::BatchedWriter<File>,
    buffer: Vec<OutcomeRow>,
    written: usize,
}

impl TableWriter {
    pub fn create(path: &Path) -> Result<TableWriter, TrainError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(TrainError::io(parent))?;
        }
        let file = File::create(path).map_err(TrainError::io(path))?;
        let writer = ParquetWriter::new(file)
            .with_compression(ParquetCompression::Zstd(None))
            .batched(&schema())?;
        Ok(TableWriter {
            path: path.to_path_buf(),
            writer,
            buffer: Vec::with_capacity(BATCH_ROWS),
            written: 0,
        })
    }

    pub fn push(&mut self, row: OutcomeRow) -> Result<(), TrainError> {
        self.buffer.push(row);
        if self.buffer.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TrainError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let df = rows_to_frame(&self.buffer)?;
        self.writer.write_batch(&df)?;
        self.written += self.buffer.len();
        self.buffer.clear();
        Ok(())
    }

    /// Flushes and closes the file; returns the number of rows written.
    pub fn finish(mut self) -> Result<usize, TrainError> {
        self.flush()?;
        self.writer.finish()?;
        let _ = &self.path;
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

/// Lazily scans a canonical table file and checks its columns.
pub fn scan(path: &Path) -> Result<LazyFrame, TrainError> {
    let text = path.to_str().ok_or_else(|| TrainError::BadInput {
        path: path.to_path_buf(),
        message: "path is not UTF-8".into(),
    })?;
    if !path.exists() {
        return Err(TrainError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
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
