//! Routing decisions: the plain question, caller ids, task hints and chat messages, PII lanes,
//! capabilities, risk tiers, batch cascades, quality preference, and the latency and context filters.

use crate::common::*;
use signalbox::proto::{self, route_request::Prompt};
use tonic::Code;

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
