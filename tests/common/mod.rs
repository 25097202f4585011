//! Shared helpers: the example policy with its log in a temp dir, a server on port 0, a client.
#![allow(dead_code)]

pub mod onnx;
pub mod redis;

use std::path::{Path, PathBuf};

use signalbox::config::Policy;
use signalbox::proto::router_client::RouterClient;
use signalbox::proto::{self, route_request::Prompt};
use signalbox::server::RunningServer;
use tonic::transport::Channel;

pub const EXAMPLE_CONFIG: &str = include_str!("../../config/signalbox.toml");

/// Model ids from the example catalog used across the service tests.
pub const MIXTRAL: &str = "mistralai/Mixtral-8x7B-Instruct-v0.1";
pub const GPT4: &str = "gpt-4-1106-preview";

/// The example policy text, rules only (its `[learned]` section, which must come last, is cut),
/// with its log directory moved to `log_dir`.
pub fn example_policy_text(log_dir: &Path) -> String {
    let original = "dir = \"../signalbox-data/log\"";
    assert!(
        EXAMPLE_CONFIG.contains(original),
        "example config log dir moved"
    );
    let rules_only = EXAMPLE_CONFIG
        .find("\n[learned]")
        .map_or(EXAMPLE_CONFIG, |at| &EXAMPLE_CONFIG[..at]);
    rules_only.replace(
        original,
        &format!("dir = {:?}", log_dir.display().to_string()),
    )
}

pub fn policy_from(text: &str, base: &Path) -> Policy {
    Policy::from_toml(text, Path::new("test.toml"), base).expect("policy is valid")
}

pub struct TestServer {
    pub server: RunningServer,
    pub client: RouterClient<Channel>,
    pub log_dir: PathBuf,
    pub _tmp: Option<tempfile::TempDir>,
}

pub async fn start_with(policy: Policy) -> (RunningServer, RouterClient<Channel>) {
    let server = signalbox::server::start(policy, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("server starts");
    let client = RouterClient::connect(format!("http://{}", server.local_addr()))
        .await
        .expect("client connects");
    (server, client)
}

/// The example policy, optionally edited, with its log in a fresh temp dir that outlives the
/// servers started on it (for restarts on the same log).
pub struct ExampleLog {
    pub tmp: tempfile::TempDir,
    pub log_dir: PathBuf,
    pub text: String,
}

impl ExampleLog {
    pub fn new(edit: impl FnOnce(String) -> String) -> ExampleLog {
        let tmp = tempfile::tempdir().unwrap();
        let log_dir = tmp.path().join("log");
        let text = edit(example_policy_text(&log_dir));
        ExampleLog { tmp, log_dir, text }
    }

    /// A server on port 0 with this policy and log, and a client.
    pub async fn start(&self) -> (RunningServer, RouterClient<Channel>) {
        start_with(policy_from(&self.text, self.tmp.path())).await
    }
}

/// The example policy, optionally edited, served on port 0 with its log in a fresh temp dir.
pub async fn start_example(edit: impl FnOnce(String) -> String) -> TestServer {
    let example = ExampleLog::new(edit);
    let (server, client) = example.start().await;
    TestServer {
        server,
        client,
        log_dir: example.log_dir,
        _tmp: Some(example.tmp),
    }
}

/// Route `req`; panics on an error status.
pub async fn route(
    client: &mut RouterClient<Channel>,
    req: proto::RouteRequest,
) -> proto::RouteDecision {
    client.route(req).await.unwrap().into_inner()
}

/// A plain channel to the server, for the health and reflection clients.
pub async fn channel_to(server: &RunningServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn report(client: &mut RouterClient<Channel>, o: proto::Outcome) -> proto::OutcomeAck {
    client.report_outcome(o).await.unwrap().into_inner()
}

pub fn text_request(tenant: &str, prompt: &str) -> proto::RouteRequest {
    proto::RouteRequest {
        tenant_id: tenant.into(),
        prompt: Some(Prompt::Text(prompt.into())),
        ..Default::default()
    }
}

pub fn outcome(decision_id: &str, model_id: &str) -> proto::Outcome {
    proto::Outcome {
        decision_id: decision_id.into(),
        model_id: model_id.into(),
        success: true,
        ..Default::default()
    }
}

/// Every JSON line of one log kind ("decisions" or "outcomes"), oldest segment first (those of
/// every replica id in `dir`, as the service lists them).
pub fn read_log(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    signalbox::decision_log::segments(dir, kind)
        .unwrap()
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn primary_id(d: &proto::RouteDecision) -> &str {
    &d.primary.as_ref().expect("primary").model_id
}

pub fn policy_ids(d: &proto::RouteDecision) -> Vec<&str> {
    d.reasons.iter().map(|r| r.policy_id.as_str()).collect()
}

/// SIGTERM to a server process; its exit status (panics if it has not stopped within 30 s).
pub fn sigterm_and_wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
