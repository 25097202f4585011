//! Circuit breakers: an open circuit moves the primary to a fallback; half-open probes close it.

use crate::common::*;
use signalbox::proto;

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
