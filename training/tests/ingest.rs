//! Ingest of each input format, including malformed files.

mod common;

use std::collections::HashSet;
use std::process::Command;

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
    // 6 decisions x 2 models + 2 x 1, minus the 2 outcomes of the decision without prompt,
    // plus 1 outcome of a decision as the service wrote it.
    assert_eq!(w.finish().unwrap(), 13);
    assert!(rep.bad_rows.is_empty(), "{:?}", rep.bad_rows);
    assert_eq!(rep.no_prompt_skipped.len(), 2);
    assert!(rep.no_prompt_skipped[0].reason.contains("stored no prompt"));
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.len(), 8);
    let math = ds
        .prompts
        .iter()
        .position(|p| p.starts_with("What is the integral"))
        .unwrap();
    assert_eq!(ds.tasks[math].as_deref(), Some("math"));
    // A decision with the caller's category has it as its task (what the service featurizes).
    let code = ds
        .prompts
        .iter()
        .position(|p| p.starts_with("Write a Python function that reverses"))
        .unwrap();
    assert_eq!(ds.tasks[code].as_deref(), Some("support-bot/code_review"));
    let weak = ds
        .model_index("mistralai/Mixtral-8x7B-Instruct-v0.1")
        .unwrap();
    assert_eq!(ds.quality[math][weak], Some(0.2));
    assert_eq!(ds.sources, vec!["service"]);
}

/// Rewrites one version 1 log line (no `schema`; `pii` and `predicted_quality` objects or null)
/// as version 2 writes it (`schema: 2`, lists, `category` always present).
fn to_version_2(line: &str) -> String {
    use serde_json::{Value, json};
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
    assert!(v.get("schema").is_none(), "{line}");
    let list = |old: Option<Value>, key: &str, value: &str| -> Value {
        match old {
            Some(Value::Object(m)) => m
                .into_iter()
                .map(|(k, x)| json!({key: k, value: x}))
                .collect(),
            Some(Value::Null) => json!([]),
            other => panic!("not a version 1 value: {other:?}"),
        }
    };
    v.insert("schema".into(), json!(2));
    if v.contains_key("router") {
        let pii = list(v.remove("pii"), "kind", "count");
        let predicted = list(v.remove("predicted_quality"), "model", "p");
        v.insert("pii".into(), pii);
        v.insert("predicted_quality".into(), predicted);
        v.entry("category").or_insert(Value::Null);
    }
    Value::Object(v).to_string()
}

/// The sample is version 1 of the log schema (hand-written records and records as the service
/// wrote them before `schema` existed); the same records in version 2 give the same canonical
/// table and the same shadow report.
#[test]
fn version_1_and_version_2_logs_give_the_same_table_and_shadow_report() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = common::datasets().join("service-logs-sample");
    let v2 = tmp.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    let mut converted = 0;
    for entry in std::fs::read_dir(&v1).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<String> = text.lines().map(to_version_2).collect();
        converted += lines.len();
        std::fs::write(v2.join(path.file_name().unwrap()), lines.join("\n") + "\n").unwrap();
    }
    assert_eq!(converted, 25);
    let ingest = |logs: &std::path::Path, name: &str| {
        let out = tmp.path().join(name);
        let mut w = TableWriter::create(&out).unwrap();
        let mut rep = IngestReport::default();
        service_logs::ingest_dir(logs, &mut w, &mut rep, BadRowPolicy::Fail, &hidden()).unwrap();
        assert_eq!(w.finish().unwrap(), 13);
        assert_eq!(rep.no_prompt_skipped.len(), 2);
        Dataset::load(&out).unwrap()
    };
    let (a, b) = (ingest(&v1, "v1.parquet"), ingest(&v2, "v2.parquet"));
    assert_eq!(a.prompt_ids, b.prompt_ids);
    assert_eq!(a.prompts, b.prompts);
    assert_eq!(a.tasks, b.tasks);
    assert_eq!(a.models, b.models);
    assert_eq!(a.quality, b.quality);
    assert_eq!(a.observed_cost, b.observed_cost);
    // The decision as the service wrote it (PII redacted, detected task) and its outcome.
    let written = a
        .prompt_ids
        .iter()
        .position(|id| id == "service:01a2375f-0803-7410-ae66-f5d3bbfc8f02")
        .unwrap();
    assert_eq!(
        a.prompts[written],
        "Please email the contract to [EMAIL] and call [PHONE] if anything is unclear."
    );
    assert_eq!(a.tasks[written].as_deref(), Some("math"));
    let mixtral = a
        .model_index("mistralai/Mixtral-8x7B-Instruct-v0.1")
        .unwrap();
    assert_eq!(a.quality[written][mixtral], Some(1.0));

    let (a, b) = (
        signalbox_train::shadow::run(&v1).unwrap(),
        signalbox_train::shadow::run(&v2).unwrap(),
    );
    assert_eq!(a.bad_lines, 0, "{:?}", a.malformed);
    // 4 hand-written decisions and the service's have a shadow decision.
    assert_eq!(a.decisions_with_shadow, 5);
    assert_eq!(
        signalbox_train::shadow::render(&a),
        signalbox_train::shadow::render(&b)
    );
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
        assert_eq!(w.finish().unwrap(), 13);
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
    assert_eq!(text.lines().count(), 13);
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
    assert_eq!(total, 13);
    assert_eq!(labels(0.5), 10); // the 3 weak answers on math/code have quality 0.2
    assert_eq!(labels(0.1), 13);
    assert_eq!(labels(1.0), 10);
}

