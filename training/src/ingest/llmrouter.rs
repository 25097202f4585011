//! LLMRouter outcome data (`../shared/datasets/llmrouter`): 9 models, 14 tasks, the
//! publishers' train/test split.
//!
//! - `scores_<split>.json`: a JSON array of `{"question": str, "scores": {model: float}}`
//!   (other fields, e.g. `cluster_id`, are ignored); quality = the score.
//! - `queries_<split>.jsonl`: one object a line with `task_name` and `query`; a score row's task is
//!   the `task_name` of the line of the same split whose `query` equals its `question` (the first
//!   such line when a query is listed under several tasks; those rows are counted in
//!   [`IngestReport::ambiguous_tasks`]).
//! - `models.json`: per model `input_price` and `output_price` in USD per 1M tokens; a row's
//!   `cost_usd` is [`estimated_cost_usd`] of the question with the model's prices.
//!
//! Each split is its own source (`llmrouter/train`, `llmrouter/test`), so the prompt ids of the
//! two splits never collide (119 test questions also occur, word for word, in the train split).

use std::collections::HashMap;
use std::path::Path;

use super::{BadRow, BadRowPolicy, IngestReport, estimated_cost_usd, push_prompt_rows};
use crate::error::TrainError;
use crate::table::TableWriter;

/// Which of the publishers' splits to ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Train,
    Test,
    /// Both, each with its own source (`llmrouter/train`, `llmrouter/test`).
    All,
}

impl Split {
    /// The split names this selects, in order.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Split::Train => &["train"],
            Split::Test => &["test"],
            Split::All => &["train", "test"],
        }
    }
}

/// USD per 1M tokens of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// Reads `models.json`: model name -> prices.
pub fn read_prices(path: &Path) -> Result<HashMap<String, Price>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
    let bad = |message: String| TrainError::BadInput {
        path: path.to_path_buf(),
        message,
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "line {}, column {}: invalid JSON: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected an object of models".into()))?;
    let mut out = HashMap::new();
    for (name, m) in obj {
        let price = |field: &str| -> Result<f64, TrainError> {
            m.get(field)
                .and_then(serde_json::Value::as_f64)
                .filter(|p| p.is_finite() && *p >= 0.0)
                .ok_or_else(|| {
                    bad(format!(
                        "model {name:?}: field {field:?} is not a non-negative number"
                    ))
                })
        };
        out.insert(
            name.clone(),
            Price {
                input: price("input_price")?,
                output: price("output_price")?,
            },
        );
    }
    Ok(out)
}

/// Task of each query of a `queries_<split>.jsonl` file: query -> (task names in file order).
fn read_tasks(
    path: &Path,
    report: &mut IngestReport,
    policy: BadRowPolicy,
) -> Result<HashMap<String, Vec<String>>, TrainError> {
    let mut tasks: HashMap<String, Vec<String>> = HashMap::new();
    report.files_read += 1;
    crate::lines::for_each_line(path, |line, text| {
        let bad = |reason: String| BadRow {
            file: path.to_path_buf(),
            line,
            reason,
        };
        let v: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return report.bad(bad(format!("invalid JSON: {e}")), policy),
        };
        let field = |name: &str| v.get(name).and_then(serde_json::Value::as_str);
        match (field("query"), field("task_name")) {
            (Some(q), Some(t)) => {
                let entry = tasks.entry(q.to_string()).or_default();
                if !entry.iter().any(|x| x == t) {
                    entry.push(t.to_string());
                }
                Ok(())
            }
            (None, _) => report.bad(
                bad("field \"query\": missing or not a string".into()),
                policy,
            ),
            (_, None) => report.bad(
                bad("field \"task_name\": missing or not a string".into()),
                policy,
            ),
        }
    })?;
    Ok(tasks)
}

/// 1-based line where each element of a top-level JSON array starts (strings and nesting
/// respected).
pub fn array_element_lines(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut line = 1usize;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // At depth 1, after `[` or `,`: the next non-blank byte starts an element.
    let mut expect_element = false;
    for &b in bytes {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if expect_element && depth == 1 && !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b']') {
            starts.push(line);
            expect_element = false;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                expect_element = depth == 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_element = true,
            _ => {}
        }
    }
    starts
}

