//! Telemetry with real parts: `/metrics` read with a Prometheus text parser after a scripted
//! sequence and checked by `promtool`, a real Prometheus server scraping it, the Grafana
//! dashboard's queries against what is exported, traces received by an OTLP/gRPC collector
//! (continuing a caller's `traceparent`), a down or slow collector that slows nothing, and JSON
//! log lines carrying the decision id.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use signalbox::proto::admin_client::AdminClient;
use signalbox::proto::{self};
use signalbox::server::RunningServer;
use signalbox::telemetry::sink::OtlpSink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_signalbox");

/// `[telemetry]` appended to the example policy (rules only).
fn with_telemetry(text: String, telemetry: &str) -> String {
    format!("{text}\n[telemetry]\n{telemetry}\n")
}

/// The example policy with `[telemetry]`, written to a file in a temp dir (for reloads), served.
struct Served {
    tmp: tempfile::TempDir,
    server: RunningServer,
    client: proto::router_client::RouterClient<tonic::transport::Channel>,
}

async fn serve_file(telemetry: &str) -> Served {
    let tmp = tempfile::tempdir().unwrap();
    let text = with_telemetry(example_policy_text(&tmp.path().join("log")), telemetry);
    let path = tmp.path().join("signalbox.toml");
    std::fs::write(&path, &text).unwrap();
    let policy = signalbox::config::Policy::load(&path).unwrap();
    let server = signalbox::server::start_from_file(policy, path, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client =
        proto::router_client::RouterClient::connect(format!("http://{}", server.local_addr()))
            .await
            .unwrap();
    Served {
        tmp,
        server,
        client,
    }
}

/// GET over HTTP/1.1: (status, body).
async fn http_get(addr: SocketAddr, path_and_query: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

async fn scrape_text(server: &RunningServer) -> String {
    let (status, body) = http_get(server.metrics_addr().unwrap(), "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The sum of the samples of `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(x)
            | prometheus_parse::Value::Gauge(x)
            | prometheus_parse::Value::Untyped(x) => x,
            ref other => panic!("{name}: not a single value: {other:?}"),
        })
        .sum()
}

/// `promtool check metrics` on an exposition: exit status and what it said.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn timeout_outcome(decision_id: &str, model: &str) -> proto::Outcome {
    let mut o = outcome(decision_id, model);
    o.success = false;
    o.error = proto::ErrorKind::Timeout as i32;
    o
}

