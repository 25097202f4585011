//! Wide outcome matrices (`ingest --wide FILE`): one row per prompt, a column per model's quality
//! and optionally per model's cost, in CSV (`.csv`, with a header) or JSON Lines (`.jsonl` /
//! `.ndjson`, one object a line). The mapping from columns to models is given by flags
//! ([`WideSpec`]).
//!
//! Every mapped cell must hold a value: quality a number in [0, 1] or a boolean
//! (`true`/`false`, `True`/`False`: 1/0), cost a non-negative number; a row with an empty prompt
//! or a missing or invalid cell is a bad row naming its file, line and column. A flag naming a
//! column the file does not have is an error. Without a cost column, a model's `--price` gives
//! its cost by the default token estimate ([`super::estimated_cost_usd`]); with neither, its
//! rows carry no cost. Rows come from source `wide/<file stem>`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::csv_lines::record_start_lines;
use super::{BadRow, BadRowPolicy, IngestReport, estimated_cost_usd, push_prompt_rows};
use crate::error::TrainError;
use crate::table::TableWriter;

/// How the columns of a wide file map to prompts, tasks and models.
#[derive(Debug, Clone, PartialEq)]
pub struct WideSpec {
    pub prompt_column: String,
    pub task_column: Option<String>,
    /// (model, column), from `--quality-column MODEL=COLUMN`.
    pub quality: Vec<(String, String)>,
    /// (model, column), from `--cost-column MODEL=COLUMN`.
    pub cost: Vec<(String, String)>,
    /// (model, USD per 1M tokens), from `--price MODEL=USD_PER_1M`.
    pub price: Vec<(String, f64)>,
}

/// Splits a `MODEL=VALUE` flag value; the error names the flag.
pub fn parse_pair(flag: &str, value: &str) -> Result<(String, String), TrainError> {
    match value.split_once('=') {
        Some((m, v)) if !m.trim().is_empty() && !v.trim().is_empty() => {
            Ok((m.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(TrainError::Argument(format!(
            "{flag} {value:?}: expected MODEL=VALUE"
        ))),
    }
}

impl WideSpec {
    /// Builds and checks a mapping from the flags' values (`MODEL=COLUMN`, `MODEL=USD_PER_1M`).
    pub fn from_flags(
        prompt_column: &str,
        task_column: Option<&str>,
        quality: &[String],
        cost: &[String],
        price: &[String],
    ) -> Result<WideSpec, TrainError> {
        let pairs = |flag: &str, values: &[String]| -> Result<Vec<(String, String)>, TrainError> {
            values.iter().map(|v| parse_pair(flag, v)).collect()
        };
        let mut prices = Vec::new();
        for (model, p) in pairs("--price", price)? {
            let usd = p
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    TrainError::Argument(format!(
                        "--price {model}={p}: not a non-negative number of USD per 1M tokens"
                    ))
                })?;
            prices.push((model, usd));
        }
        let spec = WideSpec {
            prompt_column: prompt_column.to_string(),
            task_column: task_column.map(str::to_string),
            quality: pairs("--quality-column", quality)?,
            cost: pairs("--cost-column", cost)?,
            price: prices,
        };
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), TrainError> {
        let arg = |m: String| Err(TrainError::Argument(m));
        if self.quality.is_empty() {
            return arg("--wide needs at least one --quality-column MODEL=COLUMN".into());
        }
        let mut seen = BTreeSet::new();
        for (m, _) in &self.quality {
            if !seen.insert(m.as_str()) {
                return arg(format!("--quality-column: model {m:?} given twice"));
            }
        }
        let mut costed = BTreeSet::new();
        let flagged = self
            .cost
            .iter()
            .map(|(m, _)| ("--cost-column", m))
            .chain(self.price.iter().map(|(m, _)| ("--price", m)));
        for (flag, m) in flagged {
            if !seen.contains(m.as_str()) {
                return arg(format!(
                    "{flag}: model {m:?} has no --quality-column (models: {:?})",
                    seen.iter().collect::<Vec<_>>()
                ));
            }
            if !costed.insert(m.as_str()) {
                return arg(format!(
                    "{flag}: model {m:?} already has a cost (give one --cost-column or one --price per model)"
                ));
            }
        }
        Ok(())
    }

    /// (flag, column) of every mapped column, prompt first.
    fn columns(&self) -> Vec<(String, &str)> {
        let mut out = vec![("--prompt-column".to_string(), self.prompt_column.as_str())];
        if let Some(t) = &self.task_column {
            out.push(("--task-column".to_string(), t.as_str()));
        }
        for (m, c) in &self.quality {
            out.push((format!("--quality-column {m}={c}"), c.as_str()));
        }
        for (m, c) in &self.cost {
            out.push((format!("--cost-column {m}={c}"), c.as_str()));
        }
        out
    }
}

/// One cell of a wide row.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Number(f64),
    Bool(bool),
    /// A JSON array or object.
    Other(String),
}