/// Writes a log directory with `n` decisions in 3 decision segments and 2 outcome segments:
/// decisions without prompt, a repeated decision_id (last record wins), outcomes of
/// unknown decisions and malformed lines spread over the files.
fn write_partition_test_logs(dir: &std::path::Path, n: usize) {
    use std::fmt::Write as _;
    let mut decisions = [String::new(), String::new(), String::new()];
    for d in 0..n {
        let prompt = if d % 17 == 5 {
            "null".to_string()
        } else {
            format!("\"prompt {d}: {}\"", "word ".repeat(d % 13))
        };
        let task = if d % 4 == 0 {
            "null".to_string()
        } else {
            format!("\"task{}\"", d % 5)
        };
        let seg = &mut decisions[d % 3];
        writeln!(
            seg,
            r#"{{"decision_id": "d{d:05}", "prompt": {prompt}, "task": {task}, "router": "rules"}}"#
        )
        .unwrap();
        if d % 50 == 7 {
            seg.push_str("{broken decision\n");
        }
    }
    // A repeated decision: the later record (segment 2) replaces the prompt.
    writeln!(
        decisions[2],
        r#"{{"decision_id": "d00001", "prompt": "replaced prompt", "task": "late"}}"#
    )
    .unwrap();
    for (i, text) in decisions.iter().enumerate() {
        std::fs::write(
            dir.join(format!("decisions-2025010{i}T000000-000001.jsonl")),
            text,
        )
        .unwrap();
    }
    let mut outcomes = [String::new(), String::new()];
    for d in 0..n {
        for (m, model) in ["strong", "weak"].iter().enumerate() {
            let seg = &mut outcomes[(d + m) % 2];
            let q = ((d * 7 + m * 3) % 10) as f64 / 10.0;
            writeln!(
                seg,
                r#"{{"ts": "2025-01-01T00:00:00Z", "decision_id": "d{d:05}", "model_id": "{model}", "success": true, "quality": {q}, "cost_usd": {}, "latency_ms": {}}}"#,
                0.001 * (m + 1) as f64,
                100 + d
            )
            .unwrap();
        }
        if d % 41 == 3 {
            writeln!(
                outcomes[d % 2],
                r#"{{"ts": "t", "decision_id": "ghost-{d}", "model_id": "weak", "success": true, "quality": 0.5}}"#
            )
            .unwrap();
        }
        if d % 60 == 11 {
            outcomes[d % 2].push_str(r#"{"ts": "t", "decision_id": "d00000", "model_id": "weak", "success": "yes", "quality": 0.5}"#);
            outcomes[d % 2].push('\n');
        }
    }
    for (i, text) in outcomes.iter().enumerate() {
        std::fs::write(
            dir.join(format!("outcomes-2025010{i}T000000-000001.jsonl")),
            text,
        )
        .unwrap();
    }
}

fn ingest_with_budget(
    logs: &std::path::Path,
    out: &std::path::Path,
    budget_bytes: u64,
    policy: BadRowPolicy,
) -> Result<IngestReport, signalbox_train::TrainError> {
    let mut w = TableWriter::create(out)?;
    let mut rep = IngestReport::default();
    let opts = service_logs::JoinOptions {
        budget_bytes,
        temp_parent: None,
    };
    service_logs::ingest_dir_with(logs, &mut w, &mut rep, policy, &hidden(), &opts)?;
    w.finish()?;
    Ok(rep)
}

/// The bounded join with many partitions writes exactly the table (rows and their order) and
/// reports of a single-partition join, and removes its temporary files.
#[test]
fn partitioned_service_log_join_matches_single_partition() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    write_partition_test_logs(&logs, 600);
    let out_dir = dir.path().join("out");
    let mut results = Vec::new();
    for (name, budget) in [("one", u64::MAX), ("many", 2_000), ("max", 1)] {
        let out = out_dir.join(format!("{name}.jsonl"));
        let rep = ingest_with_budget(&logs, &out, budget, BadRowPolicy::Skip).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        results.push((rep, text));
    }
    let (one, one_text) = &results[0];
    assert_eq!(one.join_partitions, 1);
    assert!(
        results[1].0.join_partitions > 20,
        "{}",
        results[1].0.join_partitions
    );
    assert_eq!(results[2].0.join_partitions, service_logs::MAX_PARTITIONS);
    // 600 decisions x 2 outcomes, minus those of the 36 decisions without prompt (d % 17 == 5).
    let no_prompt = (0..600).filter(|d| d % 17 == 5).count();
    assert_eq!(one.rows_written, 2 * (600 - no_prompt));
    assert_eq!(one.no_prompt_skipped.len(), 2 * no_prompt);
    let unknown = one
        .bad_rows
        .iter()
        .filter(|b| b.reason.contains("unknown decision_id"))
        .count();
    assert_eq!(unknown, (0..600).filter(|d| d % 41 == 3).count());
    assert_eq!(
        one.bad_rows.len(),
        unknown + 12 + (0..600).filter(|d| d % 60 == 11).count()
    );
    // Reported in file order: decision files, then outcome files, each by line.
    let order: Vec<(std::path::PathBuf, usize)> = one
        .bad_rows
        .iter()
        .map(|b| (b.file.clone(), b.line))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    for (rep, text) in &results[1..] {
        assert_eq!(
            text, one_text,
            "table differs with {} partitions",
            rep.join_partitions
        );
        assert_eq!(rep.bad_rows, one.bad_rows);
        assert_eq!(rep.no_prompt_skipped, one.no_prompt_skipped);
        assert_eq!(rep.rows_written, one.rows_written);
        assert_eq!(rep.rows_per_source, one.rows_per_source);
    }
    // The repeated decision's last record won.
    let row = one_text
        .lines()
        .find(|l| l.contains("\"service:d00001\""))
        .unwrap();
    assert!(
        row.contains("replaced prompt") && row.contains("\"late\""),
        "{row}"
    );
    // Temporary partition directories are gone.
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    // The Parquet table of a partitioned join loads to the same dataset.
    let pq = out_dir.join("many.parquet");
    ingest_with_budget(&logs, &pq, 2_000, BadRowPolicy::Skip).unwrap();
    let a = Dataset::load(&pq).unwrap();
    let b = Dataset::load(&out_dir.join("one.jsonl")).unwrap();
    assert_eq!(a.prompt_ids, b.prompt_ids);
    assert_eq!(a.prompts, b.prompts);
    assert_eq!(a.quality, b.quality);
}

