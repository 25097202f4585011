//! Several replicas on one real Redis (`[state] backend = "redis"`): budgets, outcome
//! de-duplication, circuit breakers and rate limits are shared; Redis outages behave as
//! `on_unavailable` says; a replica lost loses nothing.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{ExampleLog, GPT4, outcome, text_request};
use signalbox::proto;
use signalbox::proto::router_client::RouterClient;
use signalbox::server::RunningServer;
use tonic::Code;
use tonic::transport::Channel;

/// The example policy on Redis at `url` with `state` added to `[state]`. Unless `state` sets
/// its own, the command timeout is 2 s: the suite runs many replicas and Redis servers at once
/// on two cores, and a slow answer must not read as an outage except in the tests of outages.
fn fleet_policy(url: &str, state: &str, edit: impl FnOnce(String) -> String) -> ExampleLog {
    let timeout = if state.contains("command_timeout_ms") {
        ""
    } else {
        "command_timeout_ms = 2000\n"
    };
    ExampleLog::new(|text| {
        let text = edit(text);
        format!(
            "{text}\n[state]\nbackend = \"redis\"\nurl = \"{url}\"\ncircuit_refresh_ms = 50\n{timeout}{state}\n"
        )
    })
}

async fn replicas(example: &ExampleLog, n: usize) -> Vec<(RunningServer, RouterClient<Channel>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(example.start().await);
    }
    out
}

/// A request the example routes to GPT-4 (quality first), estimated at about $0.015.
fn strong(tenant: &str) -> proto::RouteRequest {
    proto::RouteRequest {
        quality_preference: Some(0.9),
        ..text_request(tenant, "Write a short poem about the sea.")
    }
}

