//! End to end: train a small bundle with the `signalbox-train` binary from the quickstart logs
//! in `datasets/`, serve it, route and report outcomes over gRPC, retrain from the server's
//! own decision + outcome log, hot-reload the new bundle through Admin/Reload, and see the
//! model version change in the decisions.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use signalbox::proto::admin_client::AdminClient;
use signalbox::proto::route_request::Prompt;
use signalbox::proto::router_client::RouterClient;
use signalbox::proto::{self, RouterKind};

const CHEAP: &str = "gpt-4o-mini";
const WEAK: &str = "mistralai/Mixtral-8x7B-Instruct-v0.1";
const STRONG: &str = "gpt-4-1106-preview";
const HARD_WORDS: [&str; 4] = ["proof", "integral", "matrix", "contract"];

/// `signalbox-train run` on `logs` into `bundle`, with a small featurizer so it runs in seconds
/// in a debug build. Panics with the CLI's output when it fails.
fn train(logs: &Path, table: &Path, bundle: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_signalbox-train"))
        .arg("run")
        .arg("--service-logs")
        .arg(logs)
        .arg("--table")
        .arg(table)
        .arg("--bundle")
        .arg(bundle)
        .args([
            "--hash-bits",
            "10",
            "--vocab-size",
            "400",
            "--max-tokens",
            "128",
        ])
        .args(["--strong", STRONG, "--weak", WEAK])
        .arg("--rules-config")
        .arg(common::repo().join("config/signalbox.toml"))
        .output()
        .expect("signalbox-train runs");
    assert!(
        out.status.success(),
        "signalbox-train run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example policy with its log in `log_dir` and `[learned]` serving `bundle`; reloads come
/// from Admin/Reload only.
fn write_policy(path: &Path, log_dir: &Path, bundle: &Path) {
    let example = std::fs::read_to_string(common::repo().join("config/signalbox.toml")).unwrap();
    let at = example
        .find("\n[learned]")
        .expect("[learned] is the last section");
    let rules = example[..at].replace(
        "dir = \"../signalbox-data/log\"",
        &format!("dir = {:?}", log_dir.display().to_string()),
    );
    assert_ne!(rules, example[..at], "the example's log dir moved");
    let text = format!(
        "{rules}\n[learned]\nmode = \"learned_primary\"\nbundle = {:?}\nbackend = \"tract\"\nsessions = 2\nwatch_secs = 0\n",
        bundle.display().to_string()
    );
    std::fs::write(path, text).unwrap();
}

/// Prompt `i` of a deterministic mix: some use words the weak models fail on.
fn prompt(i: usize) -> String {
    const TOPICS: [&str; 6] = ["history", "recipe", "python", "email", "table", "budget"];
    let topic = TOPICS[i % TOPICS.len()];
    if i.is_multiple_of(3) {
        let hard = HARD_WORDS[(i / 3) % HARD_WORDS.len()];
        format!("explain the {hard} behind this {topic} {hard} step by step, request {i}")
    } else {
        format!("summarize the {topic} notes in two lines, request {i}")
    }
}

/// What the caller observed: the strong model always answers well, the others fail on the
/// hard words.
fn quality(model: &str, prompt: &str) -> f64 {
    let hard = HARD_WORDS.iter().any(|w| prompt.contains(w));
    match (model, hard) {
        (STRONG, _) => 1.0,
        (_, true) => 0.0,
        _ => 1.0,
    }
}

/// Lines of all `<kind>-*.jsonl` files in `dir` that end with a newline (complete records).
fn complete_lines(dir: &Path, kind: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{kind}-"))
                })
                .filter_map(|e| std::fs::read(e.path()).ok())
                .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
                .sum()
        })
        .unwrap_or(0)
}

