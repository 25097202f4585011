//! Transport limits refuse one call at a time: an oversized message or oversized metadata gets
//! `RESOURCE_EXHAUSTED` naming the limit, and the calls in flight beside it on the same
//! connection are unaffected.

use crate::common::*;
use tonic::Code;
use tonic::metadata::MetadataValue;

#[tokio::test]
async fn an_oversized_message_is_resource_exhausted_naming_the_limit() {
    let mut t = start_example(|s| s).await;
    let big = "word ".repeat(1024 * 1024); // 5 MiB, over the default 4 MiB message limit
    let err = t
        .client
        .route(text_request("acme", &big))
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("server.max_message_bytes") && err.message().contains("4194304"),
        "{}",
        err.message()
    );
    // The same connection keeps serving.
    route(&mut t.client, text_request("acme", "What is 2 + 2?")).await;
}

#[tokio::test]
async fn oversized_metadata_fails_only_its_own_call() {
    let t = start_example(|s| s).await;
    for size in [20 * 1024, 65 * 1024, 200 * 1024] {
        let mut calls = Vec::new();
        for i in 0..40 {
            let mut client = t.client.clone();
            calls.push(tokio::spawn(async move {
                client
                    .route(text_request(
                        "acme",
                        &format!("Question {i}: what is 2 + {i}?"),
                    ))
                    .await
                    .map(|_| ())
            }));
        }
        let mut client = t.client.clone();
        let mut req = tonic::Request::new(text_request("acme", "What is the capital of Peru?"));
        let junk = MetadataValue::try_from("x".repeat(size)).unwrap();
        req.metadata_mut().insert("x-junk", junk);
        let err = client.route(req).await.expect_err("oversized metadata");
        assert_eq!(err.code(), Code::ResourceExhausted, "{size}: {err:?}");
        assert!(
            err.message().contains("server.max_metadata_bytes"),
            "{size}: {}",
            err.message()
        );
        for call in calls {
            call.await.unwrap().expect("neighbours unaffected");
        }
    }
    let mut client = t.client.clone();
    route(&mut client, text_request("acme", "Still serving?")).await;
}