async fn spend_in_redis(redis: &RedisServer, tenant: &str) -> (f64, f64) {
    let mut c = redis.client().await;
    let now = chrono::Utc::now();
    let day = format!("{{signalbox:t:{tenant}}}:a:-:d:{}", now.format("%Y%m%d"));
    let held = format!("{{signalbox:t:{tenant}}}:a:-:h");
    let spent: Option<u64> = redis::cmd("GET")
        .arg(&day)
        .query_async(&mut c)
        .await
        .unwrap();
    let in_flight: Option<u64> = redis::cmd("HGET")
        .arg(&held)
        .arg("total")
        .query_async(&mut c)
        .await
        .unwrap();
    (
        spent.unwrap_or(0) as f64 / 1e6,
        in_flight.unwrap_or(0) as f64 / 1e6,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_cap_holds_across_three_replicas_under_concurrent_load() {
    let redis = RedisServer::start();
    let example = fleet_policy(&redis.url(), "", |t| t);
    let servers = replicas(&example, 3).await;
    let clients: Vec<_> = servers.iter().map(|(_, c)| c.clone()).collect();
    // 32 callers, spread round-robin over the replicas, route for tenant "trial" ($1 a day,
    // deny) until refused; each outcome is reported (cost = the estimate) to the next replica.
    let mut tasks = Vec::new();
    for caller in 0..32usize {
        let clients = clients.clone();
        tasks.push(tokio::spawn(async move {
            let mut allowed = Vec::new();
            let mut i = caller;
            loop {
                let mut c = clients[i % 3].clone();
                match c.route(strong("trial")).await {
                    Ok(d) => {
                        let d = d.into_inner();
                        let cost = d.estimated_cost_usd;
                        let mut to = clients[(i + 1) % 3].clone();
                        let ack = to
                            .report_outcome(proto::Outcome {
                                cost_usd: Some(cost),
                                attempt: 1,
                                ..outcome(&d.decision_id, common::primary_id(&d))
                            })
                            .await
                            .unwrap()
                            .into_inner();
                        assert!(!ack.duplicate);
                        allowed.push(cost);
                    }
                    Err(s) => {
                        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                        return allowed;
                    }
                }
                i += 1;
            }
        }));
    }
    let mut allowed = Vec::new();
    for t in tasks {
        allowed.extend(t.await.unwrap());
    }
    let total: f64 = allowed.iter().sum();
    let max_estimate = allowed.iter().cloned().fold(0.0, f64::max);
    assert!(
        max_estimate > 0.005 && max_estimate < 0.05,
        "{max_estimate}"
    );
    let (spent, in_flight) = spend_in_redis(&redis, "trial").await;
    // Every allowed decision's outcome is booked, exactly once.
    assert!(
        (spent - total).abs() < 1e-6,
        "redis {spent} vs reported {total}"
    );
    assert!(in_flight.abs() < 1e-9, "every hold released: {in_flight}");
    // The cap was reached, and passed by at most one estimate in total.
    assert!(total >= 1.0, "refused before the cap: {total}");
    assert!(total < 1.0 + max_estimate, "{total} > 1 + {max_estimate}");
    // The count of allowed decisions is the number of estimates that fit under the cap.
    let mut running = 0.0;
    let fits = allowed
        .iter()
        .take_while(|c| {
            let under = running < 1.0;
            running += *c;
            under
        })
        .count();
    assert_eq!(
        fits,
        allowed.len(),
        "{} allowed, {} fit",
        allowed.len(),
        fits
    );
    for (s, _) in servers {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_is_booked_once_whichever_replica_gets_it() {
    let redis = RedisServer::start();
    let example = fleet_policy(&redis.url(), "", |t| t);
    let mut servers = replicas(&example, 3).await;
    let d = servers[0]
        .1
        .route(strong("acme"))
        .await
        .unwrap()
        .into_inner();
    let report = proto::Outcome {
        cost_usd: Some(0.25),
        attempt: 1,
        ..outcome(&d.decision_id, GPT4)
    };
    let first = servers[1]
        .1
        .report_outcome(report.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!first.duplicate);
    assert!((first.cost_usd - 0.25).abs() < 1e-9);
    let again = servers[2]
        .1
        .report_outcome(report.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(
        again.duplicate,
        "the repeat on a third replica is a duplicate"
    );
    assert_eq!(again.cost_usd, 0.0);
    // Attempt 2 of the same decision is booked (a fallback's outcome).
    let second = servers[0]
        .1
        .report_outcome(proto::Outcome {
            attempt: 2,
            cost_usd: Some(0.5),
            ..report.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!second.duplicate);
    let (spent, in_flight) = spend_in_redis(&redis, "acme").await;
    assert!((spent - 0.75).abs() < 1e-9, "{spent}");
    assert_eq!(in_flight, 0.0);
    for (_, c) in servers.iter_mut() {
        let err = c
            .report_outcome(outcome("0190f000-0000-7000-8000-000000000000", GPT4))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    for (s, _) in servers {
        s.shutdown().await.unwrap();
    }
}

/// The model the example routes `strong` to, with its failures reported round the replicas
/// until its breaker opens; returns when every replica sees it open.
async fn open_breaker_everywhere(servers: &mut [(RunningServer, RouterClient<Channel>)]) {
    for i in 0..3 {
        let n = servers.len();
        let d = servers[i % n]
            .1
            .route(strong("acme"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(common::primary_id(&d), GPT4);
        let ack = servers[(i + 1) % n]
            .1
            .report_outcome(proto::Outcome {
                success: false,
                error: proto::ErrorKind::Timeout as i32,
                ..outcome(&d.decision_id, GPT4)
            })
            .await
            .unwrap()
            .into_inner();
        let expect = if i == 2 { "open" } else { "closed" };
        assert_eq!(ack.circuit_state, expect, "after failure {}", i + 1);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for (s, c) in servers.iter_mut() {
        loop {
            let d = c.route(strong("acme")).await.unwrap().into_inner();
            if common::primary_id(&d) != GPT4 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} never saw the breaker open",
                s.local_addr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_on_different_replicas_open_the_breaker_everywhere_and_one_probe_goes_out() {
    let redis = RedisServer::start();
    let example = fleet_policy(&redis.url(), "", |t| {
        t.replace("failure_threshold = 5 ", "failure_threshold = 3 ")
            .replace("cooldown_secs = 30 ", "cooldown_secs = 2 ")
    });
    let mut servers = replicas(&example, 3).await;
    open_breaker_everywhere(&mut servers).await;
    // After the cooldown the breaker is half-open: of many concurrent requests on all three
    // replicas, exactly one (half_open_probes = 1) goes to the model.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let clients: Vec<_> = servers.iter().map(|(_, c)| c.clone()).collect();
    let mut tasks = Vec::new();
    for i in 0..30usize {
        let mut c = clients[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            c.route(strong("acme"))
                .await
                .unwrap()
                .into_inner()
                .primary
                .unwrap()
                .model_id
        }));
    }
    let mut to_model = 0;
    for t in tasks {
        if t.await.unwrap() == GPT4 {
            to_model += 1;
        }
    }
    assert_eq!(to_model, 1, "probes fleet-wide");
    for (s, _) in servers {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_fleet_wide() {
    let redis = RedisServer::start();
    let example = fleet_policy(&redis.url(), "", |t| {
        format!(
            "{t}\n[[rate_limits.tenants]]\ntenant = \"acme\"\nrequests_per_sec = 0.001\nburst = 10\n"
        )
    });
    let mut servers = replicas(&example, 3).await;
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..30 {
        match servers[i % 3].1.route(strong("acme")).await {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("tenant \"acme\""), "{}", s.message());
                limited += 1;
            }
        }
    }
    assert_eq!(
        (ok, limited),
        (10, 20),
        "a burst of 10 across three replicas, not 30"
    );
    for (s, _) in servers {
        s.shutdown().await.unwrap();
    }
}

async fn health(server: &RunningServer) -> i32 {
    let mut h =
        tonic_health::pb::health_client::HealthClient::new(common::channel_to(server).await);
    h.check(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .status
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// ReportOutcome, repeated while the replica answers UNAVAILABLE (for up to 15 s), as the API
/// asks callers to.
async fn report_until_available(
    client: &mut RouterClient<Channel>,
    outcome: proto::Outcome,
) -> proto::OutcomeAck {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client.report_outcome(outcome.clone()).await {
            Ok(ack) => return ack.into_inner(),
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("ReportOutcome: {s:?}"),
        }
    }
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_unavailable_until_redis_is_back() {
    let mut redis = RedisServer::start();
    let example = fleet_policy(
        &redis.url(),
        "on_unavailable = \"fail_closed\"\ncommand_timeout_ms = 200\n",
        |t| t,
    );
    let (server, mut client) = example.start().await;
    let d = client.route(strong("acme")).await.unwrap().into_inner();
    assert_eq!(health(&server).await, SERVING);
    redis.stop();
    let started = Instant::now();
    let err = client.route(strong("acme")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let err = client
        .report_outcome(outcome(&d.decision_id, GPT4))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    eventually("health NOT_SERVING", || async {
        health(&server).await == NOT_SERVING
    })
    .await;
    redis.restart();
    eventually("serving again", || {
        let mut c = client.clone();
        async move { c.route(strong("acme")).await.is_ok() }
    })
    .await;
    eventually("health SERVING", || async {
        health(&server).await == SERVING
    })
    .await;
    // The decision made before the outage is still there (Redis kept it).
    let ack = client
        .report_outcome(outcome(&d.decision_id, GPT4))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_keeps_routing_on_a_share_of_the_cap_and_reconciles() {
    let mut redis = RedisServer::start();
    // trial: $1 a day, deny; two replicas: each may commit half of what is left.
    let example = fleet_policy(
        &redis.url(),
        "on_unavailable = \"local\"\nreplicas_hint = 2\ncommand_timeout_ms = 200\n",
        |t| t,
    );
    let (server, mut client) = example.start().await;
    let (other, mut other_client) = example.start().await;
    // $0.40 spent before the outage (reported on the fleet).
    let d = client.route(strong("trial")).await.unwrap().into_inner();
    let ack = client
        .report_outcome(proto::Outcome {
            cost_usd: Some(0.4),
            ..outcome(&d.decision_id, GPT4)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
    redis.stop();
    // During the outage: routing goes on, up to (1 - 0.4) / 2 = $0.30 of commitments.
    let mut allowed = Vec::new();
    let mut refused = None;
    for _ in 0..100 {
        match client.route(strong("trial")).await {
            Ok(d) => allowed.push(d.into_inner()),
            Err(s) => {
                refused = Some(s);
                break;
            }
        }
    }
    let refused = refused.expect("the share ran out");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let committed: f64 = allowed.iter().map(|d| d.estimated_cost_usd).sum();
    let max = allowed
        .iter()
        .map(|d| d.estimated_cost_usd)
        .fold(0.0, f64::max);
    assert!(
        committed >= 0.3 - max && committed < 0.3 + max,
        "{committed}"
    );
    // An outcome reported meanwhile is booked locally...
    let booked: f64 = allowed.iter().take(3).map(|d| d.estimated_cost_usd).sum();
    for d in allowed.iter().take(3) {
        let ack = client
            .report_outcome(proto::Outcome {
                cost_usd: Some(d.estimated_cost_usd),
                attempt: 1,
                ..outcome(&d.decision_id, GPT4)
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!ack.duplicate);
    }
    // ... an outcome of a decision this replica does not know may be in Redis: retry later.
    let err = client
        .report_outcome(outcome("0190f000-0000-7000-8000-000000000001", GPT4))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(health(&server).await, SERVING);
    // ... and added to Redis once it is back.
    redis.restart();
    eventually("reconciled", || async {
        let (spent, _) = spend_in_redis(&redis, "trial").await;
        (spent - (0.4 + booked)).abs() < 1e-6
    })
    .await;
    // Both replicas: the other one's connection broke with the restart too, and it is asked
    // below (it reconnects on its own probe's backoff, up to 2 s after the restart).
    eventually("back on Redis", || async {
        [&server, &other]
            .iter()
            .all(|s| s.shared().fleet.as_ref().unwrap().is_up())
    })
    .await;
    // The outage's decisions are in Redis now: their outcomes may go to another replica, and
    // an attempt reported during the outage is a duplicate there.
    // The other replica may still hold the connection the restart broke: its first call then
    // answers UNAVAILABLE ("report it again later"), which a caller retries.
    let repeat = report_until_available(
        &mut other_client,
        proto::Outcome {
            cost_usd: Some(allowed[0].estimated_cost_usd),
            attempt: 1,
            ..outcome(&allowed[0].decision_id, GPT4)
        },
    )
    .await;
    assert!(repeat.duplicate, "reported during the outage");
    let late = report_until_available(
        &mut other_client,
        proto::Outcome {
            cost_usd: Some(0.01),
            attempt: 1,
            ..outcome(&allowed[4].decision_id, GPT4)
        },
    )
    .await;
    assert!(!late.duplicate);
    let (spent, _) = spend_in_redis(&redis, "trial").await;
    assert!((spent - (0.4 + booked + 0.01)).abs() < 1e-6, "{spent}");
    server.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_replicas_decisions_are_reported_to_the_others() {
    let redis = RedisServer::start();
    let example = fleet_policy(&redis.url(), "", |t| t);
    let mut servers = replicas(&example, 3).await;
    let mut made = BTreeMap::new();
    for i in 0..20 {
        let d = servers[0]
            .1
            .route(strong(if i % 2 == 0 { "acme" } else { "trial" }))
            .await
            .unwrap()
            .into_inner();
        made.insert(d.decision_id.clone(), d);
    }
    let (lost, _) = servers.remove(0);
    lost.shutdown().await.unwrap();
    for (i, (id, d)) in made.iter().enumerate() {
        let c = &mut servers[i % 2].1;
        let ack = c
            .report_outcome(proto::Outcome {
                cost_usd: Some(0.01),
                attempt: 1,
                ..outcome(id, common::primary_id(d))
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!ack.duplicate);
    }
    let (acme, acme_held) = spend_in_redis(&redis, "acme").await;
    let (trial, trial_held) = spend_in_redis(&redis, "trial").await;
    assert!(
        (acme - 0.1).abs() < 1e-9 && (trial - 0.1).abs() < 1e-9,
        "{acme} {trial}"
    );
    assert_eq!((acme_held, trial_held), (0.0, 0.0));
    for (s, _) in servers {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_down_at_start_is_an_outage_not_a_failure() {
    let mut redis = RedisServer::start();
    redis.stop();
    let example = fleet_policy(
        &redis.url(),
        "on_unavailable = \"fail_closed\"\nconnect_timeout_ms = 200\n",
        |t| t,
    );
    let (server, mut client) = example.start().await;
    let err = client.route(strong("acme")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    redis.restart();
    eventually("serving once Redis is up", || {
        let mut c = client.clone();
        async move { c.route(strong("acme")).await.is_ok() }
    })
    .await;
    server.shutdown().await.unwrap();
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 (PEM: CA, cert, key).
fn test_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "test redis CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_and_a_password_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificates();
    let (other_ca, _, _) = test_certificates();
    for (name, pem) in [
        ("ca.pem", &ca),
        ("other-ca.pem", &other_ca),
        ("cert.pem", &cert),
        ("key.pem", &key),
    ] {
        std::fs::write(tmp.path().join(name), pem).unwrap();
    }
    std::fs::write(tmp.path().join("pw"), "s3cret-pw\n").unwrap();
    std::fs::write(tmp.path().join("wrong-pw"), "nope\n").unwrap();
    let redis = RedisServer::start_tls(
        &tmp.path().join("cert.pem"),
        &tmp.path().join("key.pem"),
        "s3cret-pw",
    );
    let url = format!("rediss://localhost:{}", redis.port);
    let setting = |ca: &str, pw: &str| {
        format!(
            "ca_file = {:?}\npassword_file = {:?}\nconnect_timeout_ms = 2000\n",
            tmp.path().join(ca).display().to_string(),
            tmp.path().join(pw).display().to_string()
        )
    };
    // The right CA and password: decisions and outcomes go through Redis over TLS.
    let example = fleet_policy(&url, &setting("ca.pem", "pw"), |t| t);
    let (server, mut client) = example.start().await;
    let d = client.route(strong("acme")).await.unwrap().into_inner();
    let ack = client
        .report_outcome(proto::Outcome {
            cost_usd: Some(0.5),
            ..outcome(&d.decision_id, GPT4)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
    let fleet = server.shared().fleet.clone().unwrap();
    assert!(fleet.is_up());
    assert_eq!(fleet.commands(signalbox::fleet::Op::Settle), 1);
    server.shutdown().await.unwrap();
    // A server certificate from another CA, or a wrong password: Redis is unavailable.
    for (ca, pw) in [("other-ca.pem", "pw"), ("ca.pem", "wrong-pw")] {
        let example = fleet_policy(&url, &setting(ca, pw), |t| t);
        let (server, mut client) = example.start().await;
        let err = client.route(strong("acme")).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{ca} {pw}: {err:?}");
        server.shutdown().await.unwrap();
    }
}

/// Callers routing in a loop (each decision's outcome reported to the next client) until
/// `stop`; returns the status codes seen ("route:Ok", "outcome:Unavailable", ...) and the
/// slowest Route with its outcome.
fn load(
    clients: Vec<RouterClient<Channel>>,
    callers: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(BTreeMap<String, usize>, Duration)>> {
    (0..callers)
        .map(|i| {
            let clients = clients.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut codes = BTreeMap::new();
                let mut slowest = Duration::ZERO;
                let mut n = i;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut c = clients[n % clients.len()].clone();
                    let mut to = clients[(n + 1) % clients.len()].clone();
                    n += 1;
                    let started = Instant::now();
                    let code = match c.route(strong("acme")).await {
                        Ok(d) => {
                            let d = d.into_inner();
                            let code = match to.report_outcome(outcome(&d.decision_id, GPT4)).await
                            {
                                Ok(_) => Code::Ok,
                                Err(s) => s.code(),
                            };
                            *codes.entry(format!("outcome:{code:?}")).or_default() += 1;
                            Code::Ok
                        }
                        Err(s) => s.code(),
                    };
                    slowest = slowest.max(started.elapsed());
                    *codes.entry(format!("route:{code:?}")).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (codes, slowest)
            })
        })
        .collect()
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(BTreeMap<String, usize>, Duration)>>,
) -> (BTreeMap<String, usize>, Duration) {
    let mut all = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for t in tasks {
        let (codes, s) = t.await.unwrap();
        for (k, v) in codes {
            *all.entry(k).or_default() += v;
        }
        slowest = slowest.max(s);
    }
    (all, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_load_in_each_mode_then_back_without_restarting_replicas() {
    for mode in ["fail_closed", "local"] {
        let mut redis = RedisServer::start();
        let example = fleet_policy(
            &redis.url(),
            &format!("on_unavailable = \"{mode}\"\nreplicas_hint = 2\ncommand_timeout_ms = 200\n"),
            |t| t,
        );
        let servers = replicas(&example, 2).await;
        let clients: Vec<_> = servers.iter().map(|(_, c)| c.clone()).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let before = load(clients.clone(), 8, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        redis.stop();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (codes, slowest) = collect(before).await;
        // Across the failure: OK or UNAVAILABLE only, and no call waits on Redis for long.
        assert!(
            codes
                .keys()
                .all(|k| k.ends_with(":Ok") || k.ends_with(":Unavailable")),
            "{mode}: {codes:?}"
        );
        assert!(slowest < Duration::from_secs(2), "{mode}: {slowest:?}");
        let unavailable = codes.get("route:Unavailable").copied().unwrap_or(0);
        // The outage window alone, with the load still running.
        stop.store(false, std::sync::atomic::Ordering::Relaxed);
        let during = load(clients.clone(), 8, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (outage, _) = collect(during).await;
        match mode {
            "fail_closed" => {
                assert!(unavailable > 0, "{codes:?}");
                assert_eq!(
                    outage.keys().collect::<Vec<_>>(),
                    ["route:Unavailable"],
                    "{outage:?}"
                );
            }
            _ => {
                // Routing goes on; an outcome reported to the replica that did not make the
                // decision answers UNAVAILABLE (it may be in Redis): the caller retries later.
                assert_eq!(unavailable, 0, "{codes:?}");
                assert_eq!(
                    outage.keys().collect::<Vec<_>>(),
                    ["outcome:Unavailable", "route:Ok"],
                    "{outage:?}"
                );
            }
        }
        // Redis back: every call succeeds again, same replicas.
        redis.restart();
        for (s, c) in &servers {
            let mut c = c.clone();
            eventually("routing through Redis again", || {
                let fleet = s.shared().fleet.clone().unwrap();
                let mut c = c.clone();
                async move { fleet.is_up() && c.route(strong("acme")).await.is_ok() }
            })
            .await;
            c.route(strong("acme")).await.unwrap();
        }
        stop.store(false, std::sync::atomic::Ordering::Relaxed);
        let after = load(clients.clone(), 8, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (after, _) = collect(after).await;
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            ["outcome:Ok", "route:Ok"],
            "{mode}: {after:?}"
        );
        for (s, _) in servers {
            s.shutdown().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_shut_down_mid_load_leaves_the_others_serving() {
    let redis = RedisServer::start();
    let example = fleet_policy(&redis.url(), "", |t| t);
    let mut servers = replicas(&example, 3).await;
    // Decisions made by the replica about to go, reported later to the others.
    let mut made = Vec::new();
    for _ in 0..10 {
        made.push(
            servers[0]
                .1
                .route(strong("acme"))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let survivors: Vec<_> = servers[1..].iter().map(|(_, c)| c.clone()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(survivors.clone(), 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (lost, _) = servers.remove(0);
    lost.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (codes, _) = collect(running).await;
    assert_eq!(
        codes.keys().collect::<Vec<_>>(),
        ["outcome:Ok", "route:Ok"],
        "{codes:?}"
    );
    for (i, d) in made.iter().enumerate() {
        let mut c = survivors[i % 2].clone();
        let ack = c
            .report_outcome(outcome(&d.decision_id, GPT4))
            .await
            .unwrap()
            .into_inner();
        assert!(!ack.duplicate);
    }
    for (s, _) in servers {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_deny_cap_holds_while_its_tenant_is_downgraded() {
    let redis = RedisServer::start();
    // The tenant's own cap (downgrade) is reached at once; its user's (deny) must still hold
    // across replicas, although every decision is a downgrade by then.
    let example = fleet_policy(&redis.url(), "", |t| {
        format!(
            "{t}\n[[budgets.tenants]]\ntenant = \"t2\"\ndaily_usd = 0.001\non_exceeded = \"downgrade\"\n\n[[budgets.users]]\ntenant = \"t2\"\nuser = \"u2\"\ndaily_usd = 0.05\non_exceeded = \"deny\"\n"
        )
    });
    let servers = replicas(&example, 3).await;
    let clients: Vec<_> = servers.iter().map(|(_, c)| c.clone()).collect();
    let mut tasks = Vec::new();
    for caller in 0..16usize {
        let clients = clients.clone();
        tasks.push(tokio::spawn(async move {
            let mut costs = Vec::new();
            for i in caller.. {
                let mut c = clients[i % 3].clone();
                let req = proto::RouteRequest {
                    user_id: "u2".into(),
                    ..strong("t2")
                };
                match c.route(req).await {
                    Ok(d) => {
                        let d = d.into_inner();
                        let mut to = clients[(i + 1) % 3].clone();
                        to.report_outcome(proto::Outcome {
                            cost_usd: Some(d.estimated_cost_usd),
                            attempt: 1,
                            ..outcome(&d.decision_id, common::primary_id(&d))
                        })
                        .await
                        .unwrap();
                        costs.push(d.estimated_cost_usd);
                    }
                    Err(s) => {
                        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                        assert!(s.message().contains("u2"), "{}", s.message());
                        return costs;
                    }
                }
            }
            costs
        }));
    }
    let mut costs = Vec::new();
    for t in tasks {
        costs.extend(t.await.unwrap());
    }
    let total: f64 = costs.iter().sum();
    let max = costs.iter().cloned().fold(0.0, f64::max);
    assert!(total >= 0.05, "refused early: {total}");
    assert!(
        total < 0.05 + max,
        "the user's deny cap was passed: {total} (max estimate {max})"
    );
    for (s, _) in servers {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hold_script_checks_every_cap_or_only_the_deny_caps_of_a_downgraded_decision() {
    use signalbox::fleet::budget::{HoldCheck, HoldResult};
    use signalbox::money::Micros;
    let redis = RedisServer::start();
    let example = fleet_policy(&redis.url(), "", |t| {
        format!(
            "{t}\n[[budgets.tenants]]\ntenant = \"t2\"\ndaily_usd = 0.04\non_exceeded = \"downgrade\"\n\n[[budgets.users]]\ntenant = \"t2\"\nuser = \"u2\"\ndaily_usd = 0.05\non_exceeded = \"deny\"\n"
        )
    });
    let (server, _client) = example.start().await;
    let fleet = server.shared().fleet.clone().unwrap();
    let live = server.shared().live.load_full();
    let policy = live.engine.policy();
    let deadline = || fleet.deadline(None);
    let hold = |user: &'static str, check: HoldCheck| {
        let fleet = fleet.clone();
        let live = live.clone();
        async move {
            fleet
                .hold(
                    live.engine.policy(),
                    ("t2", user),
                    "d-probe",
                    Micros(1_000),
                    check,
                    None,
                    fleet.deadline(None),
                )
                .await
                .unwrap()
        }
    };
    // $0.045 booked for u2: the tenant's downgrade cap ($0.04) is reached, u2's deny cap
    // ($0.05) is not.
    let booked = fleet
        .settle(policy, "t2", "u2", "d-0", 1, Micros(45_000), deadline())
        .await
        .unwrap();
    assert!(!booked);
    assert_eq!(hold("u2", HoldCheck::AllCaps).await, HoldResult::CapReached);
    assert!(matches!(
        hold("u2", HoldCheck::DenyCaps).await,
        HoldResult::Held(Some(_))
    ));
    // $0.005 more: u2's deny cap is reached too; a downgraded decision may not hold past it.
    fleet
        .settle(policy, "t2", "u2", "d-1", 1, Micros(5_000), deadline())
        .await
        .unwrap();
    assert_eq!(
        hold("u2", HoldCheck::DenyCaps).await,
        HoldResult::CapReached
    );
    // Another user of the tenant, without caps of its own: only the tenant's downgrade cap.
    assert_eq!(hold("u3", HoldCheck::AllCaps).await, HoldResult::CapReached);
    assert!(matches!(
        hold("u3", HoldCheck::DenyCaps).await,
        HoldResult::Held(Some(_))
    ));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_example_policy_is_valid_and_serves_on_redis() {
    // deploy/fleet/policy.toml with its container paths moved into a temp dir.
    let redis = RedisServer::start_with(&["--requirepass", "fleet-pw"]);
    let tmp = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("deploy/fleet/policy.toml")).unwrap();
    let replaced = [
        ("\"/var/lib/signalbox/log\"", tmp.path().join("log")),
        (
            "\"/etc/signalbox/keys/keys.toml\"",
            tmp.path().join("keys.toml"),
        ),
        ("\"/run/secrets/redis_password\"", tmp.path().join("pw")),
        (
            "\"/opt/signalbox/models/routellm-mmlu\"",
            repo.join("models/routellm-mmlu"),
        ),
    ];
    let mut text = text.replace("\"redis://redis:6379/0\"", &format!("{:?}", redis.url()));
    for (from, to) in replaced {
        assert!(
            text.contains(from),
            "deploy/fleet/policy.toml no longer names {from}"
        );
        text = text.replace(from, &format!("{:?}", to.display().to_string()));
    }
    std::fs::write(tmp.path().join("keys.toml"), "").unwrap();
    std::fs::write(tmp.path().join("pw"), "fleet-pw\n").unwrap();
    let policy = common::policy_from(&text, tmp.path());
    assert!(matches!(
        policy.state,
        signalbox::fleet::StatePolicy::Redis(_)
    ));
    let server = signalbox::server::start(policy, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the deployment policy serves");
    assert!(
        server.shared().fleet.as_ref().unwrap().is_up(),
        "connected with the password file"
    );
    server.shutdown().await.unwrap();
}