impl Cell {
    fn from_json(v: Option<&serde_json::Value>) -> Cell {
        match v {
            None | Some(serde_json::Value::Null) => Cell::Null,
            Some(serde_json::Value::String(s)) => Cell::Text(s.clone()),
            Some(serde_json::Value::Number(n)) => n
                .as_f64()
                .map_or_else(|| Cell::Other(n.to_string()), Cell::Number),
            Some(serde_json::Value::Bool(b)) => Cell::Bool(*b),
            Some(other) => Cell::Other(other.to_string()),
        }
    }

    fn quality(&self) -> Result<f64, String> {
        let q = match self {
            Cell::Null => return Err("missing value".into()),
            Cell::Bool(b) => return Ok(if *b { 1.0 } else { 0.0 }),
            Cell::Number(x) => Some(*x),
            Cell::Text(s) => match s.trim() {
                "True" | "true" | "TRUE" => Some(1.0),
                "False" | "false" | "FALSE" => Some(0.0),
                t => t.parse::<f64>().ok(),
            },
            Cell::Other(_) => None,
        };
        q.filter(|q| (0.0..=1.0).contains(q))
            .ok_or_else(|| format!("quality {} is not a number in [0, 1] or a boolean", self))
    }

    fn cost(&self) -> Result<f64, String> {
        let c = match self {
            Cell::Null => return Err("missing value".into()),
            Cell::Number(x) => Some(*x),
            Cell::Text(s) => s.trim().parse::<f64>().ok(),
            Cell::Bool(_) | Cell::Other(_) => None,
        };
        c.filter(|c| c.is_finite() && *c >= 0.0)
            .ok_or_else(|| format!("cost {} is not a non-negative number", self))
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => write!(f, "null"),
            Cell::Text(s) => write!(f, "{s:?}"),
            Cell::Number(x) => write!(f, "{x}"),
            Cell::Bool(b) => write!(f, "{b}"),
            Cell::Other(s) => write!(f, "{s}"),
        }
    }
}

/// A data row: its 1-based line and the cells of [`WideSpec::columns`], in that order.
type Row = (usize, Vec<Cell>);

fn missing_column(
    path: &Path,
    flag: &str,
    column: &str,
    where_: &str,
    have: &[String],
) -> TrainError {
    TrainError::BadInput {
        path: path.to_path_buf(),
        message: format!("{flag}: no column {column:?} {where_}; columns: {have:?}"),
    }
}

fn read_csv(path: &Path, spec: &WideSpec) -> Result<Vec<Row>, TrainError> {
    let (df, have) = super::read_csv_text(path)?;
    let mut cols = Vec::new();
    for (flag, c) in spec.columns() {
        if !have.iter().any(|h| h == c) {
            return Err(missing_column(
                path,
                &flag,
                c,
                "in the header (line 1)",
                &have,
            ));
        }
        cols.push(df.column(c)?.str()?.clone());
    }
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let lines = record_start_lines(&bytes);
    Ok((0..df.height())
        .map(|i| {
            // record 0 is the header, data row i is record i + 1
            let line = lines.get(i + 1).copied().unwrap_or(0);
            let cells = cols
                .iter()
                .map(|c| c.get(i).map_or(Cell::Null, |s| Cell::Text(s.to_string())))
                .collect();
            (line, cells)
        })
        .collect())
}

