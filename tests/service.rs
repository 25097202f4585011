//! The real gRPC server on port 0, exercised through a tonic client: every RPC and every policy.

mod common;

use common::*;
use signalbox::proto::{self, route_request::Prompt};
use tonic::Code;

const MIXTRAL: &str = "mistralai/Mixtral-8x7B-Instruct-v0.1";
const GPT4: &str = "gpt-4-1106-preview";

#[tokio::test]
async fn routes_a_plain_question_with_a_full_explained_decision() {
    let mut t = start_example(|s| s).await;
    let d = t
        .client
        .route(text_request("acme", "What is the capital of Australia?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(primary_id(&d), MIXTRAL, "default rule: {:?}", d.reasons);
    let primary = d.primary.as_ref().unwrap();
    assert_eq!(primary.provider, "vllm-onprem");
    assert_eq!(primary.lane, "self_hosted");
    assert_eq!(
        d.fallbacks
            .iter()
            .map(|f| f.model_id.as_str())
            .collect::<Vec<_>>(),
        ["gpt-4o-mini", "llama-3.1-70b-instruct"]
    );
    assert!(!d.decision_id.is_empty() && !d.request_id.is_empty());
    assert_ne!(d.decision_id, d.request_id);
    assert!(d.policy_version.starts_with("example-2026-11+"));
    assert_eq!(d.router, proto::RouterKind::Rules as i32);
    assert_eq!(d.task, proto::TaskType::Qa as i32);
    assert_eq!(d.risk_tier, proto::RiskTier::Low as i32);
    assert_eq!(d.effective_data_class, proto::DataClass::Internal as i32);
    let ids = policy_ids(&d);
    assert!(
        ids.contains(&"task.detected") && ids.contains(&"rule.default"),
        "{ids:?}"
    );
    // Retrieval plan for Q&A from the policy.
    let r = d.retrieval.unwrap();
    assert!(r.enabled && r.index == "kb-general" && r.top_k == 8 && r.rerank);
    assert!(
        !d.cascade.unwrap().enabled,
        "interactive requests do not cascade"
    );
    assert!(d.estimated_cost_usd > 0.0);
    assert!(d.shadow.is_none(), "no learned router configured");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn caller_request_id_task_hint_and_chat_messages_are_honoured() {
    let mut t = start_example(|s| s).await;
    let req = proto::RouteRequest {
        request_id: "req-123".into(),
        tenant_id: "acme".into(),
        task_hint: proto::TaskType::Code as i32,
        prompt: Some(Prompt::Messages(proto::Messages {
            messages: vec![
                proto::ChatMessage {
                    role: "system".into(),
                    content: "You are helpful.".into(),
                },
                proto::ChatMessage {
                    role: "user".into(),
                    content: "hello there".into(),
                },
            ],
        })),
        ..Default::default()
    };
    let d = t.client.route(req).await.unwrap().into_inner();
    assert_eq!(d.request_id, "req-123");
    assert_eq!(d.task, proto::TaskType::Code as i32);
    assert_eq!(primary_id(&d), "qwen2.5-coder-32b-instruct");
    assert!(policy_ids(&d).contains(&"task.hint"));
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn pii_raises_the_data_class_and_keeps_the_request_in_private_lanes() {
    let mut t = start_example(|s| s).await;
    let mut req = text_request(
        "acme",
        "Draft a polite reply to jane.doe@example.com and call her at +1 (415) 555-0132 about the refund.",
    );
    req.data_class = proto::DataClass::Public as i32;
    req.quality_preference = Some(0.9); // would pick the hosted GPT-4 without PII
    let d = t.client.route(req).await.unwrap().into_inner();
    assert_eq!(d.effective_data_class, proto::DataClass::Pii as i32);
    let lane = &d.primary.as_ref().unwrap().lane;
    assert!(
        lane == "private" || lane == "self_hosted",
        "PII went to {lane}"
    );
    for f in &d.fallbacks {
        assert!(
            f.lane == "private" || f.lane == "self_hosted",
            "fallback {f:?}"
        );
    }
    let kinds: Vec<(&str, u32)> = d.pii.iter().map(|p| (p.kind.as_str(), p.count)).collect();
    assert!(
        kinds.contains(&("email", 1)) && kinds.contains(&("phone", 1)),
        "{kinds:?}"
    );
    let all_text = format!("{d:?}");
    assert!(!all_text.contains("jane.doe@example.com") && !all_text.contains("555-0132"));
    assert!(policy_ids(&d).contains(&"data_class.raised_by_pii"));
    assert!(policy_ids(&d).contains(&"data_class.pii.lanes"));

    // Secrets raise to regulated: private lane only.
    let d = t
        .client
        .route(text_request(
            "acme",
            "Why does this fail? client = OpenAI(api_key=\"sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD\")",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.effective_data_class, proto::DataClass::Regulated as i32);
    assert_eq!(d.primary.as_ref().unwrap().lane, "private");
    assert_eq!(primary_id(&d), "llama-3.1-70b-instruct");

    // The caller's class is never lowered.
    let mut req = text_request("acme", "What is the capital of Australia?");
    req.data_class = proto::DataClass::Regulated as i32;
    let d = t.client.route(req).await.unwrap().into_inner();
    assert_eq!(d.effective_data_class, proto::DataClass::Regulated as i32);
    assert_eq!(d.primary.as_ref().unwrap().lane, "private");

    let log_dir = t.log_dir.clone();
    t.server.shutdown().await.unwrap();
    let decisions = read_log(&log_dir, "decisions");
    assert_eq!(decisions.len(), 3);
    let raw = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        !raw.contains("jane.doe@example.com")
            && !raw.contains("555-0132")
            && !raw.contains("sk-proj-abc")
    );
    assert!(decisions[0]["prompt"].as_str().unwrap().contains("[EMAIL]"));
    assert!(
        decisions[0]["pii"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"kind": "email", "count": 1})),
        "{}",
        decisions[0]["pii"]
    );
    assert!(
        decisions[1]["prompt"].is_null(),
        "regulated prompts are not stored"
    );
    assert!(
        decisions[2]["prompt"].is_null(),
        "regulated prompts are not stored"
    );
}

#[tokio::test]
async fn capability_filter_excludes_models_and_unsatisfiable_requests_fail_precondition() {
    let mut t = start_example(|s| s).await;
    let mut req = text_request("acme", "Describe the attached chart.");
    req.required_capabilities = vec![proto::Capability::Vision as i32];
    let d = t.client.route(req).await.unwrap().into_inner();
    // The default rule's Mixtral has no vision: the first vision-capable fallback serves.
    assert_eq!(primary_id(&d), "gpt-4o-mini");
    assert!(policy_ids(&d).contains(&"capabilities"));
    assert!(policy_ids(&d).contains(&"rule.default.fallback"));

    // Vision + PII: no private or self-hosted model has vision.
    let mut req = text_request("acme", "Describe the chart and mail it to bob@example.org");
    req.required_capabilities = vec![proto::Capability::Vision as i32];
    let err = t.client.route(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("vision"), "{}", err.message());
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn high_stakes_domains_get_a_risk_tier_constraints_and_a_strong_model() {
    let mut t = start_example(|s| s).await;
    let d = t
        .client
        .route(text_request(
            "acme",
            "My patient has chest pain and shortness of breath; what dosage of aspirin is safe given their medication?",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.risk_tier, proto::RiskTier::High as i32);
    assert!(
        d.risk_constraints
            .contains(&"citations_required".to_string())
    );
    assert_eq!(primary_id(&d), GPT4);
    assert!(policy_ids(&d).contains(&"risk.high"));
    assert!(policy_ids(&d).contains(&"risk.high.min_model_quality"));

    // The metadata domain hint works too.
    let mut req = text_request("acme", "Summarise the attached document in three bullets.");
    req.metadata.insert("domain".into(), "legal".into());
    let d = t.client.route(req).await.unwrap().into_inner();
    assert_eq!(d.risk_tier, proto::RiskTier::High as i32);
    assert_eq!(primary_id(&d), GPT4);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn batch_mode_cascades_from_cheaper_models_and_quality_preference_selects_rules() {
    let mut t = start_example(|s| s).await;
    let mut req = text_request("acme", "Solve: if 3x + 7 = 22, what is x? Show the steps.");
    req.mode = proto::Mode::Batch as i32;
    let d = t.client.route(req).await.unwrap().into_inner();
    assert_eq!(primary_id(&d), GPT4, "math rule");
    let cascade = d.cascade.unwrap();
    assert!(cascade.enabled);
    let steps: Vec<&str> = cascade
        .steps
        .iter()
        .map(|s| s.target.as_ref().unwrap().model_id.as_str())
        .collect();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0], "qwen2.5-coder-32b-instruct", "cheapest first");
    assert_eq!(*steps.last().unwrap(), GPT4, "the primary is the last step");
    assert!(
        cascade.steps[0]
            .escalate_on
            .contains(&"schema_violation".to_string())
    );
    assert!(cascade.steps[2].escalate_on.is_empty());

    let mut req = text_request("acme", "Tell me about the history of Rome.");
    req.quality_preference = Some(0.95);
    let d = t.client.route(req).await.unwrap().into_inner();
    assert_eq!(primary_id(&d), GPT4);
    assert!(policy_ids(&d).contains(&"rule.quality-first"));
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn open_circuit_moves_the_primary_to_the_next_fallback_and_says_so() {
    let mut t = start_example(|s| s).await;
    let q = "What is the boiling point of water at sea level?";
    let d = t
        .client
        .route(text_request("acme", q))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(primary_id(&d), MIXTRAL);
    for i in 0..5 {
        let mut o = outcome(&d.decision_id, MIXTRAL);
        o.success = false;
        o.error = proto::ErrorKind::Timeout as i32;
        let ack = t.client.report_outcome(o).await.unwrap().into_inner();
        assert_eq!(ack.circuit_state, if i < 4 { "closed" } else { "open" });
    }
    let d2 = t
        .client
        .route(text_request("acme", q))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(primary_id(&d2), "gpt-4o-mini", "{:?}", d2.reasons);
    let ids = policy_ids(&d2);
    assert!(
        ids.contains(&"circuit_breaker.open") && ids.contains(&"rule.default.fallback"),
        "{ids:?}"
    );
    assert!(d2.reasons.iter().any(|r| r.message.contains(MIXTRAL)));
    assert!(d2.fallbacks.iter().all(|f| f.model_id != MIXTRAL));

    // Refusals and schema violations are not availability failures.
    let d3 = t
        .client
        .route(text_request("acme", "Write a haiku about autumn."))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..10 {
        let mut o = outcome(&d3.decision_id, "gpt-4o-mini");
        o.success = false;
        o.error = proto::ErrorKind::Refusal as i32;
        let ack = t.client.report_outcome(o).await.unwrap().into_inner();
        assert_eq!(ack.circuit_state, "closed");
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_open_circuit_half_opens_after_the_cooldown_and_a_good_probe_closes_it() {
    let mut t = start_example(|s| s.replace("cooldown_secs = 30", "cooldown_secs = 1")).await;
    let q = "What is the boiling point of water at sea level?";
    let d = route(&mut t.client, text_request("acme", q)).await;
    assert_eq!(primary_id(&d), MIXTRAL);
    for _ in 0..5 {
        let mut o = outcome(&d.decision_id, MIXTRAL);
        o.success = false;
        o.error = proto::ErrorKind::Timeout as i32;
        t.client.report_outcome(o).await.unwrap();
    }
    assert_eq!(
        primary_id(&route(&mut t.client, text_request("acme", q)).await),
        "gpt-4o-mini"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Half-open: one probe goes to the model, and says so.
    let probe = route(&mut t.client, text_request("acme", q)).await;
    assert_eq!(primary_id(&probe), MIXTRAL, "{:?}", probe.reasons);
    assert!(policy_ids(&probe).contains(&"circuit_breaker.half_open"));
    // While the probe is out, traffic stays on the fallback.
    let during = route(&mut t.client, text_request("acme", q)).await;
    assert_eq!(primary_id(&during), "gpt-4o-mini");
    // The probe's outcome never comes: after another cooldown a new probe may go.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let probe2 = route(&mut t.client, text_request("acme", q)).await;
    assert_eq!(primary_id(&probe2), MIXTRAL, "{:?}", probe2.reasons);
    let ack = t
        .client
        .report_outcome(outcome(&probe2.decision_id, MIXTRAL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.circuit_state, "closed");
    let after = route(&mut t.client, text_request("acme", q)).await;
    assert_eq!(primary_id(&after), MIXTRAL);
    assert!(
        !policy_ids(&after)
            .iter()
            .any(|p| p.starts_with("circuit_breaker"))
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn latency_budget_context_window_and_elevated_risk_filter_the_models() {
    let mut t = start_example(|s| s).await;
    let q = "What is the boiling point of water at sea level?";
    let within = |latency_budget_ms| proto::RouteRequest {
        latency_budget_ms,
        ..text_request("acme", q)
    };
    // Only gpt-4o-mini (typical 1200 ms) meets a 1300 ms budget: the rule's pick is skipped.
    let d = route(&mut t.client, within(1300)).await;
    assert_eq!(primary_id(&d), "gpt-4o-mini", "{:?}", d.reasons);
    assert!(policy_ids(&d).contains(&"latency_slo"), "{:?}", d.reasons);
    assert!(d.fallbacks.is_empty(), "{:?}", d.fallbacks);
    // A budget nobody meets is relaxed, and the decision says so.
    let d = route(&mut t.client, within(10)).await;
    assert_eq!(primary_id(&d), MIXTRAL);
    assert!(
        policy_ids(&d).contains(&"latency_slo.relaxed"),
        "{:?}",
        d.reasons
    );

    // ~60k tokens: the 32k-context models are out.
    let long = format!(
        "Summarize this report.\n{}",
        "The quarterly numbers were flat. ".repeat(7000)
    );
    assert!(long.len() < 262_144);
    let d = route(&mut t.client, text_request("acme", &long)).await;
    assert!(
        policy_ids(&d).contains(&"context_window"),
        "{:?}",
        d.reasons
    );
    for m in std::iter::once(d.primary.as_ref().unwrap()).chain(&d.fallbacks) {
        assert!(
            m.model_id != MIXTRAL && m.model_id != "qwen2.5-coder-32b-instruct",
            "{} has a 32k context",
            m.model_id
        );
    }

    // Financial advice detected from the text: elevated tier, its constraint, a 0.75+ model.
    let d = route(
        &mut t.client,
        text_request(
            "acme",
            "Should I invest my savings in index funds or pay off my mortgage?",
        ),
    )
    .await;
    assert_eq!(
        d.risk_tier,
        proto::RiskTier::Elevated as i32,
        "{:?}",
        d.reasons
    );
    assert!(d.risk_constraints.iter().any(|c| c == "citations_required"));
    assert_ne!(
        primary_id(&d),
        "gpt-4o-mini",
        "quality 0.75+ required: {:?}",
        d.reasons
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn budget_at_the_cap_is_over_deny_and_downgrade_policies() {
    // Tenant "trial": $1.00 daily, deny. Costs are booked exactly (micro-USD).
    let mut t = start_example(|s| s).await;
    let q = "Give me three names for a bakery.";
    let d = t
        .client
        .route(text_request("trial", q))
        .await
        .unwrap()
        .into_inner();
    let mut o = outcome(&d.decision_id, MIXTRAL);
    o.cost_usd = Some(0.999_999);
    let ack = t.client.report_outcome(o).await.unwrap().into_inner();
    assert!((ack.cost_usd - 0.999_999).abs() < 1e-12);
    // One micro-dollar under the cap: still served.
    let d = t
        .client
        .route(text_request("trial", q))
        .await
        .unwrap()
        .into_inner();
    // While that decision is in flight its estimate counts: over the cap.
    let err = t.client.route(text_request("trial", q)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("budget.tenant.daily"),
        "{}",
        err.message()
    );
    // Its outcome costs exactly the remaining micro-dollar: spend == cap, which is over.
    let mut o = outcome(&d.decision_id, MIXTRAL);
    o.cost_usd = Some(0.000_001);
    t.client.report_outcome(o).await.unwrap();
    let err = t.client.route(text_request("trial", q)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("$1.000000 committed"),
        "{}",
        err.message()
    );

    // User alice of acme: $5 daily, downgrade to the cheapest eligible model.
    let mut req = text_request("acme", "Solve 12 * 17 and explain.");
    req.user_id = "alice".into();
    let d = t.client.route(req.clone()).await.unwrap().into_inner();
    assert_eq!(primary_id(&d), GPT4);
    let mut o = outcome(&d.decision_id, GPT4);
    o.cost_usd = Some(5.0);
    t.client.report_outcome(o).await.unwrap();
    let d = t.client.route(req.clone()).await.unwrap().into_inner();
    assert_eq!(
        primary_id(&d),
        "qwen2.5-coder-32b-instruct",
        "cheapest eligible: {:?}",
        d.reasons
    );
    assert!(policy_ids(&d).contains(&"budget.user.daily"));
    // Another user of the same tenant is unaffected.
    req.user_id = "bob".into();
    let d = t.client.route(req).await.unwrap().into_inner();
    assert_eq!(primary_id(&d), GPT4);

    let log_dir = t.log_dir.clone();
    t.server.shutdown().await.unwrap();
    let decisions = read_log(&log_dir, "decisions");
    let denied: Vec<_> = decisions.iter().filter(|d| d["denied"] == true).collect();
    assert_eq!(denied.len(), 2, "denials are logged");
    assert_eq!(denied[0]["reasons"][0]["policy_id"], "budget.tenant.daily");
}

#[tokio::test]
async fn a_retried_outcome_report_books_once() {
    let mut t = start_example(|s| s).await;
    // Tenant "trial" has a $1 daily cap (deny).
    let d = route(&mut t.client, text_request("trial", "Name a colour.")).await;
    let mut o = outcome(&d.decision_id, MIXTRAL);
    o.cost_usd = Some(0.6);
    o.attempt = 1;
    let first = report(&mut t.client, o.clone()).await;
    assert!(!first.duplicate);
    assert!((first.cost_usd - 0.6).abs() < 1e-12);
    // The client did not see the ack and sends the same report again.
    let again = report(&mut t.client, o.clone()).await;
    assert!(again.duplicate);
    assert_eq!(again.cost_usd, 0.0);
    assert_eq!(again.circuit_state, first.circuit_state);
    // $0.6 booked, not $1.2: the tenant is still under its cap.
    let d2 = route(&mut t.client, text_request("trial", "Name a colour.")).await;
    // A second attempt of the first decision (a fallback call) is booked: $1.2, over the cap.
    o.attempt = 2;
    let second = report(&mut t.client, o.clone()).await;
    assert!(!second.duplicate);
    let err = t
        .client
        .route(text_request("trial", "Name a colour."))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    // Attempt numbers stop at 64.
    let mut bad = outcome(&d2.decision_id, MIXTRAL);
    bad.attempt = 65;
    let err = t.client.report_outcome(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("attempt"), "{}", err.message());

    t.server.shutdown().await.unwrap();
    let outcomes = read_log(&t.log_dir, "outcomes");
    let attempts: Vec<_> = outcomes.iter().map(|o| o["attempt"].clone()).collect();
    assert_eq!(attempts, vec![serde_json::json!(1), serde_json::json!(2)]);
}

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

#[tokio::test]
async fn bad_input_gets_invalid_argument_naming_the_field_and_the_server_keeps_serving() {
    let mut t = start_example(|s| s).await;
    let cases: Vec<(proto::RouteRequest, &str)> = vec![
        (text_request("acme", "   "), "text"),
        (
            proto::RouteRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            },
            "prompt",
        ),
        (text_request("", "hi"), "tenant_id"),
        (text_request("acme", &"x".repeat(262_145)), "text"),
        (
            proto::RouteRequest {
                data_class: 9,
                ..text_request("acme", "hi")
            },
            "data_class",
        ),
        (
            proto::RouteRequest {
                required_capabilities: vec![99],
                ..text_request("acme", "hi")
            },
            "required_capabilities",
        ),
        (
            proto::RouteRequest {
                required_capabilities: vec![0],
                ..text_request("acme", "hi")
            },
            "required_capabilities",
        ),
        (
            proto::RouteRequest {
                quality_preference: Some(1.5),
                ..text_request("acme", "hi")
            },
            "quality_preference",
        ),
        (
            proto::RouteRequest {
                task_hint: 42,
                ..text_request("acme", "hi")
            },
            "task_hint",
        ),
        (
            proto::RouteRequest {
                tenant_id: "acme".into(),
                prompt: Some(Prompt::Messages(proto::Messages {
                    messages: vec![proto::ChatMessage {
                        role: "wizard".into(),
                        content: "hi".into(),
                    }],
                })),
                ..Default::default()
            },
            "messages.role",
        ),
        (
            proto::RouteRequest {
                tenant_id: "acme".into(),
                prompt: Some(Prompt::Messages(proto::Messages {
                    messages: vec![
                        proto::ChatMessage {
                            role: "system".into(),
                            content: "x".repeat(200_000),
                        },
                        proto::ChatMessage {
                            role: "user".into(),
                            content: "y".repeat(70_000),
                        },
                    ],
                })),
                ..Default::default()
            },
            "messages",
        ),
        (
            proto::RouteRequest {
                tenant_id: "acme".into(),
                prompt: Some(Prompt::Messages(proto::Messages { messages: vec![] })),
                ..Default::default()
            },
            "messages",
        ),
        (
            proto::RouteRequest {
                mode: 7,
                ..text_request("acme", "hi")
            },
            "mode",
        ),
    ];
    for (req, field) in cases {
        let err = t.client.route(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "{field}: {}",
            err.message()
        );
    }

    let err = t
        .client
        .report_outcome(outcome("no-such-decision", MIXTRAL))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().starts_with("decision_id:"));

    let d = t
        .client
        .route(text_request("acme", "Still there?"))
        .await
        .unwrap()
        .into_inner();
    let bad_outcomes: Vec<(proto::Outcome, &str)> = vec![
        (outcome("", MIXTRAL), "decision_id"),
        (outcome(&d.decision_id, "gpt-99"), "model_id"),
        (
            proto::Outcome {
                quality: Some(-0.1),
                ..outcome(&d.decision_id, MIXTRAL)
            },
            "quality",
        ),
        (
            proto::Outcome {
                cost_usd: Some(-1.0),
                ..outcome(&d.decision_id, MIXTRAL)
            },
            "cost_usd",
        ),
        (
            proto::Outcome {
                error: 77,
                ..outcome(&d.decision_id, MIXTRAL)
            },
            "error",
        ),
    ];
    for (o, field) in bad_outcomes {
        let err = t.client.report_outcome(o).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "{field}: {}",
            err.message()
        );
    }
    // Accepted outcome after all the rejected ones; cost computed from tokens and catalog price.
    let ack = t
        .client
        .report_outcome(proto::Outcome {
            tokens_in: 1000,
            tokens_out: 1000,
            ..outcome(&d.decision_id, MIXTRAL)
        })
        .await
        .unwrap()
        .into_inner();
    assert!((ack.cost_usd - 0.0012).abs() < 1e-12, "{}", ack.cost_usd);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn log_holds_every_acknowledged_decision_and_outcome_after_shutdown() {
    let mut t =
        start_example(|s| s.replace("segment_max_bytes = 67108864", "segment_max_bytes = 8192"))
            .await;
    let mut ids = Vec::new();
    for i in 0..200 {
        let d = t
            .client
            .route(text_request(
                "acme",
                &format!("Question number {i}: what is {i} plus {i}?"),
            ))
            .await
            .unwrap()
            .into_inner();
        if i % 2 == 0 {
            let mut o = outcome(&d.decision_id, primary_id(&d));
            o.latency_ms = 900;
            o.tokens_in = 20;
            o.tokens_out = 5;
            t.client.report_outcome(o).await.unwrap();
        }
        ids.push(d.decision_id);
    }
    let stats = t.server.shutdown().await.unwrap();
    assert_eq!((stats.decisions, stats.outcomes), (200, 100));
    assert!(stats.segments > 2, "small segments rotate: {stats:?}");
    let decisions = read_log(&t.log_dir, "decisions");
    let outcomes = read_log(&t.log_dir, "outcomes");
    assert_eq!(decisions.len(), 200);
    assert_eq!(outcomes.len(), 100);
    let logged: Vec<&str> = decisions
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        logged,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "in order"
    );
    let d = &decisions[0];
    for field in [
        "ts",
        "decision_id",
        "request_id",
        "tenant_id",
        "task",
        "data_class",
        "mode",
        "risk_tier",
        "prompt",
        "router",
        "primary",
        "fallbacks",
        "reasons",
        "policy_version",
        "estimated_cost_usd",
    ] {
        assert!(!d[field].is_null(), "decision field {field} missing: {d}");
    }
    assert_eq!(d["prompt"], "Question number 0: what is 0 plus 0?");
    let o = &outcomes[0];
    assert_eq!(o["decision_id"], ids[0].as_str());
    assert_eq!(o["tenant_id"], "acme");
    assert_eq!(o["latency_ms"], 900);
    assert_eq!(o["error"], "none");
}

type HealthClient = tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>;

async fn health_status(health: &HealthClient, service: &str) -> i32 {
    health
        .clone()
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// The service's health status once it is `want`, or after a second of polling.
async fn wait_for_health(
    health: &HealthClient,
    service: &str,
    want: tonic_health::pb::health_check_response::ServingStatus,
) -> i32 {
    let mut status = health_status(health, service).await;
    for _ in 0..50 {
        if status == want as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        status = health_status(health, service).await;
    }
    status
}

#[tokio::test]
async fn a_log_that_cannot_write_refuses_requests_reports_not_serving_and_recovers() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut t =
        start_example(|s| s.replace("segment_max_bytes = 67108864", "segment_max_bytes = 4096"))
            .await;
    let channel = channel_to(&t.server).await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    assert_eq!(
        health_status(&health, "signalbox.v1.Router").await,
        ServingStatus::Serving as i32
    );

    // The log directory vanishes: the next segment cannot be created.
    std::fs::remove_dir_all(&t.log_dir).unwrap();
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..2000 {
        match t
            .client
            .route(text_request(
                "acme",
                &format!("Question {i}: what is {i} squared?"),
            ))
            .await
        {
            Ok(d) => acknowledged.push(d.into_inner().decision_id),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("requests are refused once the log cannot write");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("decision log"),
        "{}",
        refused.message()
    );
    for service in ["signalbox.v1.Router", ""] {
        assert_eq!(
            wait_for_health(&health, service, ServingStatus::NotServing).await,
            ServingStatus::NotServing as i32,
            "service {service:?}"
        );
    }

    // The disk comes back: the writer's retry succeeds and the service serves again.
    std::fs::create_dir_all(&t.log_dir).unwrap();
    let mut served = None;
    for _ in 0..300 {
        match t.client.route(text_request("acme", "And now?")).await {
            Ok(d) => {
                served = Some(d.into_inner().decision_id);
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    acknowledged.push(served.expect("serving again after the log recovered"));
    assert_eq!(
        wait_for_health(&health, "signalbox.v1.Router", ServingStatus::Serving).await,
        ServingStatus::Serving as i32
    );

    // Every acknowledged decision is in the log, once, in order (those written before the
    // directory vanished went with it; everything from the failed rotation on is kept).
    t.server.shutdown().await.unwrap();
    let logged: Vec<String> = read_log(&t.log_dir, "decisions")
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!logged.is_empty());
    let first = acknowledged
        .iter()
        .position(|id| *id == logged[0])
        .expect("the first surviving record was acknowledged");
    assert_eq!(logged, acknowledged[first..].to_vec());
}

#[tokio::test]
async fn health_and_reflection_services_answer() {
    let t = start_example(|s| s).await;
    let channel = channel_to(&t.server).await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    assert_eq!(
        health_status(&health, "signalbox.v1.Router").await,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    // One request, one answer.
    async fn ask(
        reflection: &mut ServerReflectionClient<tonic::transport::Channel>,
        request: MessageRequest,
    ) -> tonic_reflection::pb::v1::ServerReflectionResponse {
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut stream = reflection
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().unwrap()
    }
    let resp = ask(&mut reflection, MessageRequest::ListServices(String::new())).await;
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"signalbox.v1.Router".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    // What grpcurl asks before calling a method: the file defining a symbol.
    let resp = ask(
        &mut reflection,
        MessageRequest::FileContainingSymbol("signalbox.v1.Router".into()),
    )
    .await;
    let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else {
        panic!("unexpected reflection answer {resp:?}");
    };
    use prost::Message as _;
    let file =
        prost_types::FileDescriptorProto::decode(&files.file_descriptor_proto[0][..]).unwrap();
    assert_eq!(file.package(), "signalbox.v1");
    let router = file
        .service
        .iter()
        .find(|s| s.name() == "Router")
        .expect("Router service");
    let methods: Vec<&str> = router.method.iter().map(|m| m.name()).collect();
    assert!(
        methods.contains(&"Route") && methods.contains(&"ReportOutcome"),
        "{methods:?}"
    );
    t.server.shutdown().await.unwrap();
}