async fn wait_for_log(dir: &Path, decisions: usize, outcomes: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while complete_lines(dir, "decisions") < decisions || complete_lines(dir, "outcomes") < outcomes
    {
        assert!(
            Instant::now() < deadline,
            "log has {} decisions and {} outcomes, waited for {decisions} and {outcomes}",
            complete_lines(dir, "decisions"),
            complete_lines(dir, "outcomes")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn request(text: String, preference: f64) -> proto::RouteRequest {
    proto::RouteRequest {
        tenant_id: "acme".into(),
        prompt: Some(Prompt::Text(text)),
        mode: proto::Mode::Batch as i32,
        quality_preference: Some(preference),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_serve_report_retrain_from_own_log_and_hot_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle_v1 = tmp.path().join("router-v1");
    let bundle_v2 = tmp.path().join("router-v2");
    let log_dir = tmp.path().join("log");
    let config = tmp.path().join("policy.toml");

    // 1. A first bundle from the quickstart sample (the service's own log schema).
    train(
        &common::datasets().join("quickstart-logs"),
        &tmp.path().join("v1.parquet"),
        &bundle_v1,
    );
    write_policy(&config, &log_dir, &bundle_v1);

    // 2. Serve it.
    let policy = signalbox::config::Policy::load(&config).unwrap();
    let server =
        signalbox::server::start_from_file(policy, config.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let url = format!("http://{}", server.local_addr());
    let mut client = RouterClient::connect(url.clone()).await.unwrap();
    let mut admin = AdminClient::connect(url).await.unwrap();

    // 3. Route, execute (simulated) on every model of the plan, report each outcome.
    let n = 150;
    let mut v1_version = String::new();
    let mut outcomes = 0;
    for i in 0..n {
        let text = prompt(i);
        let d = client
            .route(request(text.clone(), (i % 5) as f64 / 4.0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.router, RouterKind::Learned as i32, "{:?}", d.reasons);
        assert!(
            d.model_version.starts_with("router-v1@"),
            "{}",
            d.model_version
        );
        assert_eq!(d.predicted_quality.len(), 3, "{:?}", d.predicted_quality);
        assert!(d.shadow.is_some());
        v1_version.clone_from(&d.model_version);
        for model in [CHEAP, WEAK, STRONG] {
            let q = quality(model, &text);
            client
                .report_outcome(proto::Outcome {
                    decision_id: d.decision_id.clone(),
                    model_id: model.into(),
                    success: q > 0.5,
                    quality: Some(q),
                    latency_ms: 300,
                    tokens_in: 20,
                    tokens_out: 80,
                    ..Default::default()
                })
                .await
                .unwrap();
            outcomes += 1;
        }
    }
    wait_for_log(&log_dir, n, outcomes).await;

    // 4. Retrain from the running server's own log.
    train(&log_dir, &tmp.path().join("v2.parquet"), &bundle_v2);
    let manifest = signalbox_features::BundleManifest::load(&bundle_v2).unwrap();
    assert_eq!(
        manifest.training.train_prompts + manifest.training.test_prompts,
        n
    );
    assert_eq!(manifest.training.data_sources, ["service"]);

    // 5. Hot reload onto the new bundle; decisions carry the new version.
    write_policy(&config, &log_dir, &bundle_v2);
    let reply = admin
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.model_version.starts_with("router-v2@"),
        "{}",
        reply.model_version
    );
    assert_ne!(reply.model_version, v1_version);
    let hard = client
        .route(request(
            "explain the proof behind this history proof step by step".into(),
            1.0,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hard.model_version, reply.model_version);
    assert_eq!(hard.router, RouterKind::Learned as i32);
    // Learned from the server's own outcomes: hard prompts need the strong model, easy ones
    // are left to a cheaper model at the lowest quality preference.
    assert!(
        hard.predicted_quality[STRONG] > hard.predicted_quality[CHEAP],
        "{:?}",
        hard.predicted_quality
    );
    let easy = client
        .route(request(
            "summarize the recipe notes in two lines".into(),
            0.0,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(common_primary(&easy), STRONG, "{:?}", easy.reasons);

    server.shutdown().await.unwrap();
    let last = common::last_decision(&log_dir);
    assert_eq!(last["model_version"], reply.model_version.as_str());
}

fn common_primary(d: &proto::RouteDecision) -> &str {
    &d.primary.as_ref().expect("primary").model_id
}