fn read_json_lines(
    path: &Path,
    spec: &WideSpec,
    report: &mut IngestReport,
    policy: BadRowPolicy,
) -> Result<Vec<Row>, TrainError> {
    let mut objects = Vec::new();
    let mut keys = BTreeSet::new();
    crate::lines::for_each_line(path, |line, text| {
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
            Ok(obj) => {
                keys.extend(obj.keys().cloned());
                objects.push((line, obj));
                Ok(())
            }
            Err(e) => report.bad(
                BadRow {
                    file: path.to_path_buf(),
                    line,
                    reason: format!("column {}: not a JSON object: {e}", e.column()),
                },
                policy,
            ),
        }
    })?;
    let have: Vec<String> = keys.into_iter().collect();
    let columns = spec.columns();
    for (flag, c) in &columns {
        if !have.iter().any(|h| h == c) {
            return Err(missing_column(path, flag, c, "in any row", &have));
        }
    }
    Ok(objects
        .into_iter()
        .map(|(line, obj)| {
            let cells = columns
                .iter()
                .map(|(_, c)| Cell::from_json(obj.get(*c)))
                .collect();
            (line, cells)
        })
        .collect())
}

/// Ingests one wide file into `writer`.
pub fn ingest_wide(
    path: &Path,
    spec: &WideSpec,
    writer: &mut TableWriter,
    report: &mut IngestReport,
    policy: BadRowPolicy,
) -> Result<(), TrainError> {
    spec.check()?;
    if !path.is_file() {
        return Err(TrainError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let rows = match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => read_csv(path, spec)?,
        Some("jsonl" | "ndjson") => read_json_lines(path, spec, report, policy)?,
        _ => {
            return Err(TrainError::BadInput {
                path: path.to_path_buf(),
                message: "wide files end in .csv, .jsonl or .ndjson".into(),
            });
        }
    };
    report.files_read += 1;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let source = format!("wide/{stem}");
    let task_at = spec.task_column.as_ref().map(|_| 1usize);
    let quality_at = 1 + usize::from(task_at.is_some());
    let cost_at = quality_at + spec.quality.len();
    let cost_index: HashMap<&str, usize> = spec
        .cost
        .iter()
        .enumerate()
        .map(|(i, (m, _))| (m.as_str(), cost_at + i))
        .collect();
    let prices: HashMap<&str, f64> = spec.price.iter().map(|(m, p)| (m.as_str(), *p)).collect();
    let columns = spec.columns();
    let mut written = 0usize;
    for (line, cells) in rows {
        let mut reasons = Vec::new();
        let col = |i: usize| columns.get(i).map_or("", |(_, c)| *c);
        let prompt = match &cells[0] {
            Cell::Text(s) if !s.trim().is_empty() => Some(s.clone()),
            Cell::Null | Cell::Text(_) => {
                reasons.push(format!("column {:?}: empty prompt", col(0)));
                None
            }
            other => {
                reasons.push(format!("column {:?}: prompt {other} is not text", col(0)));
                None
            }
        };
        let task = match task_at.map(|i| (i, &cells[i])) {
            None | Some((_, Cell::Null)) => None,
            Some((_, Cell::Text(s))) if s.trim().is_empty() => None,
            Some((_, Cell::Text(s))) => Some(s.clone()),
            Some((_, Cell::Number(x))) => Some(x.to_string()),
            Some((i, other)) => {
                reasons.push(format!("column {:?}: task {other} is not text", col(i)));
                None
            }
        };
        let mut values = Vec::with_capacity(spec.quality.len());
        for (k, (model, _)) in spec.quality.iter().enumerate() {
            let at = quality_at + k;
            let q = cells[at].quality();
            let c = match (cost_index.get(model.as_str()), &prompt) {
                (Some(&ci), _) => cells[ci].cost().map(Some).map_err(|e| (ci, e)),
                (None, Some(p)) => Ok(prices
                    .get(model.as_str())
                    .map(|&usd| estimated_cost_usd(usd, usd, p))),
                (None, None) => Ok(None),
            };
            match (q, c) {
                (Ok(q), Ok(c)) => values.push((model, q, c)),
                (q, c) => {
                    if let Err(e) = q {
                        reasons.push(format!("column {:?}: {e}", col(at)));
                    }
                    if let Err((ci, e)) = c {
                        reasons.push(format!("column {:?}: {e}", col(ci)));
                    }
                }
            }
        }
        let (Some(prompt), true) = (prompt, reasons.is_empty()) else {
            report.bad(
                BadRow {
                    file: path.to_path_buf(),
                    line,
                    reason: reasons.join("; "),
                },
                policy,
            )?;
            continue;
        };
        let outcomes = values.iter().map(|(model, q, c)| (model.as_str(), *q, *c));
        written += push_prompt_rows(writer, &source, &prompt, task.as_deref(), outcomes)?;
    }
    report.rows_written += written;
    report.count_source(&source, written);
    Ok(())
}
