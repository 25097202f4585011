//! Connection hygiene: silent and preface-only connections are closed after their timeouts,
//! connections over `server.max_connections` are closed on accept, and gRPC callers are not
//! affected by any of it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Reads until the server closes the connection; how long that took (`None`: still open after
/// `within`).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

fn with_server_keys(keys: &'static str) -> impl FnOnce(String) -> String {
    move |s| s.replacen("[server]\n", &format!("[server]\n{keys}\n"), 1)
}

#[tokio::test]
async fn silent_and_preface_only_connections_are_closed_after_their_timeouts() {
    let mut t = start_example(with_server_keys(
        "preface_timeout_secs = 1\nidle_timeout_secs = 2",
    ))
    .await;
    let addr = t.server.local_addr();
    // The test's client connected eagerly; its first request makes it a served connection
    // (a connection that never sends one is closed like the preface-only one below).
    route(&mut t.client, text_request("acme", "Hello?")).await;

    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut preface_only = TcpStream::connect(addr).await.unwrap();
    preface_only.write_all(PREFACE).await.unwrap();
    preface_only.write_all(SETTINGS).await.unwrap();

    let silent_closed = closed_within(&mut silent, Duration::from_secs(10))
        .await
        .expect("a silent connection is closed");
    assert!(
        silent_closed >= Duration::from_millis(900) && silent_closed < Duration::from_secs(4),
        "{silent_closed:?}"
    );
    let preface_closed = closed_within(&mut preface_only, Duration::from_secs(10))
        .await
        .expect("a connection that only sent the preface is closed");
    assert!(
        preface_closed < Duration::from_secs(5),
        "{preface_closed:?}"
    );

    // A gRPC caller with requests more often than the idle timeout keeps its connection.
    for _ in 0..3 {
        route(&mut t.client, text_request("acme", "Still there?")).await;
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    route(&mut t.client, text_request("acme", "Yes.")).await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_the_others_kept() {
    // The test client holds one connection of the three.
    let mut t = start_example(with_server_keys("max_connections = 3")).await;
    let addr = t.server.local_addr();
    route(&mut t.client, text_request("acme", "First.")).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(PREFACE).await.unwrap();
        s.write_all(SETTINGS).await.unwrap();
        held.push(s);
    }
    // Let the server accept them before the next one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(addr).await.unwrap();
    let _ = over.write_all(PREFACE).await;
    let closed = closed_within(&mut over, Duration::from_secs(3)).await;
    assert!(closed.is_some(), "the fourth connection is closed");
    for s in &mut held {
        assert_eq!(
            closed_within(s, Duration::from_millis(300)).await,
            None,
            "held connections stay open"
        );
    }
    route(&mut t.client, text_request("acme", "Unaffected.")).await;
    // A slot frees when one closes.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = TcpStream::connect(addr).await.unwrap();
    again.write_all(PREFACE).await.unwrap();
    assert_eq!(
        closed_within(&mut again, Duration::from_millis(500)).await,
        None,
        "accepted once a slot is free"
    );
}
