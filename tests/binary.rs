//! The `signalbox` binary as an operator runs it: config errors exit non-zero before binding,
//! `serve` announces its address, and SIGTERM loses no acknowledged record.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_signalbox");

#[test]
fn check_config_accepts_the_example() {
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/signalbox.toml"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn invalid_config_exits_non_zero_naming_the_key_and_binds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            EXAMPLE_CONFIG.replace("[server]\n", "[server]\nmax_prompt_kb = 3\n"),
            "max_prompt_kb",
        ),
        (
            EXAMPLE_CONFIG.replace("route = \"gpt-4o-mini\"", "route = \"gpt-5-mega\""),
            "rules[4].route",
        ),
        (
            EXAMPLE_CONFIG.replace(
                "fallbacks = [\"gpt-4o-mini\", \"llama-3.1-70b-instruct\"]",
                "fallbacks = []",
            ),
            "rules[6].fallbacks",
        ),
        (
            EXAMPLE_CONFIG.replace("input_per_1k_usd = 0.003", "input_per_1k_usd = -1"),
            "models[1].input_per_1k_usd",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}: {out:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains(key), "{key} not named in: {all}");
        assert!(!all.contains("listening on"), "{all}");
    }
    let out = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/signalbox.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/nonexistent/signalbox.toml"));
}

#[test]
fn sigterm_drains_and_syncs_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let config = tmp.path().join("policy.toml");
    std::fs::write(&config, example_policy_text(&log_dir)).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(pos) = line.find("listening on ") {
            break line[pos + "listening on ".len()..].trim().to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent = rt.block_on(async {
        let mut client =
            signalbox::proto::router_client::RouterClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
        for i in 0..300 {
            let d = client
                .route(text_request(
                    "acme",
                    &format!("Request {i}: name a prime number."),
                ))
                .await
                .unwrap()
                .into_inner();
            client
                .report_outcome(outcome(&d.decision_id, primary_id(&d)))
                .await
                .unwrap();
        }
        300
    });

    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let stdout = drain.join().unwrap().join("\n");
    assert!(
        stdout.contains("decision log flushed and synced"),
        "{stdout}"
    );
    assert_eq!(read_log(&log_dir, "decisions").len(), sent);
    assert_eq!(read_log(&log_dir, "outcomes").len(), sent);
}