/// With --bad-rows fail, the first bad row in file order is fatal, also when it is an
/// outcome of an unknown decision (found only when its partition is joined).
#[test]
fn partitioned_join_fail_policy_reports_the_first_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut d = String::new();
    for i in 0..200 {
        d += &format!("{{\"decision_id\": \"d{i}\", \"prompt\": \"p {i}\"}}\n");
    }
    std::fs::write(logs.join("decisions-1.jsonl"), d).unwrap();
    let ok = |i: usize| {
        format!(
            "{{\"ts\": \"t\", \"decision_id\": \"d{i}\", \"model_id\": \"m\", \"success\": true, \"quality\": 1.0}}\n"
        )
    };
    let mut o = String::new();
    for i in 0..50 {
        o += &ok(i);
    }
    o += "{\"ts\": \"t\", \"decision_id\": \"ghost\", \"model_id\": \"m\", \"success\": true, \"quality\": 1.0}\n";
    for i in 50..100 {
        o += &ok(i);
    }
    o += "{not json\n";
    std::fs::write(logs.join("outcomes-1.jsonl"), o).unwrap();
    for budget in [u64::MAX, 500] {
        let out = dir.path().join(format!("t{budget}.parquet"));
        let err = ingest_with_budget(&logs, &out, budget, BadRowPolicy::Fail)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("outcomes-1.jsonl:51: unknown decision_id \"ghost\""),
            "{err}"
        );
        let rep = ingest_with_budget(&logs, &out, budget, BadRowPolicy::Skip).unwrap();
        let lines: Vec<usize> = rep.bad_rows.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![51, 102], "{:?}", rep.bad_rows);
        assert_eq!(rep.rows_written, 100);
    }
    // A malformed line before any unknown decision is the one reported.
    let mut o = ok(0);
    o += "{not json\n";
    o += "{\"ts\": \"t\", \"decision_id\": \"ghost\", \"model_id\": \"m\", \"success\": true, \"quality\": 1.0}\n";
    std::fs::write(logs.join("outcomes-1.jsonl"), o).unwrap();
    let err = ingest_with_budget(
        &logs,
        &dir.path().join("u.parquet"),
        500,
        BadRowPolicy::Fail,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("outcomes-1.jsonl:2: outcome:"), "{err}");
}