/// Ingests the selected splits of the LLMRouter data in `root` into `writer`.
pub fn ingest(
    root: &Path,
    split: Split,
    writer: &mut TableWriter,
    report: &mut IngestReport,
    policy: BadRowPolicy,
    progress: &indicatif::ProgressBar,
) -> Result<(), TrainError> {
    let prices_path = root.join("models.json");
    let prices = read_prices(&prices_path)?;
    report.files_read += 1;
    for name in split.names() {
        let queries = root.join(format!("queries_{name}.jsonl"));
        let scores = root.join(format!("scores_{name}.json"));
        progress.set_message(format!("{}", queries.display()));
        let tasks = read_tasks(&queries, report, policy)?;
        progress.inc(1);
        progress.set_message(format!("{}", scores.display()));
        let source = format!("llmrouter/{name}");
        ingest_scores(
            &scores,
            &queries,
            &tasks,
            &prices,
            &prices_path,
            &source,
            writer,
            report,
            policy,
        )?;
        progress.inc(1);
    }
    Ok(())
}

/// Files read per split (for a progress bar): queries and scores.
pub const FILES_PER_SPLIT: u64 = 2;

#[allow(clippy::too_many_arguments)]
fn ingest_scores(
    path: &Path,
    queries_path: &Path,
    tasks: &HashMap<String, Vec<String>>,
    prices: &HashMap<String, Price>,
    prices_path: &Path,
    source: &str,
    writer: &mut TableWriter,
    report: &mut IngestReport,
    policy: BadRowPolicy,
) -> Result<(), TrainError> {
    report.files_read += 1;
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let elements: Vec<serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::BadInput {
            path: path.to_path_buf(),
            message: format!(
                "line {}, column {}: not a JSON array of score rows: {e}",
                e.line(),
                e.column()
            ),
        })?;
    let lines = array_element_lines(&bytes);
    let mut written = 0usize;
    for (i, el) in elements.iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(0);
        let mut reasons = Vec::new();
        let question = el.get("question").and_then(serde_json::Value::as_str);
        let task = match question {
            None => {
                reasons.push("field \"question\": missing or not a string".to_string());
                None
            }
            Some(q) if q.trim().is_empty() => {
                reasons.push("field \"question\": empty prompt".to_string());
                None
            }
            Some(q) => match tasks.get(q).map(Vec::as_slice) {
                None | Some([]) => {
                    reasons.push(format!(
                        "field \"question\": not found as a query in {}",
                        queries_path.display()
                    ));
                    None
                }
                Some(ts) => {
                    if ts.len() > 1 {
                        report.ambiguous_tasks += 1;
                    }
                    ts.first().cloned()
                }
            },
        };
        let mut values: Vec<(&str, f64, Price)> = Vec::new();
        match el.get("scores").and_then(serde_json::Value::as_object) {
            None => reasons.push("field \"scores\": missing or not an object".to_string()),
            Some(scores) if scores.is_empty() => {
                reasons.push("field \"scores\": no model".to_string())
            }
            Some(scores) => {
                for (model, v) in scores {
                    let q = v.as_f64().filter(|q| (0.0..=1.0).contains(q));
                    let price = prices.get(model);
                    match (q, price) {
                        (Some(q), Some(&p)) => values.push((model.as_str(), q, p)),
                        (None, _) => reasons.push(format!(
                            "field \"scores.{model}\": {v} is not a number in [0, 1]"
                        )),
                        (_, None) => reasons.push(format!(
                            "field \"scores.{model}\": model has no price in {}",
                            prices_path.display()
                        )),
                    }
                }
            }
        }
        let (Some(question), Some(task), true) = (question, task, reasons.is_empty()) else {
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
        written += push_prompt_rows(
            writer,
            source,
            question,
            Some(task.as_str()),
            values.into_iter().map(|(model, q, price)| {
                (
                    model,
                    q,
                    Some(estimated_cost_usd(price.input, price.output, question)),
                )
            }),
        )?;
    }
    report.rows_written += written;
    report.count_source(source, written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_lines() {
        let json = b"[\n  {\"a\": \"x,\\\"]\",\n   \"b\": [1, 2]},\n  {\"a\": 2}\n,{}]";
        assert_eq!(array_element_lines(json), vec![2, 4, 5]);
        assert_eq!(array_element_lines(b"[]"), Vec::<usize>::new());
    }
}
