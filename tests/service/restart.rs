//! Restarts on the same log: spend, in-flight estimates and reported attempts survive them.

use crate::common::*;
use tonic::Code;

#[tokio::test]
async fn spend_survives_a_restart() {
    let example = ExampleLog::new(|s| s);
    let (server, mut client) = example.start().await;
    let d = route(&mut client, text_request("trial", "Name a colour.")).await;
    let mut o = outcome(&d.decision_id, MIXTRAL);
    o.cost_usd = Some(1.0);
    client.report_outcome(o).await.unwrap();
    server.shutdown().await.unwrap();

    let (server, mut client) = example.start().await;
    let err = client
        .route(text_request("trial", "Name a colour."))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    // Decisions made before the restart still accept outcomes.
    let mut o = outcome(&d.decision_id, MIXTRAL);
    o.cost_usd = Some(0.0);
    client.report_outcome(o).await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn in_flight_estimates_are_held_again_after_a_restart() {
    // A cap below one decision's estimate: one decision in flight is enough to reach it.
    let example = ExampleLog::new(|s| {
        s.replace(
            "tenant = \"trial\"\ndaily_usd = 1.0",
            "tenant = \"trial\"\ndaily_usd = 0.0001",
        )
    });
    assert!(example.text.contains("daily_usd = 0.0001"));
    let (server, mut client) = example.start().await;
    let q = "Name a colour.";
    let d = route(&mut client, text_request("trial", q)).await;
    assert!(d.estimated_cost_usd > 0.0001, "{}", d.estimated_cost_usd);
    let err = client.route(text_request("trial", q)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "the estimate is held");
    server.shutdown().await.unwrap();

    // No outcome came: after a restart the estimate is held again.
    let (server, mut client) = example.start().await;
    let err = client.route(text_request("trial", q)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    // Its outcome (free) releases the hold.
    let mut first = outcome(&d.decision_id, primary_id(&d));
    first.cost_usd = Some(0.0);
    first.attempt = 1;
    client.report_outcome(first.clone()).await.unwrap();
    let d2 = route(&mut client, text_request("trial", q)).await;
    let mut o = outcome(&d2.decision_id, primary_id(&d2));
    o.cost_usd = Some(0.0);
    client.report_outcome(o).await.unwrap();
    server.shutdown().await.unwrap();

    // Both decisions settled: a restart holds nothing, and still knows the reported attempt.
    let (server, mut client) = example.start().await;
    client.route(text_request("trial", q)).await.unwrap();
    let again = client.report_outcome(first).await.unwrap().into_inner();
    assert!(again.duplicate, "{again:?}");
    server.shutdown().await.unwrap();
}

/// A decision older than `in_flight_ttl_secs` (600 s) but still within `decision_ttl_secs`
/// (3600 s) no longer holds its estimate after a restart, but still knows which attempts were
/// reported: the same report sent again after the restart is a duplicate, not a second booking.
#[tokio::test]
async fn a_reported_attempt_is_not_booked_again_after_a_restart_once_its_hold_has_lapsed() {
    let example = ExampleLog::new(|s| s);
    let (server, mut client) = example.start().await;
    let d = route(&mut client, text_request("trial", "Name a colour.")).await;
    let mut o = outcome(&d.decision_id, MIXTRAL);
    o.cost_usd = Some(0.6);
    o.attempt = 1;
    assert!(!report(&mut client, o.clone()).await.duplicate);
    server.shutdown().await.unwrap();

    // Make the decision 20 minutes old, as if the restart came that long after it, and its
    // segments last written then (the outcome's a second later), so the restart must pick the
    // outcome segment by its age.
    let now = chrono::Utc::now();
    let made = now - chrono::Duration::minutes(20);
    let old = made.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // The spend replay reads only segments written this month: in the first 20 minutes of a
    // month the outcome segment keeps today's date.
    let outcome_written = Some(made + chrono::Duration::seconds(1))
        .filter(|t| chrono::Datelike::month(t) == chrono::Datelike::month(&now))
        .unwrap_or(now);
    let mut rewritten = 0;
    for entry in std::fs::read_dir(&example.log_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("outcomes-") && name.ends_with(".jsonl") {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(outcome_written.into())
                .unwrap();
        }
        if !(name.starts_with("decisions-") && name.ends_with(".jsonl")) {
            continue;
        }
        let mut lines = Vec::new();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["decision_id"] == d.decision_id.as_str() {
                v["ts"] = old.clone().into();
                rewritten += 1;
            }
            lines.push(serde_json::to_string(&v).unwrap());
        }
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(made.into())
            .unwrap();
    }
    assert_eq!(rewritten, 1);

    let (server, mut client) = example.start().await;
    let again = report(&mut client, o.clone()).await;
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.cost_usd, 0.0);
    // $0.6 of the $1 daily cap is booked, once: a second $0.6 attempt goes over it.
    route(&mut client, text_request("trial", "Name a colour.")).await;
    o.attempt = 2;
    assert!(!report(&mut client, o).await.duplicate);
    let err = client
        .route(text_request("trial", "Name a colour."))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    server.shutdown().await.unwrap();
}

/// Two replicas sharing one log directory, each under its own replica id: their segments stay
/// apart, and a replica starting on the directory books the spend of both (its tenants are
/// theirs) and accepts outcomes for the decisions either made.
#[tokio::test]
async fn a_replica_starting_on_a_shared_log_restores_every_replicas_spend() {
    let example = ExampleLog::new(|s| s);
    let start_as = |id: &str| {
        let mut policy = policy_from(&example.text, example.tmp.path());
        policy.log.replica_id = Some(signalbox::decision_log::ReplicaId::new(id).unwrap());
        start_with(policy)
    };
    let (a, mut client_a) = start_as("replica-a").await;
    let (b, mut client_b) = start_as("replica-b").await;
    // `trial` may spend 1 USD a day: 0.6 through each replica is more.
    let mut decisions = Vec::new();
    for client in [&mut client_a, &mut client_b] {
        let d = route(client, text_request("trial", "Name a colour.")).await;
        let mut o = outcome(&d.decision_id, MIXTRAL);
        o.cost_usd = Some(0.6);
        client.report_outcome(o).await.unwrap();
        decisions.push(d);
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    let mut replicas = Vec::new();
    for kind in ["decisions", "outcomes"] {
        for p in signalbox::decision_log::segments(&example.log_dir, kind).unwrap() {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let parsed = signalbox_features::log_segments::parse_segment_name(&name, kind);
            replicas.push(parsed.and_then(|s| s.replica).unwrap().to_string());
        }
    }
    replicas.sort();
    assert_eq!(
        replicas,
        ["replica-a", "replica-a", "replica-b", "replica-b"]
    );

    // A third replica (named after its host and port) on the same directory.
    let (c, mut client) = example.start().await;
    let err = client
        .route(text_request("trial", "Name a colour."))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    for d in &decisions {
        let mut o = outcome(&d.decision_id, MIXTRAL);
        o.cost_usd = Some(0.0);
        o.attempt = 2;
        client.report_outcome(o).await.unwrap();
    }
    c.shutdown().await.unwrap();
}