/// The shadow report on a log directory whose numbers are computed by hand: agreement,
/// each router's estimated quality and cost (observed, `predicted_quality`, per-task mean
/// of every decision's outcomes, overall mean), unestimable decisions, and malformed lines
/// reported as file:line. `predicted_quality` as the service wrote it before `schema` (an object
/// model -> p).
#[test]
fn shadow_report_numbers_match_a_hand_computation() {
    shadow_report_matches_the_hand_computation(r#"{"A": 0.9, "B": 0.3}"#);
}

/// The same with `predicted_quality` as version 2 of the log schema writes it (a list).
#[test]
fn shadow_report_reads_version_2_predictions() {
    shadow_report_matches_the_hand_computation(
        r#"[{"model": "A", "p": 0.9}, {"model": "B", "p": 0.3}]"#,
    );
}

fn shadow_report_matches_the_hand_computation(predicted_quality: &str) {
    let dir = tempfile::tempdir().unwrap();
    let shadow = |model: &str, agrees: bool| {
        format!(r#"{{"router": "learned", "primary": "{model}", "agrees": {agrees}}}"#)
    };
    let decision = |id: &str, task: &str, primary: &str, shadow: &str, extra: &str| {
        format!(
            r#"{{"decision_id": "{id}", "task": "{task}", "router": "rules", "primary": "{primary}", "shadow": {shadow}{extra}, "future": 1}}"#
        )
    };
    let decisions = [
        decision("d1", "qa", "A", &shadow("A", true), ""),
        decision("d2", "qa", "A", &shadow("B", false), ""),
        "{broken".to_string(),
        decision(
            "d3",
            "code",
            "B",
            &shadow("A", false),
            &format!(r#", "predicted_quality": {predicted_quality}"#),
        ),
        decision("d4", "code", "B", &shadow("A", false), ""),
        decision("d5", "code", "A", "null", ""), // no shadow: only feeds the means
        decision("d6", "qa", "A", &shadow("A", true), ""), // no outcome
        decision("d7", "qa", "B", &shadow("C", false), ""), // C never observed
    ];
    std::fs::write(
        dir.path().join("decisions-20250101T000000-000001.jsonl"),
        decisions.join("\n") + "\n",
    )
    .unwrap();
    let outcome = |id: &str, model: &str, q: f64, c: f64| {
        format!(
            r#"{{"ts": "2025-01-01T00:00:00Z", "decision_id": "{id}", "model_id": "{model}", "success": true, "quality": {q}, "cost_usd": {c}}}"#
        )
    };
    let outcomes = [
        outcome("d1", "A", 1.0, 0.01),
        outcome("d2", "A", 0.5, 0.01),
        outcome("d2", "B", 0.8, 0.001),
        outcome("d3", "B", 0.2, 0.002),
        outcome("d4", "B", 0.4, 0.002),
        "not json".to_string(),
        outcome("d5", "A", 0.6, 0.013),
        outcome("d7", "B", 1.0, 0.002),
    ];
    std::fs::write(
        dir.path().join("outcomes-20250101T000000-000001.jsonl"),
        outcomes.join("\n") + "\n",
    )
    .unwrap();

    let r = signalbox_train::shadow::run(dir.path()).unwrap();
    // d1, d2, d3, d4, d6, d7 have a shadow decision; d6 has no outcome.
    assert_eq!(r.decisions_with_shadow, 6);
    assert_eq!(r.with_outcome, 5);
    // Only d1 agrees.
    assert_eq!(r.agreement, 1.0 / 5.0);
    // d7's shadow choice C has no outcome, prediction or mean anywhere.
    assert_eq!(r.unestimable, 1);
    assert_eq!(r.routers.len(), 2);
    // Live router: the observed outcomes of d1..d4.
    let rules = &r.routers["rules"];
    assert_eq!((rules.decisions, rules.observed), (4, 4));
    assert_eq!(rules.mean_quality, (1.0 + 0.5 + 0.2 + 0.4) / 4.0);
    assert_eq!(rules.mean_cost_usd, (0.01 + 0.01 + 0.002 + 0.002) / 4.0);
    // Shadow router: d1 A observed (1.0, 0.01); d2 B observed (0.8, 0.001); d3 A from
    // predicted_quality 0.9, cost = mean cost of A on `code` (d5: 0.013); d4 A from the
    // mean of A on `code` (d5: 0.6, 0.013). d5 has no shadow but counts for the task mean.
    let learned = &r.routers["learned"];
    assert_eq!((learned.decisions, learned.observed), (4, 2));
    assert_eq!(learned.mean_quality, (1.0 + 0.8 + 0.9 + 0.6) / 4.0);
    assert_eq!(learned.mean_cost_usd, (0.01 + 0.001 + 0.013 + 0.013) / 4.0);
    // Malformed lines, with file and line.
    assert_eq!(r.bad_lines, 2);
    assert_eq!(r.malformed.len(), 2);
    assert!(
        r.malformed[0].contains("decisions-20250101T000000-000001.jsonl:3: decision:"),
        "{:?}",
        r.malformed
    );
    assert!(
        r.malformed[1].contains("outcomes-20250101T000000-000001.jsonl:6: outcome:"),
        "{:?}",
        r.malformed
    );
    let text = signalbox_train::shadow::render(&r);
    assert!(text.contains("agreement: 20.0%"), "{text}");
    assert!(
        text.contains("learned: 4 decisions, est. quality 0.825, est. cost $0.009250/request (2 observed, 2 estimated)"),
        "{text}"
    );
    assert!(
        text.contains("rules: 4 decisions, est. quality 0.525, est. cost $0.006000/request (4 observed, 0 estimated)"),
        "{text}"
    );
    assert!(
        text.contains("outcomes-20250101T000000-000001.jsonl:6: outcome:"),
        "{text}"
    );
}

/// Writes `lines` into `dir` as `replica` would: segments of `per_segment` lines named
/// `{kind}-{replica}-{start}-{seq}.jsonl`, one second apart.
fn write_replica_segments(
    dir: &std::path::Path,
    replica: &str,
    kind: &str,
    lines: &[&str],
    per_segment: usize,
) {
    std::fs::create_dir_all(dir).unwrap();
    for (seq, chunk) in lines.chunks(per_segment).enumerate() {
        let stamp = format!("20250101T0000{:02}", seq % 60);
        let name = signalbox_features::log_segments::segment_file_name(
            kind,
            replica,
            &stamp,
            seq as u64 + 1,
        );
        std::fs::write(dir.join(name), chunk.join("\n") + "\n").unwrap();
    }
}

/// The table as JSON Lines, its rows sorted (by decision id first: `prompt_id` leads each row).
fn sorted_rows(path: &std::path::Path) -> Vec<String> {
    let mut rows: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    rows.sort();
    rows
}

/// One stream of traffic (the synthetic generator's decisions and outcomes) logged by one
/// replica, and by three replicas where each decision's outcomes were reported to another
/// replica than the one that made it (round robin): ingesting the three replicas' logs (a
/// directory each, or all in one shared directory) gives the same table as the one replica's,
/// with one join partition or many, through the library and through the CLI with a glob
/// pattern (a directory also named on its own is read once). Each replica's directory alone
/// does not join: its outcomes' decisions are elsewhere.
#[test]
fn three_replicas_logs_give_the_same_table_as_one_replicas_log() {
    use signalbox_train::ingest::segment_files;
    let tmp = tempfile::tempdir().unwrap();
    let generated = tmp.path().join("generated");
    // 200 decisions, 3 outcomes each.
    signalbox_train::synth::generate(&generated, 600, 40, 7).unwrap();
    let read = |kind: &str| -> String {
        segment_files(&generated, kind)
            .unwrap()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    };
    let (decision_text, outcome_text) = (read("decisions"), read("outcomes"));
    let decisions: Vec<&str> = decision_text.lines().collect();
    let outcomes: Vec<&str> = outcome_text.lines().collect();
    assert_eq!((decisions.len(), outcomes.len()), (200, 600));
    let id_of = |line: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["decision_id"].as_str().unwrap().to_string()
    };

    // One replica.
    let one = tmp.path().join("one");
    write_replica_segments(&one, "node-a-50051", "decisions", &decisions, 70);
    write_replica_segments(&one, "node-a-50051", "outcomes", &outcomes, 110);

    // Three replicas: decision i made by replica i % 3, its outcomes reported to the next.
    let made_by: std::collections::HashMap<String, usize> = decisions
        .iter()
        .enumerate()
        .map(|(i, d)| (id_of(d), i % 3))
        .collect();
    let mut replica_decisions: [Vec<&str>; 3] = Default::default();
    let mut replica_outcomes: [Vec<&str>; 3] = Default::default();
    for (i, d) in decisions.iter().enumerate() {
        replica_decisions[i % 3].push(d);
    }
    for o in &outcomes {
        let maker = made_by[&id_of(o)];
        replica_outcomes[(maker + 1) % 3].push(o);
    }
    let logs = tmp.path().join("logs");
    let shared = tmp.path().join("shared");
    for r in 0..3 {
        let replica = format!("replica-{r}.example-50051");
        for dir in [logs.join(format!("replica-{r}")), shared.clone()] {
            write_replica_segments(&dir, &replica, "decisions", &replica_decisions[r], 20);
            write_replica_segments(&dir, &replica, "outcomes", &replica_outcomes[r], 45);
        }
    }
    // A file beside the replicas' directories is not one of them.
    std::fs::write(logs.join("replica-notes.txt"), "not a log").unwrap();
    let replica_dirs: Vec<std::path::PathBuf> =
        (0..3).map(|r| logs.join(format!("replica-{r}"))).collect();

    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let ingest = |dirs: &[std::path::PathBuf], name: &str, budget_bytes: u64| {
        let path = out.join(name);
        let mut w = TableWriter::create(&path).unwrap();
        let mut rep = IngestReport::default();
        let opts = service_logs::JoinOptions {
            budget_bytes,
            temp_parent: None,
        };
        service_logs::ingest_dirs_with(
            dirs,
            &mut w,
            &mut rep,
            BadRowPolicy::Skip,
            &hidden(),
            &opts,
        )
        .unwrap();
        w.finish().unwrap();
        (sorted_rows(&path), rep)
    };
    let (expected, rep) = ingest(std::slice::from_ref(&one), "one.jsonl", u64::MAX);
    assert_eq!(expected.len(), 600);
    assert!(rep.bad_rows.is_empty(), "{:?}", rep.bad_rows);
    assert!(
        expected[0].starts_with("{\"prompt_id\":\"service:"),
        "{}",
        expected[0]
    );
    // A directory given twice is read once.
    let twice: Vec<std::path::PathBuf> = replica_dirs
        .iter()
        .cloned()
        .chain([logs.join("replica-1").join("..").join("replica-1")])
        .collect();
    for (dirs, name, budget) in [
        (&replica_dirs, "three.jsonl", u64::MAX),
        (&twice, "three-twice.jsonl", u64::MAX),
        (&replica_dirs, "three-partitioned.jsonl", 2_000),
        (&vec![shared.clone()], "shared.jsonl", u64::MAX),
        (&vec![shared.clone()], "shared-partitioned.jsonl", 2_000),
    ] {
        let (rows, rep) = ingest(dirs, name, budget);
        assert!(rep.bad_rows.is_empty(), "{name}: {:?}", rep.bad_rows);
        assert!(rep.no_prompt_skipped.is_empty(), "{name}");
        assert_eq!(rep.rows_written, 600, "{name}");
        assert_eq!(rows, expected, "{name}");
        if budget < u64::MAX {
            assert!(rep.join_partitions > 1, "{name}: {}", rep.join_partitions);
        }
    }
    // One replica's directory on its own: each of its outcomes' decisions is in another one.
    let (rows, rep) = ingest(&replica_dirs[..1], "alone.jsonl", u64::MAX);
    assert!(rows.is_empty(), "{rows:?}");
    assert_eq!(rep.bad_rows.len(), replica_outcomes[0].len());
    assert!(rep.bad_rows[0].reason.contains("unknown decision_id"));

    // The CLI: a glob pattern of the replicas' directories, and one of them named again.
    let cli_out = out.join("cli.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_signalbox-train"))
        .arg("ingest")
        .arg("--service-logs")
        .arg(logs.join("replica-*"))
        .arg("--service-logs")
        .arg(&replica_dirs[1])
        .arg("--out")
        .arg(&cli_out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(sorted_rows(&cli_out), expected);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("600 rows written"), "{stderr}");

    // A pattern that matches no directory is an error naming it; nothing is written.
    let missing = logs.join("replica-?x*");
    let nothing = out.join("nothing.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_signalbox-train"))
        .args(["ingest", "--service-logs"])
        .arg(&missing)
        .arg("--out")
        .arg(&nothing)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("--service-logs") && stderr.contains(&*missing.to_string_lossy()),
        "{stderr}"
    );
    assert!(stderr.contains("matches no directory"), "{stderr}");
    assert!(!nothing.exists());
}

