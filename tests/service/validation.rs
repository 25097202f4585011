//! Bad input gets INVALID_ARGUMENT (or NOT_FOUND) naming the field, and the server keeps serving.

use crate::common::*;
use signalbox::proto::{self, route_request::Prompt};
use tonic::Code;

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
