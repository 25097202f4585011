//! Pseudonymous user ids: with `[privacy] user_id = "hmac"` no raw user id reaches the log, and
//! per-user budgets named in clear in the policy apply to the pseudonyms.

use crate::common::*;
use signalbox::privacy::UserIds;
use tonic::Code;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef-test-key";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob.smith@example.org";

/// The example policy with `[privacy] user_id = "hmac"` and the key in `hmac.key`.
fn hmac_policy(text: &str) -> String {
    let clear = "[privacy]\nuser_id = \"clear\"";
    assert!(text.contains(clear), "example [privacy] section moved");
    text.replace(
        clear,
        "[privacy]\nhmac_key_file = \"hmac.key\"\nuser_id = \"hmac\"",
    )
}

fn with_user(tenant: &str, user: &str, prompt: &str) -> signalbox::proto::RouteRequest {
    signalbox::proto::RouteRequest {
        user_id: user.into(),
        ..text_request(tenant, prompt)
    }
}

#[tokio::test]
async fn hmac_user_ids_never_reach_the_log_and_clear_named_user_budgets_still_apply() {
    let example = ExampleLog::new(|s| {
        format!(
            "{}\n[[budgets.users]]\ntenant = \"acme\"\nuser = \"{ALICE}\"\ndaily_usd = 0.5\non_exceeded = \"deny\"\n",
            hmac_policy(&s)
        )
    });
    // A trailing newline (as `echo` writes) is not part of the key.
    std::fs::write(example.tmp.path().join("hmac.key"), [KEY, b"\n"].concat()).unwrap();
    let (server, mut client) = example.start().await;
    let q = "Give me three names for a bakery.";

    let d = route(&mut client, with_user("acme", ALICE, q)).await;
    let mut o = outcome(&d.decision_id, primary_id(&d));
    o.cost_usd = Some(0.6);
    report(&mut client, o).await;
    // Alice's clear-named daily cap ($0.50, deny) is over: refused.
    let err = client
        .route(with_user("acme", ALICE, q))
        .await
        .expect_err("alice is over her cap");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("budget.user.daily"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains(ALICE), "{}", err.message());
    // Bob has no cap of his own: served.
    let d = route(&mut client, with_user("acme", BOB, q)).await;
    report(&mut client, outcome(&d.decision_id, primary_id(&d))).await;
    server.shutdown().await.unwrap();

    let ids = UserIds::hmac(KEY).unwrap();
    let (alice, bob) = (ids.apply(ALICE.into()), ids.apply(BOB.into()));
    let decisions = read_log(&example.log_dir, "decisions");
    let users: Vec<&str> = decisions
        .iter()
        .map(|d| d["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, [alice.as_str(), alice.as_str(), bob.as_str()]);
    let outcomes = read_log(&example.log_dir, "outcomes");
    let users: Vec<&str> = outcomes
        .iter()
        .map(|o| o["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, [alice.as_str(), bob.as_str()]);
    // No raw id anywhere in the log directory (segments, spend summaries, anything).
    let mut files = 0;
    for entry in std::fs::read_dir(&example.log_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for raw in [ALICE, BOB, "alice", "bob.smith"] {
            assert!(!text.contains(raw), "{raw} found in the log");
        }
        files += 1;
    }
    assert!(files >= 2, "decision and outcome segments");
}

#[test]
fn a_missing_or_short_key_file_is_a_config_error_naming_the_key() {
    let example = ExampleLog::new(|s| hmac_policy(&s));
    let load = || {
        signalbox::config::Policy::from_toml(
            &example.text,
            std::path::Path::new("test.toml"),
            example.tmp.path(),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let missing = load();
    assert!(
        missing.contains("privacy.hmac_key_file") && missing.contains("cannot read"),
        "{missing}"
    );
    std::fs::write(example.tmp.path().join("hmac.key"), b"short\n").unwrap();
    let short = load();
    assert!(
        short.contains("privacy.hmac_key_file") && short.contains("holds 5 bytes"),
        "{short}"
    );
    let clear_with_file = signalbox::config::Policy::from_toml(
        &example
            .text
            .replace("user_id = \"hmac\"", "user_id = \"clear\""),
        std::path::Path::new("test.toml"),
        example.tmp.path(),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        clear_with_file.contains("only used with"),
        "{clear_with_file}"
    );
}