/// `expand_dirs`: directories as given, patterns expanded in name order (directories only, no
/// hidden ones), each directory once, and clear errors for a bad or empty pattern.
#[test]
fn service_log_patterns_expand_to_directories_once() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    for d in ["r-b", "r-a", ".r-hidden", "other"] {
        std::fs::create_dir(base.join(d)).unwrap();
    }
    std::fs::write(base.join("r-file"), "").unwrap();
    let expand =
        |values: &[std::path::PathBuf]| service_logs::expand_dirs("--service-logs", values);
    let got = expand(&[
        base.join("other"),
        base.join("*r-*"),
        base.join("r-b"),
        base.join(".").join("other"),
    ])
    .unwrap();
    assert_eq!(
        got,
        vec![base.join("other"), base.join("r-a"), base.join("r-b")]
    );
    // A missing directory is taken as given (reading it reports it).
    assert_eq!(
        expand(&[base.join("missing")]).unwrap(),
        vec![base.join("missing")]
    );
    let err = expand(&[base.join("nope-*")]).unwrap_err().to_string();
    assert!(
        err.contains("--service-logs") && err.contains("nope-*"),
        "{err}"
    );
    assert!(err.contains("matches no directory"), "{err}");
    let err = expand(&[base.join("r-[")]).unwrap_err().to_string();
    assert!(err.contains("not a valid pattern"), "{err}");
}

// ---- LLMRouter data and wide outcome matrices ----

use signalbox_train::ingest::llmrouter::{self, Split};
use signalbox_train::ingest::wide::{WideSpec, ingest_wide};
use signalbox_train::table::OutcomeRow;

/// The canonical rows of a JSON Lines table, in file order.
fn rows_of(path: &std::path::Path) -> Vec<OutcomeRow> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The issue's cost rule: price per 1M tokens x (prompt characters / 4 + 200) / 1e6.
fn rule(price: f64, prompt: &str) -> f64 {
    price * (prompt.chars().count() as f64 / 4.0 + 200.0) / 1e6
}

const LR_TRAIN_Q1: &str = "What is 2 + 2?\nAnswer:";
const LR_TRAIN_Q2: &str = "Write a function, \"add\", in Python — née \\ ok";
const LR_TEST_Q1: &str = "Which planet is red?";

