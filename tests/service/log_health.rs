//! The decision log holds every acknowledged record; an unwritable log; health and reflection.

use crate::common::*;
use tonic::Code;

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
    // `ack = "queued"`: a request is answered once its record is queued, so the requests keep
    // being answered until the writer notices (the `written` case is the next test).
    let mut t = start_example(|s| {
        s.replace("segment_max_bytes = 67108864", "segment_max_bytes = 4096")
            .replace("ack = \"written\"", "ack = \"queued\"")
    })
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

/// `ack = "written"`: a request whose record the writer cannot write waits (its decision is
/// made and held; only its record is missing) and is answered once the disk is back; new
/// requests meanwhile get UNAVAILABLE. Nothing acknowledged is missing from the log.
#[tokio::test]
async fn with_ack_written_a_request_waits_for_its_record_while_the_disk_is_gone() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let t =
        start_example(|s| s.replace("segment_max_bytes = 67108864", "segment_max_bytes = 4096"))
            .await;
    let channel = channel_to(&t.server).await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel);

    std::fs::remove_dir_all(&t.log_dir).unwrap();
    // Callers one after another until one is left waiting (the segment could not rotate).
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut refused = None;
    for i in 0..2000 {
        let mut client = t.client.clone();
        let done = done_tx.clone();
        let call = tokio::spawn(async move {
            let r = client
                .route(text_request(
                    "acme",
                    &format!("Question {i}: what is {i} cubed?"),
                ))
                .await;
            let _ = done.send(r.map(|d| d.into_inner().decision_id));
        });
        match tokio::time::timeout(std::time::Duration::from_millis(500), done_rx.recv()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => {
                refused = Some(e);
                break;
            }
            Ok(None) => unreachable!("a sender is held here"),
            // Waiting for its record: the writer is retrying.
            Err(_) => {
                drop(call);
                break;
            }
        }
    }
    assert!(
        refused.is_none(),
        "the first request past the check waits: {refused:?}"
    );
    assert_eq!(
        wait_for_health(&health, "signalbox.v1.Router", ServingStatus::NotServing).await,
        ServingStatus::NotServing as i32
    );
    let mut client = t.client.clone();
    let err = client
        .route(text_request("acme", "Meanwhile?"))
        .await
        .expect_err("refused while the log cannot write");
    assert_eq!(err.code(), Code::Unavailable);

    // The disk comes back: the waiting request is answered, and its record is in the log.
    std::fs::create_dir_all(&t.log_dir).unwrap();
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), done_rx.recv())
        .await
        .expect("answered once the disk is back")
        .expect("one answer")
        .expect("acknowledged");
    t.server.shutdown().await.unwrap();
    let logged: Vec<String> = read_log(&t.log_dir, "decisions")
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_string())
        .collect();
    assert!(logged.contains(&waited), "{waited} not in {logged:?}");
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
