//! The service reads logs written in older versions of the log schema
//! (`signalbox_features::log_schema`).

mod common;

use std::path::Path;

use common::*;
use tonic::Code;

/// A restart on a log in version 1 of the schema (the committed sample: hand-written records and
/// records as the service wrote them before `schema` existed, `pii` and `predicted_quality` as
/// objects) restores its decisions: an outcome for each is accepted. Its denied decision is not
/// restored, like an id that was never logged.
#[tokio::test]
async fn a_restart_restores_the_decisions_of_a_version_1_log() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/service-logs-sample");
    // The sample's decisions are months old: accept outcomes for ten years.
    let example = ExampleLog::new(|s| {
        let ttl = "decision_ttl_secs = 3600 ";
        assert!(s.contains(ttl), "example config TTL changed");
        s.replace(ttl, "decision_ttl_secs = 315360000 ")
    });
    std::fs::create_dir_all(&example.log_dir).unwrap();
    let mut restored = Vec::new();
    let mut denied = Vec::new();
    for entry in std::fs::read_dir(&sample).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        if name.starts_with("decisions-") {
            for line in text.lines() {
                let d: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(d.get("schema").is_none(), "version 1: {line}");
                let id = d["decision_id"].as_str().unwrap().to_string();
                let primary = d["primary"].as_str().unwrap().to_string();
                if d["denied"] == true {
                    denied.push(id);
                } else {
                    restored.push((id, primary));
                }
            }
        }
        std::fs::write(example.log_dir.join(&name), text).unwrap();
    }
    assert_eq!((restored.len(), denied.len()), (9, 1));

    let (server, mut client) = example.start().await;
    for (id, model) in &restored {
        let ack = client
            .report_outcome(outcome(id, model))
            .await
            .unwrap_or_else(|e| panic!("outcome for restored decision {id}: {e}"))
            .into_inner();
        assert!(!ack.duplicate, "{id}");
    }
    for id in denied.iter().map(String::as_str).chain(["never-logged"]) {
        let err = client
            .report_outcome(outcome(id, "gpt-4o-mini"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{id}: {err}");
    }
    server.shutdown().await.unwrap();
}

/// Version 2 as the service writes it: `schema` first; `pii` lists every kind the policy
/// detects in detector order, 0 when not found (so a columnar reader infers its type from any
/// line); `predicted_quality` is an empty list without a learned router; `category` is present
/// (null when not given). Every line reads back as the shared record types.
#[tokio::test]
async fn the_service_writes_version_2_records() {
    use signalbox::decision_log::{DecisionRecord, OutcomeRecord};
    let mut t = start_example(|s| s).await;
    let plain = route(
        &mut t.client,
        text_request("acme", "What is the capital of Australia?"),
    )
    .await;
    let mut req = text_request("acme", "Mail jane.doe@example.com the tickets.");
    req.category = "support".into();
    route(&mut t.client, req).await;
    report(
        &mut t.client,
        outcome(&plain.decision_id, primary_id(&plain)),
    )
    .await;
    t.server.shutdown().await.unwrap();

    let kinds = [
        "email",
        "phone",
        "card_number",
        "iban",
        "national_id",
        "secret",
    ];
    let decisions = read_log(&t.log_dir, "decisions");
    assert_eq!(decisions.len(), 2);
    for (d, email) in decisions.iter().zip([0, 1]) {
        let pii: Vec<(&str, u64)> = d["pii"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["kind"].as_str().unwrap(), p["count"].as_u64().unwrap()))
            .collect();
        let want: Vec<(&str, u64)> = kinds
            .iter()
            .map(|&k| (k, if k == "email" { email } else { 0 }))
            .collect();
        assert_eq!(pii, want);
        assert_eq!(d["predicted_quality"], serde_json::json!([]));
    }
    assert!(decisions[0]["category"].is_null());
    assert_eq!(decisions[1]["category"], "support");
    for kind in ["decisions", "outcomes"] {
        let mut lines = 0;
        for entry in std::fs::read_dir(&t.log_dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if !(name.starts_with(&format!("{kind}-")) && name.ends_with(".jsonl")) {
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                assert!(line.starts_with(r#"{"schema":2,"ts":"#), "{line}");
                if kind == "decisions" {
                    serde_json::from_str::<DecisionRecord>(line).unwrap();
                } else {
                    serde_json::from_str::<OutcomeRecord>(line).unwrap();
                }
                lines += 1;
            }
        }
        assert_eq!(lines, if kind == "decisions" { 2 } else { 1 }, "{kind}");
    }
}