/// A tiny data set in the LLMRouter layout: 2 train prompts and 1 test prompt x 3 models;
/// `models.json` lists a 4th model without outcomes; `queries_train.jsonl` holds a query without
/// outcomes. `big` has different input and output prices.
fn write_llmrouter_fixture(dir: &std::path::Path) {
    let models = serde_json::json!({
        "small": {"size": "7B", "feature": "x", "input_price": 0.2, "output_price": 0.2, "model": "a/small"},
        "mid": {"size": "9B", "feature": "y", "input_price": 0.1, "output_price": 0.1, "model": "a/mid"},
        "big": {"size": "70B", "feature": "z", "input_price": 0.9, "output_price": 1.5, "model": "a/big"},
        "unused": {"size": "1B", "feature": "w", "input_price": 5.0, "output_price": 5.0, "model": "a/unused"}
    });
    std::fs::write(
        dir.join("models.json"),
        serde_json::to_string_pretty(&models).unwrap(),
    )
    .unwrap();
    let query = |task: &str, q: &str| {
        serde_json::json!({"task_name": task, "query": q, "ground_truth": "g", "metric": "em",
            "choices": null, "task_id": 1})
        .to_string()
    };
    std::fs::write(
        dir.join("queries_train.jsonl"),
        [
            query("gsm8k", LR_TRAIN_Q1),
            query("mbpp", "never scored"),
            query("mbpp", LR_TRAIN_Q2),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("queries_test.jsonl"),
        query("arc_challenge", LR_TEST_Q1) + "\n",
    )
    .unwrap();
    let train = serde_json::json!([
        {"question": LR_TRAIN_Q1, "scores": {"small": 1.0, "mid": 0.0, "big": 1.0}, "cluster_id": 3},
        {"question": LR_TRAIN_Q2, "scores": {"small": 0.0, "mid": 0.5, "big": 1.0}, "cluster_id": 1}
    ]);
    let test = serde_json::json!([
        {"question": LR_TEST_Q1, "scores": {"small": 0.0, "mid": 1.0, "big": 0.25}}
    ]);
    std::fs::write(
        dir.join("scores_train.json"),
        serde_json::to_string_pretty(&train).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("scores_test.json"),
        serde_json::to_string_pretty(&test).unwrap(),
    )
    .unwrap();
}

fn ingest_llmrouter(
    root: &std::path::Path,
    split: Split,
    out: &std::path::Path,
    policy: BadRowPolicy,
) -> Result<IngestReport, signalbox_train::TrainError> {
    let mut w = TableWriter::create(out)?;
    let mut rep = IngestReport::default();
    llmrouter::ingest(root, split, &mut w, &mut rep, policy, &hidden())?;
    w.finish()?;
    Ok(rep)
}

#[test]
fn llmrouter_rows_tasks_quality_and_cost_rule() {
    let dir = tempfile::tempdir().unwrap();
    write_llmrouter_fixture(dir.path());
    let out = dir.path().join("all.jsonl");
    let rep = ingest_llmrouter(dir.path(), Split::All, &out, BadRowPolicy::Fail).unwrap();
    assert!(rep.bad_rows.is_empty(), "{:?}", rep.bad_rows);
    assert_eq!(
        rep.rows_per_source,
        vec![
            ("llmrouter/train".to_string(), 6),
            ("llmrouter/test".to_string(), 3)
        ]
    );
    let rows = rows_of(&out);
    assert_eq!(rows.len(), 9);
    let price = |m: &str| match m {
        "small" => (0.2, 0.2),
        "mid" => (0.1, 0.1),
        _ => (0.9, 1.5),
    };
    let expect = [
        (LR_TRAIN_Q1, "gsm8k", "llmrouter/train", [1.0, 0.0, 1.0]),
        (LR_TRAIN_Q2, "mbpp", "llmrouter/train", [0.0, 0.5, 1.0]),
        (
            LR_TEST_Q1,
            "arc_challenge",
            "llmrouter/test",
            [0.0, 1.0, 0.25],
        ),
    ];
    for (prompt, task, source, qualities) in expect {
        for (model, q) in ["small", "mid", "big"].into_iter().zip(qualities) {
            let r = rows
                .iter()
                .find(|r| r.prompt.as_deref() == Some(prompt) && r.model_id == model)
                .unwrap_or_else(|| panic!("no row for {prompt:?} x {model}"));
            assert_eq!(r.task.as_deref(), Some(task));
            assert_eq!(r.source, source);
            assert_eq!(r.quality, q);
            assert_eq!(
                r.prompt_id,
                signalbox_train::ingest::prompt_id(source, prompt)
            );
            let (input, output) = price(model);
            let chars = prompt.chars().count() as f64;
            let cost = r.cost_usd.unwrap();
            assert!(
                (cost - (input * chars / 4.0 + output * 200.0) / 1e6).abs() < 1e-15,
                "{model} {prompt:?}: {cost}"
            );
            if input == output {
                // The issue's rule, exactly.
                assert!((cost - rule(input, prompt)).abs() < 1e-15);
            }
        }
    }
    // Characters, not bytes: the em dash and the accented letter count once.
    assert!(LR_TRAIN_Q2.len() > LR_TRAIN_Q2.chars().count());

    // The publishers' split, one table each.
    for (split, n) in [(Split::Train, 2), (Split::Test, 1)] {
        let out = dir.path().join(format!("{split:?}.parquet"));
        ingest_llmrouter(dir.path(), split, &out, BadRowPolicy::Fail).unwrap();
        let ds = Dataset::load(&out).unwrap();
        assert_eq!(ds.len(), n, "{split:?}");
        assert_eq!(ds.models, vec!["big", "mid", "small"]);
    }
}

#[test]
fn llmrouter_bad_rows_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write_llmrouter_fixture(dir.path());
    // Line 2: score out of range; line 3: question not in the query file; line 4: no price.
    let scores = "[\n\
        {\"question\": \"What is 2 + 2?\\nAnswer:\", \"scores\": {\"small\": 1.5, \"mid\": 0.0}},\n\
        {\"question\": \"unknown\", \"scores\": {\"small\": 1.0}},\n\
        {\"question\": \"Which planet is red?\", \"scores\": {\"nobody\": 1.0}},\n\
        {\"question\": \"never scored\", \"scores\": {\"small\": 1.0, \"mid\": 0.0}}\n]\n";
    std::fs::write(dir.path().join("scores_train.json"), scores).unwrap();
    std::fs::write(
        dir.path().join("queries_train.jsonl"),
        std::fs::read_to_string(dir.path().join("queries_train.jsonl")).unwrap()
            + "{\"query\": \"Which planet is red?\", \"task_name\": \"x\"}\n{not json\n",
    )
    .unwrap();
    let out = dir.path().join("t.jsonl");
    let rep = ingest_llmrouter(dir.path(), Split::Train, &out, BadRowPolicy::Skip).unwrap();
    let found: Vec<(String, usize)> = rep
        .bad_rows
        .iter()
        .map(|b| {
            (
                b.file.file_name().unwrap().to_string_lossy().to_string(),
                b.line,
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("queries_train.jsonl".to_string(), 5),
            ("scores_train.json".to_string(), 2),
            ("scores_train.json".to_string(), 3),
            ("scores_train.json".to_string(), 4),
        ],
        "{:#?}",
        rep.bad_rows
    );
    assert!(rep.bad_rows[0].reason.contains("invalid JSON"));
    assert!(
        rep.bad_rows[1].reason.contains("scores.small"),
        "{}",
        rep.bad_rows[1]
    );
    assert!(rep.bad_rows[2].reason.contains("not found as a query"));
    assert!(rep.bad_rows[3].reason.contains("scores.nobody"));
    assert!(rep.bad_rows[3].reason.contains("models.json"));
    assert_eq!(rows_of(&out).len(), 2);

    let err = ingest_llmrouter(dir.path(), Split::Train, &out, BadRowPolicy::Fail).unwrap_err();
    assert!(err.to_string().contains("queries_train.jsonl:5:"), "{err}");
    // A missing file names itself.
    std::fs::remove_file(dir.path().join("scores_test.json")).unwrap();
    let err = ingest_llmrouter(dir.path(), Split::Test, &out, BadRowPolicy::Skip).unwrap_err();
    assert!(err.to_string().contains("scores_test.json"), "{err}");
}

/// The real LLMRouter data beside the repository: the counts its README states.
#[test]
fn llmrouter_real_data_counts() {
    let root = common::repo().join("../shared/datasets/llmrouter");
    if !root.join("scores_train.json").exists() {
        eprintln!(
            "skipped: LLMRouter data not found at {} (../shared/datasets/llmrouter)",
            root.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 14 tasks in all; the test split holds 10 of them.
    for (split, prompts, n_tasks) in [(Split::Train, 5608, 14), (Split::Test, 500, 10)] {
        let out = dir.path().join(format!("{split:?}.parquet"));
        let rep = ingest_llmrouter(&root, split, &out, BadRowPolicy::Fail).unwrap();
        assert_eq!(rep.rows_written, prompts * 9);
        let ds = Dataset::load(&out).unwrap();
        assert_eq!(ds.len(), prompts, "{split:?}");
        assert_eq!(ds.models.len(), 9, "{:?}", ds.models);
        assert!(
            ds.models
                .iter()
                .any(|m| m == "llama-3.1-nemotron-51b-instruct")
        );
        let tasks: HashSet<&str> = ds.tasks.iter().map(|t| t.as_deref().unwrap()).collect();
        assert_eq!(tasks.len(), n_tasks, "{split:?}: {tasks:?}");
        assert!(ds.quality.iter().flatten().all(Option::is_some));
        assert!(ds.observed_cost.iter().all(Option::is_some));
    }
}

fn wide_spec(quality: &[&str], cost: &[&str], price: &[&str]) -> WideSpec {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    WideSpec::from_flags("text", Some("kind"), &s(quality), &s(cost), &s(price)).unwrap()
}

fn ingest_wide_file(
    path: &std::path::Path,
    spec: &WideSpec,
    policy: BadRowPolicy,
) -> Result<(IngestReport, Vec<OutcomeRow>), signalbox_train::TrainError> {
    let out = path.with_extension("out.jsonl");
    let mut w = TableWriter::create(&out)?;
    let mut rep = IngestReport::default();
    ingest_wide(path, spec, &mut w, &mut rep, policy)?;
    w.finish()?;
    Ok((rep, rows_of(&out)))
}

#[test]
fn wide_csv_with_cost_columns() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("matrix.csv");
    std::fs::write(
        &csv,
        "id,text,kind,q_a,q_b,c_a,c_b\n\
         1,\"first, prompt\nwith two lines\",math,1,0.5,0.002,0.0001\n\
         2,second prompt,,True,false,0.003,0\n",
    )
    .unwrap();
    let spec = wide_spec(&["a=q_a", "b=q_b"], &["a=c_a", "b=c_b"], &[]);
    let (rep, rows) = ingest_wide_file(&csv, &spec, BadRowPolicy::Fail).unwrap();
    assert_eq!(rep.rows_per_source, vec![("wide/matrix".to_string(), 4)]);
    type Cells<'a> = (&'a str, Option<&'a str>, &'a str, f64, Option<f64>);
    let got: Vec<Cells> = rows
        .iter()
        .map(|r| {
            (
                r.prompt.as_deref().unwrap(),
                r.task.as_deref(),
                r.model_id.as_str(),
                r.quality,
                r.cost_usd,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "first, prompt\nwith two lines",
                Some("math"),
                "a",
                1.0,
                Some(0.002)
            ),
            (
                "first, prompt\nwith two lines",
                Some("math"),
                "b",
                0.5,
                Some(0.0001)
            ),
            ("second prompt", None, "a", 1.0, Some(0.003)),
            ("second prompt", None, "b", 0.0, Some(0.0)),
        ]
    );
    assert_eq!(
        rows[0].prompt_id,
        signalbox_train::ingest::prompt_id("wide/matrix", "first, prompt\nwith two lines")
    );
}

#[test]
fn wide_csv_and_json_lines_with_prices() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("p.csv");
    std::fs::write(
        &csv,
        "text,kind,q_a,q_b\nhello there,chat,1,0\nnaïve?,,0.25,1\n",
    )
    .unwrap();
    let spec = wide_spec(&["a=q_a", "b=q_b"], &[], &["a=0.9"]);
    let (_, rows) = ingest_wide_file(&csv, &spec, BadRowPolicy::Fail).unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let p = r.prompt.as_deref().unwrap();
        match r.model_id.as_str() {
            "a" => assert!((r.cost_usd.unwrap() - rule(0.9, p)).abs() < 1e-15),
            _ => assert_eq!(r.cost_usd, None, "b has neither a cost column nor a price"),
        }
    }
    assert!((rows[2].cost_usd.unwrap() - 0.9 * (6.0 / 4.0 + 200.0) / 1e6).abs() < 1e-15);

    // The same matrix as JSON Lines (numbers, booleans, null task) gives the same rows.
    let jsonl = dir.path().join("p.jsonl");
    std::fs::write(
        &jsonl,
        "{\"text\": \"hello there\", \"kind\": \"chat\", \"q_a\": true, \"q_b\": 0}\n\n\
         {\"text\": \"naïve?\", \"kind\": null, \"q_a\": 0.25, \"q_b\": 1.0}\n",
    )
    .unwrap();
    let (_, json_rows) = ingest_wide_file(&jsonl, &spec, BadRowPolicy::Fail).unwrap();
    type Cells = (Option<String>, Option<String>, String, f64, Option<f64>);
    let strip = |rows: &[OutcomeRow]| -> Vec<Cells> {
        rows.iter()
            .map(|r| {
                (
                    r.prompt.clone(),
                    r.task.clone(),
                    r.model_id.clone(),
                    r.quality,
                    r.cost_usd,
                )
            })
            .collect()
    };
    assert_eq!(strip(&json_rows), strip(&rows));
}

