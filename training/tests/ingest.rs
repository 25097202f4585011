//! Ingest of each input format, including malformed files.

mod common;

use std::collections::HashSet;

use signalbox_train::dataset::Dataset;
use signalbox_train::ingest::routellm::ingest_csv;
use signalbox_train::ingest::{BadRowPolicy, IngestReport, service_logs};
use signalbox_train::table::TableWriter;

fn hidden() -> indicatif::ProgressBar {
    indicatif::ProgressBar::hidden()
}

#[test]
fn routellm_csv_bad_rows_are_reported_with_lines_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let mut w = TableWriter::create(&out).unwrap();
    let mut rep = IngestReport::default();
    let drop: HashSet<String> = ["plain question".to_string()].into();
    let csv = common::datasets().join("malformed/mmlu_bad.csv");
    ingest_csv(
        &csv,
        Some("anatomy"),
        "routellm/mmlu",
        &drop,
        &mut w,
        &mut rep,
        BadRowPolicy::Skip,
    )
    .unwrap();
    assert_eq!(w.finish().unwrap(), 2);
    let lines: Vec<usize> = rep.bad_rows.iter().map(|b| b.line).collect();
    assert_eq!(lines, vec![5, 6, 9], "{:#?}", rep.bad_rows);
    assert!(rep.bad_rows[0].reason.contains("empty prompt"));
    assert!(
        rep.bad_rows[1]
            .reason
            .contains("non-boolean correctness \"maybe\"")
    );
    assert!(rep.bad_rows[2].reason.contains("missing value"));
    assert_eq!(rep.contaminated_dropped, 1);
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds.prompts[0], "A multi-line\nquestion?\nAnswer:");
    assert_eq!(ds.tasks[0].as_deref(), Some("anatomy"));
    assert_eq!(
        ds.models,
        vec!["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"]
    );
    assert_eq!(ds.quality[0], vec![Some(0.0), Some(1.0)]);
}

#[test]
fn routellm_csv_fail_policy_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = TableWriter::create(&dir.path().join("t.parquet")).unwrap();
    let mut rep = IngestReport::default();
    let csv = common::datasets().join("malformed/mmlu_bad.csv");
    let err = ingest_csv(
        &csv,
        None,
        "x",
        &HashSet::new(),
        &mut w,
        &mut rep,
        BadRowPolicy::Fail,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("mmlu_bad.csv:5: empty prompt"),
        "{err}"
    );
}

#[test]
fn csv_without_model_columns_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = TableWriter::create(&dir.path().join("t.parquet")).unwrap();
    let mut rep = IngestReport::default();
    let csv = common::datasets().join("malformed/no_model_columns.csv");
    ingest_csv(
        &csv,
        None,
        "x",
        &HashSet::new(),
        &mut w,
        &mut rep,
        BadRowPolicy::Skip,
    )
    .unwrap();
    assert_eq!(w.finish().unwrap(), 0);
    assert_eq!(rep.bad_rows.len(), 1);
    assert!(rep.bad_rows[0].reason.contains("missing columns"));
}

#[test]
fn service_logs_join_decisions_and_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let mut w = TableWriter::create(&out).unwrap();
    let mut rep = IngestReport::default();
    let logs = common::datasets().join("service-logs-sample");
    service_logs::ingest_dir(&logs, &mut w, &mut rep, BadRowPolicy::Skip, &hidden()).unwrap();
    // 6 decisions x 2 models + 2 x 1, minus the 2 outcomes of the decision without prompt.
    assert_eq!(w.finish().unwrap(), 12);
    assert!(rep.bad_rows.is_empty(), "{:?}", rep.bad_rows);
    assert_eq!(rep.no_prompt_skipped.len(), 2);
    assert!(rep.no_prompt_skipped[0].reason.contains("stored no prompt"));
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.len(), 7);
    let math = ds
        .prompts
        .iter()
        .position(|p| p.starts_with("What is the integral"))
        .unwrap();
    assert_eq!(ds.tasks[math].as_deref(), Some("math"));
    let weak = ds
        .model_index("mistralai/Mixtral-8x7B-Instruct-v0.1")
        .unwrap();
    assert_eq!(ds.quality[math][weak], Some(0.2));
    assert_eq!(ds.sources, vec!["service"]);
}

