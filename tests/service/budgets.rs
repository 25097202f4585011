//! Budgets: caps at the boundary, deny and downgrade policies, retried outcome reports booked once.

use crate::common::*;
use tonic::Code;

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