#[test]
fn wide_bad_rows_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "text,kind,q_a,q_b,c_a\n\
         ok prompt,t,1,0,0.1\n\
         ,t,1,0,0.1\n\
         \"multi\nline\",t,maybe,0,0.1\n\
         fine,t,1,,-2\n\
         last,t,0,1,0.2\n",
    )
    .unwrap();
    let spec = wide_spec(&["a=q_a", "b=q_b"], &["a=c_a"], &["b=0.1"]);
    let (rep, rows) = ingest_wide_file(&csv, &spec, BadRowPolicy::Skip).unwrap();
    assert_eq!(rows.len(), 4, "two good prompts x two models");
    let lines: Vec<usize> = rep.bad_rows.iter().map(|b| b.line).collect();
    assert_eq!(lines, vec![3, 4, 6], "{:#?}", rep.bad_rows);
    assert!(
        rep.bad_rows[0]
            .reason
            .contains("column \"text\": empty prompt")
    );
    assert!(
        rep.bad_rows[1].reason.contains("column \"q_a\"")
            && rep.bad_rows[1].reason.contains("\"maybe\""),
        "{}",
        rep.bad_rows[1]
    );
    assert!(
        rep.bad_rows[2]
            .reason
            .contains("column \"q_b\": missing value")
    );
    assert!(
        rep.bad_rows[2]
            .reason
            .contains("column \"c_a\": cost \"-2\""),
        "{}",
        rep.bad_rows[2]
    );
    let err = ingest_wide_file(&csv, &spec, BadRowPolicy::Fail).unwrap_err();
    assert!(
        err.to_string().contains("bad.csv:3: column \"text\""),
        "{err}"
    );

    // JSON Lines: an invalid line and a missing key.
    let jsonl = dir.path().join("bad.jsonl");
    std::fs::write(
        &jsonl,
        "{\"text\": \"a\", \"kind\": \"t\", \"q_a\": 1, \"q_b\": 0, \"c_a\": 0.1}\n\
         {\"text\": \"b\", \"kind\": \"t\", \"q_a\": 1}\n\
         not json\n\
         {\"text\": \"c\", \"kind\": [1], \"q_a\": 2, \"q_b\": 0, \"c_a\": \"x\"}\n",
    )
    .unwrap();
    let (rep, rows) = ingest_wide_file(&jsonl, &spec, BadRowPolicy::Skip).unwrap();
    assert_eq!(rows.len(), 2);
    let found: Vec<usize> = rep.bad_rows.iter().map(|b| b.line).collect();
    assert_eq!(found, vec![3, 2, 4], "{:#?}", rep.bad_rows);
    assert!(rep.bad_rows[0].reason.contains("not a JSON object"));
    assert!(
        rep.bad_rows[1]
            .reason
            .contains("column \"q_b\": missing value")
    );
    assert!(
        rep.bad_rows[1]
            .reason
            .contains("column \"c_a\": missing value")
    );
    let r = &rep.bad_rows[2].reason;
    assert!(
        r.contains("column \"kind\"")
            && r.contains("column \"q_a\"")
            && r.contains("column \"c_a\""),
        "{r}"
    );
}