/// The canonical table in JSON Lines holds the same data as in Parquet, and a malformed line
/// is an error naming its line.
#[test]
fn canonical_table_as_json_lines_matches_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let logs = common::datasets().join("service-logs-sample");
    let mut loaded = Vec::new();
    for name in ["t.parquet", "t.jsonl"] {
        let out = dir.path().join(name);
        let mut w = TableWriter::create(&out).unwrap();
        let mut rep = IngestReport::default();
        service_logs::ingest_dir(&logs, &mut w, &mut rep, BadRowPolicy::Skip, &hidden()).unwrap();
        assert_eq!(w.finish().unwrap(), 12);
        loaded.push(Dataset::load(&out).unwrap());
    }
    let (parquet, jsonl) = (&loaded[0], &loaded[1]);
    assert_eq!(parquet.prompt_ids, jsonl.prompt_ids);
    assert_eq!(parquet.prompts, jsonl.prompts);
    assert_eq!(parquet.tasks, jsonl.tasks);
    assert_eq!(parquet.models, jsonl.models);
    assert_eq!(parquet.quality, jsonl.quality);
    assert_eq!(parquet.observed_cost, jsonl.observed_cost);
    let text = std::fs::read_to_string(dir.path().join("t.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 12);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for column in signalbox_train::table::COLUMNS {
        assert!(first.get(column).is_some(), "{column} missing in {first}");
    }

    let bad = dir.path().join("bad.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = r#"{"prompt_id": "x", "model_id": "m", "quality": "high", "source": "s"}"#;
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let err = Dataset::load(&bad).unwrap_err().to_string();
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("bad.jsonl"), "{err}");
    let err = TableWriter::create(&dir.path().join("t.csv"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(".jsonl"), "{err}");
}

#[test]
fn malformed_service_logs_are_reported_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = TableWriter::create(&dir.path().join("t.parquet")).unwrap();
    let mut rep = IngestReport::default();
    let logs = common::datasets().join("malformed/service-logs");
    service_logs::ingest_dir(&logs, &mut w, &mut rep, BadRowPolicy::Skip, &hidden()).unwrap();
    assert_eq!(w.finish().unwrap(), 1);
    let got: Vec<(usize, bool)> = rep
        .bad_rows
        .iter()
        .map(|b| {
            (
                b.line,
                b.file.ends_with("outcomes-20251120T100000-000001.jsonl"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(2, true), (3, true), (4, true), (5, true), (6, true)],
        "{:#?}",
        rep.bad_rows
    );
    let reasons: Vec<&str> = rep.bad_rows.iter().map(|b| b.reason.as_str()).collect();
    assert!(reasons[1].contains("non-boolean success"));
    assert!(reasons[2].contains("unknown decision_id"));
    assert!(reasons[3].contains("outside [0, 1]"));
    assert!(reasons[4].contains("missing field `model_id`"));
    let mut w = TableWriter::create(&dir.path().join("u.parquet")).unwrap();
    let err = service_logs::ingest_dir(
        &logs,
        &mut w,
        &mut IngestReport::default(),
        BadRowPolicy::Fail,
        &hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains(":2: outcome:"), "{err}");
}

#[test]
fn labels_follow_the_quality_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let mut w = TableWriter::create(&out).unwrap();
    let logs = common::datasets().join("service-logs-sample");
    service_logs::ingest_dir(
        &logs,
        &mut w,
        &mut IngestReport::default(),
        BadRowPolicy::Skip,
        &hidden(),
    )
    .unwrap();
    w.finish().unwrap();
    let ds = Dataset::load(&out).unwrap();
    let labels = |t: f64| -> usize {
        ds.quality
            .iter()
            .flatten()
            .flatten()
            .filter(|&&q| f64::from(q) >= t)
            .count()
    };
    let total = ds.quality.iter().flatten().flatten().count();
    assert_eq!(total, 12);
    assert_eq!(labels(0.5), 9); // the 3 weak answers on math/code have quality 0.2
    assert_eq!(labels(0.1), 12);
    assert_eq!(labels(1.0), 9);
}