#[tokio::test]
async fn metrics_after_a_scripted_sequence_have_exactly_the_expected_values() {
    let mut s = serve_file("metrics_listen = \"127.0.0.1:0\"").await;
    let c = &mut s.client;

    // Three decisions for acme; the first outcome is reported twice (attempt 1: a duplicate).
    let prompts = [
        "Give me three names for a bakery.",
        "Solve 12 * 17 and explain.",
        "Summarise the plot of Hamlet in two sentences.",
    ];
    let mut acme = Vec::new();
    for p in prompts {
        acme.push(route(c, text_request("acme", p)).await);
    }
    let mut first = outcome(&acme[0].decision_id, primary_id(&acme[0]));
    first.cost_usd = Some(0.25);
    first.attempt = 1;
    report(c, first.clone()).await;
    assert!(report(c, first).await.duplicate);
    // Alice of acme reaches her $5 cap: her next decision is a downgrade.
    let mut alice = text_request("acme", "Solve 12 * 17 and explain.");
    alice.user_id = "alice".into();
    let a1 = route(c, alice.clone()).await;
    let mut o = outcome(&a1.decision_id, primary_id(&a1));
    o.cost_usd = Some(5.0);
    report(c, o).await;
    let a2 = route(c, alice).await;
    assert!(
        policy_ids(&a2).iter().any(|p| p.starts_with("budget")),
        "{a2:?}"
    );
    // Trial ($1 daily, deny): spends its dollar, then is denied.
    let t1 = route(c, text_request("trial", prompts[0])).await;
    let mut o = outcome(&t1.decision_id, primary_id(&t1));
    o.cost_usd = Some(1.0);
    report(c, o).await;
    let denied = c
        .route(text_request("trial", prompts[0]))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::ResourceExhausted);
    // Five timeouts of Mixtral open its breaker (failure_threshold = 5).
    for _ in 0..5 {
        report(c, timeout_outcome(&acme[1].decision_id, MIXTRAL)).await;
    }
    // A bad request and an unknown decision.
    let bad = c.route(text_request("acme", "")).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let missing = c
        .report_outcome(outcome("0190f0f0-0000-7000-8000-000000000000", MIXTRAL))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // A reload.
    let mut admin = AdminClient::new(channel_to(&s.server).await);
    let reloaded = admin
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();

    let text = scrape_text(&s.server).await;
    let m = parse(&text);
    let v = |name: &str, labels: &[(&str, &str)]| value(&m, name, labels);
    let router = [("service", "signalbox.v1.Router")];
    let calls = "signalbox_grpc_requests_total";
    assert_eq!(
        v(calls, &[router[0], ("method", "Route"), ("code", "OK")]),
        6.0
    );
    assert_eq!(
        v(
            calls,
            &[("method", "Route"), ("code", "RESOURCE_EXHAUSTED")]
        ),
        1.0
    );
    assert_eq!(
        v(calls, &[("method", "Route"), ("code", "INVALID_ARGUMENT")]),
        1.0
    );
    assert_eq!(
        v(calls, &[("method", "ReportOutcome"), ("code", "OK")]),
        4.0 + 5.0
    );
    assert_eq!(
        v(calls, &[("method", "ReportOutcome"), ("code", "NOT_FOUND")]),
        1.0
    );
    assert_eq!(v(calls, &[("method", "Reload"), ("code", "OK")]), 1.0);

    // Decisions by model: what the answers said.
    let mut by_model: BTreeMap<&str, f64> = BTreeMap::new();
    for d in acme.iter().chain([&a1, &a2, &t1]) {
        *by_model.entry(primary_id(d)).or_default() += 1.0;
    }
    for (model, n) in &by_model {
        assert_eq!(
            v("signalbox_decisions_total", &[("model", model)]),
            *n,
            "{model}"
        );
    }
    assert_eq!(v("signalbox_decisions_total", &[]), 6.0);
    assert_eq!(v("signalbox_decisions_total", &[("router", "rules")]), 6.0);
    assert_eq!(
        v("signalbox_decisions_total", &[("data_class", "internal")])
            + v("signalbox_decisions_total", &[("data_class", "public")])
            + v("signalbox_decisions_total", &[("data_class", "pii")])
            + v("signalbox_decisions_total", &[("data_class", "regulated")]),
        6.0
    );
    assert_eq!(v("signalbox_shadow_decisions_total", &[]), 0.0);
    assert_eq!(
        v(
            "signalbox_route_refusals_total",
            &[("reason", "budget_denied")]
        ),
        1.0
    );
    assert_eq!(
        v("signalbox_budget_denials_total", &[("tenant", "trial")]),
        1.0
    );
    assert_eq!(
        v("signalbox_budget_downgrades_total", &[("tenant", "acme")]),
        1.0
    );
    // Latency: six decisions; the phases of seven Routes (the denial included).
    assert_eq!(v("signalbox_decision_duration_seconds_count", &[]), 6.0);
    let phase = "signalbox_decision_phase_duration_seconds_count";
    for (p, n) in [
        ("inspect", 7.0),
        ("policy", 7.0),
        ("log", 7.0),
        ("featurize", 0.0),
        ("inference", 0.0),
    ] {
        assert_eq!(v(phase, &[("phase", p)]), n, "phase {p}");
    }

    // Outcomes: four booked (the duplicate not), five timeouts; cost by model.
    assert_eq!(v("signalbox_outcome_duplicates_total", &[]), 1.0);
    assert_eq!(
        v(
            "signalbox_outcomes_total",
            &[("success", "true"), ("error", "none")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "signalbox_outcomes_total",
            &[
                ("model", MIXTRAL),
                ("success", "false"),
                ("error", "timeout")
            ]
        ),
        5.0
    );
    let mut booked: BTreeMap<&str, f64> = BTreeMap::new();
    for (d, usd) in [(&acme[0], 0.25), (&a1, 5.0), (&t1, 1.0)] {
        *booked.entry(primary_id(d)).or_default() += usd;
    }
    for (model, usd) in &booked {
        let got = v("signalbox_booked_cost_usd_total", &[("model", model)]);
        assert!((got - usd).abs() < 1e-9, "{model}: {got} != {usd}");
    }

    // Budgets of the tenants with caps of their own.
    let spend = |t, p| {
        v(
            "signalbox_budget_spend_usd",
            &[("tenant", t), ("period", p)],
        )
    };
    let cap = |t, p| v("signalbox_budget_cap_usd", &[("tenant", t), ("period", p)]);
    assert!((spend("trial", "day") - 1.0).abs() < 1e-9);
    assert_eq!(cap("trial", "day"), 1.0);
    assert!((spend("acme", "day") - 5.25).abs() < 1e-9);
    assert!((spend("acme", "month") - 5.25).abs() < 1e-9);
    assert_eq!(cap("acme", "day"), 50.0);
    assert_eq!(cap("acme", "month"), 1000.0);

    // Mixtral's breaker is open, after one transition.
    let breaker = [("scope", "model"), ("name", MIXTRAL)];
    assert_eq!(v("signalbox_circuit_state", &breaker), 2.0);
    assert_eq!(
        v(
            "signalbox_circuit_transitions_total",
            &[breaker[0], breaker[1], ("to", "open")]
        ),
        1.0
    );
    assert_eq!(v("signalbox_circuit_probes_total", &breaker), 0.0);

    // The log wrote every record (refusal included); nothing queued; healthy.
    assert_eq!(
        v("signalbox_log_records_total", &[("kind", "decision")]),
        7.0
    );
    assert_eq!(
        v("signalbox_log_records_total", &[("kind", "outcome")]),
        8.0
    );
    assert!(v("signalbox_log_written_bytes_total", &[]) > 1000.0);
    assert_eq!(v("signalbox_log_write_errors_total", &[]), 0.0);
    assert_eq!(v("signalbox_log_writable", &[]), 1.0);
    assert_eq!(v("signalbox_log_queue_depth", &[]), 0.0);
    assert_eq!(v("signalbox_tracked_decisions", &[]), 6.0);

    // Reloads, and what serves.
    assert_eq!(v("signalbox_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(v("signalbox_reloads_total", &[("result", "error")]), 0.0);
    assert_eq!(
        v(
            "signalbox_policy_info",
            &[("version", reloaded.policy_version.as_str())]
        ),
        1.0
    );
    assert_eq!(v("signalbox_auth_rejections_total", &[]), 0.0);
    // Process metrics.
    assert!(v("process_resident_memory_bytes", &[]) > 1e6);
    assert!(v("process_open_fds", &[]) > 0.0);
    assert!(v("process_cpu_seconds_total", &[]) > 0.0);
    // No user id, decision id or prompt anywhere in the exposition.
    for secret in ["alice", acme[0].decision_id.as_str(), "bakery"] {
        assert!(!text.contains(secret), "{secret} in /metrics");
    }

    let (ok, said) = promtool(&text);
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{text}");

    // Other paths and methods.
    let addr = s.server.metrics_addr().unwrap();
    assert_eq!(http_get(addr, "/").await.0, 404);
    s.server.shutdown().await.unwrap();
    drop(s.tmp);
}

#[tokio::test]
async fn tenants_the_policy_does_not_name_are_other() {
    // The default tenant cap ($200 daily, downgrade) applies to anyone: reach it.
    let mut s = serve_file("metrics_listen = \"127.0.0.1:0\"").await;
    let c = &mut s.client;
    for tenant in ["random-1", "random-2"] {
        let d = route(c, text_request(tenant, "Give me three names for a bakery.")).await;
        for _ in 0..2 {
            // The most one outcome may book is $100.
            let mut o = outcome(&d.decision_id, primary_id(&d));
            o.cost_usd = Some(100.0);
            report(c, o).await;
        }
        // Over the default cap: downgraded (the default tenant's action).
        route(c, text_request(tenant, "Give me three names for a bakery.")).await;
    }
    let m = parse(&scrape_text(&s.server).await);
    assert_eq!(
        value(
            &m,
            "signalbox_budget_downgrades_total",
            &[("tenant", "other")]
        ),
        2.0
    );
    assert!(
        !m.samples
            .iter()
            .any(|x| x.labels.values().any(|v| v.starts_with("random-"))),
        "an unnamed tenant became a label"
    );
    s.server.shutdown().await.unwrap();
}

/// A free loopback port (Prometheus cannot be told to pick one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus server scraping `target` every second, with its data in `dir`.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: signalbox\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package; scripts/test installs it)");
        Prometheus { child, addr }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_decision_count() {
    let mut s = serve_file("metrics_listen = \"127.0.0.1:0\"").await;
    for p in [
        "Give me three names for a bakery.",
        "Solve 12 * 17 and explain.",
    ] {
        route(&mut s.client, text_request("acme", p)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(dir.path(), s.server.metrics_addr().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        assert!(
            Instant::now() < deadline,
            "Prometheus never reported the value; its log: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Not listening yet: try again (http_get expects a server).
        if tokio::net::TcpStream::connect(prom.addr).await.is_err() {
            continue;
        }
        let (status, body) = http_get(
            prom.addr,
            "/api/v1/query?query=sum(signalbox_decisions_total)",
        )
        .await;
        if status != 200 {
            continue;
        }
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = &json["data"]["result"];
        if let Some(first) = result.as_array().and_then(|r| r.first()) {
            break first["value"][1].as_str().unwrap().parse::<f64>().unwrap();
        }
    };
    assert_eq!(got, 2.0);
    // The scrape target is healthy.
    let (_, targets) = http_get(prom.addr, "/api/v1/targets").await;
    assert!(targets.contains("\"health\":\"up\""), "{targets}");
    drop(prom);
    s.server.shutdown().await.unwrap();
}

/// The metric names a PromQL expression reads (identifiers followed by `{`, `[`, `)` or space,
/// minus functions and keywords), with histogram suffixes mapped to their family.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b((?:signalbox|process)_[a-z0-9_]+)").unwrap();
    re.captures_iter(expr)
        .map(|c| {
            let name = c[1].to_string();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| base.ends_with("_seconds"))
                .map_or(name.clone(), str::to_string)
        })
        .collect()
}

fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "expr" {
                    if let Some(e) = v.as_str() {
                        out.push(e.to_string());
                    }
                } else {
                    dashboard_exprs(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The example policy as shipped (learned bundle included), its log in `dir`, with metrics on a
/// free port and traces to `sink`; served on port 0.
async fn start_learned_traced(
    dir: &Path,
    sink: &OtlpSink,
) -> (
    RunningServer,
    proto::router_client::RouterClient<tonic::transport::Channel>,
) {
    let text = EXAMPLE_CONFIG
        .replace(
            "dir = \"../signalbox-data/log\"",
            &format!("dir = {:?}", dir.join("log").display().to_string()),
        )
        .replace(
            "\n[learned]",
            &format!(
                "\n[telemetry]\nmetrics_listen = \"127.0.0.1:0\"\notlp_endpoint = \"{}\"\n\n[learned]",
                sink.endpoint()
            ),
        );
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    start_with(policy_from(&text, &config_dir)).await
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/signalbox.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "{exprs:?}");
    let queried: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();

    // The example policy with its learned bundle (model info, shadow router), traced to a sink
    // (trace counters), after routes, outcomes and an open breaker.
    let sink = OtlpSink::start("127.0.0.1:0".parse().unwrap(), 0, Duration::ZERO)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut client) = start_learned_traced(tmp.path(), &sink).await;
    for p in [
        "Give me three names for a bakery.",
        "Solve 12 * 17 and explain.",
    ] {
        let d = route(&mut client, text_request("acme", p)).await;
        let mut o = outcome(&d.decision_id, primary_id(&d));
        o.cost_usd = Some(0.5);
        report(&mut client, o).await;
    }
    let d = route(&mut client, text_request("acme", "Hello")).await;
    for _ in 0..5 {
        report(&mut client, timeout_outcome(&d.decision_id, MIXTRAL)).await;
    }
    // A denial (trial: $1 daily, deny) and a downgrade (alice of acme: $5 daily, downgrade).
    let d = route(&mut client, text_request("trial", "Hello")).await;
    let mut o = outcome(&d.decision_id, primary_id(&d));
    o.cost_usd = Some(1.0);
    report(&mut client, o).await;
    client
        .route(text_request("trial", "Hello"))
        .await
        .unwrap_err();
    let mut alice = text_request("acme", "Hello");
    alice.user_id = "alice".into();
    let d = route(&mut client, alice.clone()).await;
    let mut o = outcome(&d.decision_id, primary_id(&d));
    o.cost_usd = Some(5.0);
    report(&mut client, o).await;
    route(&mut client, alice).await;
    let m = parse(&scrape_text(&server).await);
    let exported: BTreeSet<&str> = m
        .samples
        .iter()
        .map(|s| {
            ["_count", "_sum"]
                .iter()
                .find_map(|suffix| s.metric.strip_suffix(suffix))
                .filter(|base| base.ends_with("_seconds"))
                .unwrap_or(&s.metric)
        })
        .collect();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|q| !exported.contains(q.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics that are not exported: {missing:?}"
    );
    server.shutdown().await.unwrap();
}

#[test]
fn the_shipped_scrape_config_is_valid() {
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus.yml"))
        .output()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    assert!(out.status.success(), "{out:?}");
}

/// The example policy (rules only) with tracing to `endpoint`.
async fn traced(endpoint: &str, extra: &str) -> TestServer {
    let telemetry =
        format!("metrics_listen = \"127.0.0.1:0\"\notlp_endpoint = \"{endpoint}\"\n{extra}");
    start_example(|s| with_telemetry(s, &telemetry)).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::BoolValue(b)) => Some(b.to_string()),
            Some(Value::DoubleValue(d)) => Some(d.to_string()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
}

/// Wait until the sink has at least `n` spans.
async fn wait_for_spans(sink: &OtlpSink, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.spans_received() < n {
        assert!(
            Instant::now() < deadline,
            "only {} spans arrived",
            sink.spans_received()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn route_spans_reach_the_collector_and_continue_the_callers_trace() {
    let sink = OtlpSink::start("127.0.0.1:0".parse().unwrap(), 1000, Duration::ZERO)
        .await
        .unwrap();
    let mut t = traced(&sink.endpoint(), "service_name = \"router-test\"").await;
    // A caller's trace: traceparent version 00, sampled.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let mut req = tonic::Request::new(text_request(
        "acme",
        "My card 4111 1111 1111 1111 was charged twice; what should I do?",
    ));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    let d = t.client.route(req).await.unwrap().into_inner();
    // And one without: a new trace.
    let d2 = route(&mut t.client, text_request("acme", "Solve 12 * 17.")).await;
    report(&mut t.client, outcome(&d2.decision_id, primary_id(&d2))).await;
    wait_for_spans(&sink, 2 * 4 + 3).await;

    let spans = sink.kept();
    assert!(spans.iter().all(|s| s.service_name == "router-test"));
    let root_of = |decision_id: &str| {
        spans
            .iter()
            .map(|r| &r.span)
            .find(|s| {
                s.name == "Route"
                    && attribute(s, "signalbox.decision_id").as_deref() == Some(decision_id)
            })
            .unwrap_or_else(|| panic!("no Route span for {decision_id}: {spans:#?}"))
            .clone()
    };
    let root = root_of(&d.decision_id);
    assert_eq!(hex(&root.trace_id), trace_id);
    assert_eq!(hex(&root.parent_span_id), parent_id);
    assert_eq!(
        root.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
    );
    assert_eq!(
        attribute(&root, "signalbox.model").as_deref(),
        Some(primary_id(&d))
    );
    assert_eq!(
        attribute(&root, "signalbox.tenant").as_deref(),
        Some("acme")
    );
    assert_eq!(
        attribute(&root, "signalbox.data_class").as_deref(),
        Some("pii"),
        "the card number raised the class"
    );
    for key in [
        "signalbox.router",
        "signalbox.task",
        "signalbox.risk_tier",
        "signalbox.server_time_ms",
    ] {
        assert!(attribute(&root, key).is_some(), "{key} missing");
    }
    // Never the prompt or its card number.
    for s in &spans {
        for kv in &s.span.attributes {
            let v = format!("{:?}", kv.value);
            assert!(!v.contains("4111") && !v.contains("charged"), "{kv:?}");
        }
    }
    // Its phase children, in the same trace, under it, within its time.
    let children: BTreeMap<String, _> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| s.parent_span_id == root.span_id)
        .map(|s| (s.name.clone(), s.clone()))
        .collect();
    assert_eq!(
        children.keys().map(String::as_str).collect::<Vec<_>>(),
        ["inspect", "log", "policy"]
    );
    for c in children.values() {
        assert_eq!(c.trace_id, root.trace_id);
        assert!(c.start_time_unix_nano >= root.start_time_unix_nano);
        assert!(c.end_time_unix_nano <= root.end_time_unix_nano);
        assert!(c.start_time_unix_nano <= c.end_time_unix_nano);
    }
    // The untraced caller's Route starts a trace of its own.
    let other = root_of(&d2.decision_id);
    assert!(other.parent_span_id.is_empty());
    assert_ne!(other.trace_id, root.trace_id);
    // ReportOutcome has its span too.
    assert!(spans.iter().any(|s| s.span.name == "ReportOutcome"
        && attribute(&s.span, "signalbox.decision_id").as_deref() == Some(&d2.decision_id)));
    // A malformed traceparent is ignored: the call starts a trace of its own.
    let mut req = tonic::Request::new(text_request("acme", "Solve 12 * 17."));
    req.metadata_mut()
        .insert("traceparent", "00-not-a-trace-01".parse().unwrap());
    let d3 = t.client.route(req).await.unwrap().into_inner();
    wait_for_spans(&sink, 2 * 4 + 3 + 4).await;
    let kept = sink.kept();
    let r3 = kept
        .iter()
        .map(|r| &r.span)
        .find(|s| {
            s.name == "Route"
                && attribute(s, "signalbox.decision_id").as_deref() == Some(&d3.decision_id)
        })
        .expect("a Route span for the malformed traceparent's call");
    assert!(r3.parent_span_id.is_empty());
    assert_ne!(hex(&r3.trace_id), trace_id);
    // A caller's unsampled trace is not recorded.
    let before = sink.spans_received();
    let mut req = tonic::Request::new(text_request("acme", "Solve 12 * 17."));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-00").parse().unwrap(),
    );
    t.client.route(req).await.unwrap();
    t.server.shutdown().await.unwrap();
    assert_eq!(sink.spans_received(), before);
}

#[tokio::test]
async fn learned_phases_are_spans_under_policy() {
    let sink = OtlpSink::start("127.0.0.1:0".parse().unwrap(), 1000, Duration::ZERO)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut client) = start_learned_traced(tmp.path(), &sink).await;
    let d = route(
        &mut client,
        text_request("acme", "Solve 12 * 17 and explain."),
    )
    .await;
    let m = parse(&scrape_text(&server).await);
    for p in ["featurize", "inference"] {
        assert_eq!(
            value(
                &m,
                "signalbox_decision_phase_duration_seconds_count",
                &[("phase", p)]
            ),
            1.0
        );
    }
    assert_eq!(
        value(&m, "signalbox_model_info", &[("backend", "tract")]),
        1.0
    );
    server.shutdown().await.unwrap();
    wait_for_spans(&sink, 6).await;
    let spans: Vec<_> = sink.kept().into_iter().map(|r| r.span).collect();
    let root = spans
        .iter()
        .find(|s| attribute(s, "signalbox.decision_id").as_deref() == Some(&d.decision_id))
        .unwrap();
    assert_eq!(
        attribute(root, "signalbox.router").as_deref(),
        Some("learned")
    );
    let policy = spans
        .iter()
        .find(|s| s.name == "policy" && s.parent_span_id == root.span_id)
        .unwrap();
    for name in ["featurize", "inference"] {
        let s = spans.iter().find(|s| s.name == name).unwrap();
        assert_eq!(s.parent_span_id, policy.span_id, "{name} under policy");
        assert!(s.start_time_unix_nano >= policy.start_time_unix_nano);
        assert!(s.end_time_unix_nano <= policy.end_time_unix_nano);
    }
}

/// `n` sequential Routes; how long they took.
async fn route_n(t: &mut TestServer, n: usize) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        route(
            &mut t.client,
            text_request("acme", &format!("Give me {i} names for a bakery.")),
        )
        .await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_down_collector_blocks_nothing_and_counts_failed_spans() {
    // Nothing listens on this port.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let mut t = traced(&endpoint, "export_timeout_ms = 500").await;
    // Nothing here waits for an export: 300 Routes take far less than one export timeout each.
    let took = route_n(&mut t, 300).await;
    assert!(took < Duration::from_secs(60), "{took:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = parse(&scrape_text(&t.server).await);
        let failed = value(&m, "signalbox_trace_spans_total", &[("result", "failed")]);
        let exported = value(&m, "signalbox_trace_spans_total", &[("result", "exported")]);
        assert_eq!(exported, 0.0);
        if failed > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no failed export counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_slow_collector_blocks_nothing_and_full_queues_drop_counted_spans() {
    // Every export is answered after 30 s; the queue holds 8 traces.
    let sink = OtlpSink::start("127.0.0.1:0".parse().unwrap(), 0, Duration::from_secs(30))
        .await
        .unwrap();
    let mut t = traced(
        &sink.endpoint(),
        "export_queue_traces = 8\nexport_batch_spans = 4\nexport_timeout_ms = 60000",
    )
    .await;
    let took = route_n(&mut t, 300).await;
    assert!(took < Duration::from_secs(60), "{took:?}");
    let m = parse(&scrape_text(&t.server).await);
    let dropped = value(&m, "signalbox_trace_spans_total", &[("result", "dropped")]);
    // At most one batch in the exporter's hands and 8 traces queued; the rest were dropped.
    assert!(dropped >= (300.0 - 8.0 - 4.0) * 4.0, "dropped {dropped}");
    assert_eq!(
        value(&m, "signalbox_grpc_requests_total", &[("code", "OK")]),
        300.0
    );
    // Shutdown waits for the exporter a bounded time only.
    let stopping = Instant::now();
    t.server.shutdown().await.unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(20));
}

#[test]
fn json_logs_carry_the_decision_id_and_the_metrics_address_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("signalbox.toml");
    std::fs::write(&config, example_policy_text(&tmp.path().join("log"))).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .env("RUST_LOG", "info,signalbox=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let next = |seen: &mut Vec<serde_json::Value>| {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a log line");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        seen.push(v.clone());
        v
    };
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_string();
    let (mut grpc, mut metrics) = (None, None);
    while grpc.is_none() || metrics.is_none() {
        let m = message(&next(&mut seen));
        if let Some(a) = m.strip_prefix("listening on ") {
            grpc = Some(a.to_string());
        }
        if let Some(a) = m.strip_prefix("metrics on http://") {
            metrics = Some(a.trim_end_matches("/metrics").to_string());
        }
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let decision_id = runtime.block_on(async {
        let mut client =
            proto::router_client::RouterClient::connect(format!("http://{}", grpc.unwrap()))
                .await
                .unwrap();
        let d = route(&mut client, text_request("acme", "Solve 12 * 17.")).await;
        let (status, body) = http_get(metrics.unwrap().parse().unwrap(), "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("signalbox_decisions_total"));
        d.decision_id
    });
    // The request's debug line names its decision in its span.
    let decided = loop {
        let v = next(&mut seen);
        if message(&v) == "decided" {
            break v;
        }
    };
    assert_eq!(decided["span"]["decision_id"], decision_id.as_str());
    assert_eq!(decided["span"]["name"], "route");
    assert_eq!(sigterm_and_wait(&mut child).code(), Some(0));
}