#[test]
fn wide_flags_naming_missing_columns_or_models_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("m.csv");
    std::fs::write(&csv, "text,kind,q_a\nhi,t,1\n").unwrap();
    let spec = wide_spec(&["a=q_a", "b=q_missing"], &[], &[]);
    let err = ingest_wide_file(&csv, &spec, BadRowPolicy::Skip)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m.csv")
            && err.contains("--quality-column b=q_missing")
            && err.contains("\"q_missing\""),
        "{err}"
    );
    let jsonl = dir.path().join("m.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"hi\", \"q_a\": 1}\n").unwrap();
    let err = ingest_wide_file(&jsonl, &wide_spec(&["a=q_a"], &[], &[]), BadRowPolicy::Skip)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m.jsonl") && err.contains("--task-column") && err.contains("\"kind\""),
        "{err}"
    );

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let flags = |q: &[&str], c: &[&str], p: &[&str]| {
        WideSpec::from_flags("text", None, &s(q), &s(c), &s(p))
            .unwrap_err()
            .to_string()
    };
    assert!(flags(&[], &[], &[]).contains("--quality-column"));
    assert!(flags(&["a"], &[], &[]).contains("--quality-column \"a\": expected MODEL=VALUE"));
    assert!(flags(&["a=x", "a=y"], &[], &[]).contains("given twice"));
    assert!(
        flags(&["a=x"], &["b=c"], &[])
            .contains("--cost-column: model \"b\" has no --quality-column")
    );
    assert!(flags(&["a=x"], &[], &["a=cheap"]).contains("--price a=cheap"));
    assert!(flags(&["a=x"], &["a=c"], &["a=1"]).contains("already has a cost"));

    // Through the CLI: the error names the file, the flag and the column.
    let run = Command::new(env!("CARGO_BIN_EXE_signalbox-train"))
        .args(["ingest", "--wide"])
        .arg(&csv)
        .args([
            "--prompt-column",
            "text",
            "--quality-column",
            "a=nope",
            "--out",
        ])
        .arg(dir.path().join("cli.jsonl"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("m.csv")
            && stderr.contains("--quality-column a=nope")
            && stderr.contains("\"nope\""),
        "{stderr}"
    );
    let run = Command::new(env!("CARGO_BIN_EXE_signalbox-train"))
        .args(["ingest", "--wide"])
        .arg(&csv)
        .args(["--prompt-column", "text", "--task-column", "kind"])
        .args(["--quality-column", "a=q_a", "--price", "a=0.5", "--out"])
        .arg(dir.path().join("cli.jsonl"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows = rows_of(&dir.path().join("cli.jsonl"));
    assert_eq!(rows.len(), 1);
    assert!((rows[0].cost_usd.unwrap() - rule(0.5, "hi")).abs() < 1e-15);
}
