//! API keys, tenants, roles and rate limits through the real server on port 0 (keys created with
//! the library function `signalbox keys create` runs), and the binary: the CLI, the refusal to
//! serve without authentication off loopback, and no secret in any log.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use signalbox::auth::keys::{NewKey, create_key, revoke_key};
use signalbox::auth::{Rate, Role, Roles};
use signalbox::proto::admin_client::AdminClient;
use signalbox::proto::router_client::RouterClient;
use signalbox::proto::{self};
use signalbox::server::RunningServer;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const BIN: &str = env!("CARGO_BIN_EXE_signalbox");
const REFUSED: &str = "missing or invalid API key";

fn roles(rs: &[Role]) -> Roles {
    rs.iter().fold(Roles::NONE, |acc, r| acc.with(*r))
}

fn new_key(path: &Path, tenant: &str, rs: &[Role]) -> (String, String) {
    let spec = NewKey {
        tenant: tenant.into(),
        roles: roles(rs),
        expires: None,
        rate: None,
    };
    let created = create_key(path, &spec).unwrap();
    (created.id, created.key.expose().to_string())
}

/// A request carrying `authorization: Bearer <key>`.
fn keyed<T>(message: T, key: &str) -> Request<T> {
    with_header(message, format!("Bearer {key}").as_bytes())
}

/// A request carrying `authorization: <raw bytes>`.
fn with_header<T>(message: T, raw: &[u8]) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(raw).expect("a header value"),
    );
    r
}

struct Keys {
    /// acme: route + report.
    acme: String,
    /// acme: route only.
    acme_route_only: String,
    /// globex: route + report.
    globex: String,
    /// ops: admin only.
    admin: String,
    acme_id: String,
}

/// A server with `[auth] mode = "api_key"` over the example policy (rules only), its keys file
/// and log in a temp dir, reloadable from its file.
struct AuthServer {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    keys_file: PathBuf,
    log_dir: PathBuf,
    keys: Keys,
    server: RunningServer,
    router: RouterClient<Channel>,
    admin: AdminClient<Channel>,
    channel: Channel,
}

fn auth_policy_text(log_dir: &Path, extra: &str) -> String {
    format!(
        "{}\n[auth]\nmode = \"api_key\"\nkeys_file = \"keys.toml\"\n{extra}",
        example_policy_text(log_dir)
    )
}

impl AuthServer {
    async fn start(extra: &str) -> AuthServer {
        let tmp = tempfile::tempdir().unwrap();
        let log_dir = tmp.path().join("log");
        let keys_file = tmp.path().join("keys.toml");
        let (acme_id, acme) = new_key(&keys_file, "acme", &[Role::Route, Role::Report]);
        let (_, acme_route_only) = new_key(&keys_file, "acme", &[Role::Route]);
        let (_, globex) = new_key(&keys_file, "globex", &[Role::Route, Role::Report]);
        let (_, admin) = new_key(&keys_file, "ops", &[Role::Admin]);
        let config = tmp.path().join("policy.toml");
        std::fs::write(&config, auth_policy_text(&log_dir, extra)).unwrap();
        let policy = signalbox::config::Policy::load(&config).unwrap();
        let server = signalbox::server::start_from_file(
            policy,
            config.clone(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let channel = channel_to(&server).await;
        AuthServer {
            _tmp: tmp,
            config,
            keys_file,
            log_dir,
            keys: Keys {
                acme,
                acme_route_only,
                globex,
                admin,
                acme_id,
            },
            router: RouterClient::new(channel.clone()),
            admin: AdminClient::new(channel.clone()),
            channel,
            server,
        }
    }

    async fn route_as(&mut self, key: &str, tenant: &str) -> Result<proto::RouteDecision, Status> {
        self.router
            .route(keyed(
                text_request(tenant, "What is the capital of Australia?"),
                key,
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// The server still serves: a valid key routes.
    async fn still_serves(&mut self) {
        let key = self.keys.acme.clone();
        let d = self
            .route_as(&key, "acme")
            .await
            .expect("a valid key routes");
        assert!(!d.decision_id.is_empty());
    }

    async fn stats(&mut self) -> proto::StatsReply {
        let key = self.keys.admin.clone();
        self.admin
            .stats(keyed(proto::StatsRequest {}, &key))
            .await
            .unwrap()
            .into_inner()
    }

    async fn reload(&mut self) -> Result<proto::ReloadReply, Status> {
        let key = self.keys.admin.clone();
        self.admin
            .reload(keyed(proto::ReloadRequest {}, &key))
            .await
            .map(|r| r.into_inner())
    }
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected {code:?}, got {v:?}"),
        Err(s) => assert_eq!(s.code(), code, "{what}: {s:?}"),
    }
}

#[tokio::test]
async fn calls_without_a_valid_key_are_unauthenticated_and_the_server_keeps_serving() {
    let mut t = AuthServer::start("").await;
    let acme = t.keys.acme.clone();
    let last = if acme.ends_with('0') { '1' } else { '0' };
    let wrong_secret = format!("Bearer {}{last}", &acme[..acme.len() - 1]);
    let unknown = format!("Bearer sbx_0123456789abcdef_{}", "ab".repeat(32));
    let junk = "x".repeat(10 * 1024);
    let expired_spec = NewKey {
        tenant: "acme".into(),
        roles: roles(&[Role::Route]),
        expires: Some(chrono::Utc::now() + chrono::Duration::seconds(1)),
        rate: None,
    };
    // Expires a second from now: valid when loaded, expired when used.
    let expired = create_key(&t.keys_file, &expired_spec)
        .unwrap()
        .key
        .expose()
        .to_string();
    t.reload().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("no key", None),
        ("Bearer alone", Some(b"Bearer".to_vec())),
        ("Bearer and a space", Some(b"Bearer ".to_vec())),
        ("Basic", Some(b"Basic YWNtZTpodW50ZXIy".to_vec())),
        ("10 KB of junk", Some(junk.into_bytes())),
        ("non-ASCII", Some("Bearer sbx_é_ü".as_bytes().to_vec())),
        ("key without Bearer", Some(acme.clone().into_bytes())),
        ("unknown key", Some(unknown.into_bytes())),
        ("wrong secret", Some(wrong_secret.into_bytes())),
        (
            "expired key",
            Some(format!("Bearer {expired}").into_bytes()),
        ),
    ];
    let n = cases.len() as u64;
    for (what, header) in cases {
        let req = text_request("acme", "What is the capital of Australia?");
        let req = match &header {
            None => Request::new(req),
            Some(h) => with_header(req, h),
        };
        let status = t.router.route(req).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert_eq!(status.message(), REFUSED, "{what}");
        t.still_serves().await;
    }
    // Every service but health: ReportOutcome and Admin too.
    let status = t
        .router
        .report_outcome(outcome("d", MIXTRAL))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = t
        .admin
        .reload(Request::new(proto::ReloadRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let stats = t.stats().await;
    assert_eq!(stats.auth_failures, n + 2);
    t.server.shutdown().await.unwrap();
    // No decision was made for any refused call: only the valid calls between them.
    assert_eq!(read_log(&t.log_dir, "decisions").len(), n as usize);
}

#[tokio::test]
async fn a_key_acts_for_its_own_tenant_and_roles_only() {
    let mut t = AuthServer::start("").await;
    let (acme, route_only, admin) = (
        t.keys.acme.clone(),
        t.keys.acme_route_only.clone(),
        t.keys.admin.clone(),
    );
    // Another tenant: refused. Empty: the key's tenant.
    assert_refused(
        t.route_as(&acme, "globex").await,
        Code::PermissionDenied,
        "acme key as globex",
    );
    let d = t.route_as(&acme, "").await.unwrap();
    t.still_serves().await;

    // Roles: route only cannot report or reload; admin cannot route.
    assert!(t.route_as(&route_only, "acme").await.is_ok());
    assert_refused(
        t.router
            .report_outcome(keyed(outcome(&d.decision_id, primary_id(&d)), &route_only))
            .await,
        Code::PermissionDenied,
        "route-only key reporting",
    );
    assert_refused(
        t.admin
            .reload(keyed(proto::ReloadRequest {}, &route_only))
            .await,
        Code::PermissionDenied,
        "route-only key reloading",
    );
    assert_refused(
        t.admin.stats(keyed(proto::StatsRequest {}, &acme)).await,
        Code::PermissionDenied,
        "router key reading stats",
    );
    assert_refused(
        t.route_as(&admin, "ops").await,
        Code::PermissionDenied,
        "admin key routing",
    );
    t.still_serves().await;
    let reply = t.reload().await.expect("the admin key reloads");
    assert!(reply.policy_version.starts_with("example-2026-11+"));
    let stats = t.stats().await;
    assert_eq!(stats.permission_denied, 5);
    assert_eq!(stats.auth_failures, 0);
    t.server.shutdown().await.unwrap();
    let logged = read_log(&t.log_dir, "decisions");
    let record = logged
        .iter()
        .find(|r| r["decision_id"] == d.decision_id.as_str())
        .expect("logged");
    assert_eq!(record["tenant_id"], "acme", "the key's tenant");
}

#[tokio::test]
async fn an_outcome_for_another_tenants_decision_is_not_found_and_books_nothing() {
    let mut t = AuthServer::start("").await;
    let (acme, globex) = (t.keys.acme.clone(), t.keys.globex.clone());
    let d = t.route_as(&acme, "acme").await.unwrap();
    let report = |key: &str, decision_id: &str| {
        let mut o = outcome(decision_id, primary_id(&d));
        o.attempt = 1;
        o.tokens_in = 100;
        o.tokens_out = 100;
        keyed(o, key)
    };
    let foreign = t
        .router
        .report_outcome(report(&globex, &d.decision_id))
        .await
        .unwrap_err();
    let unknown = t
        .router
        .report_outcome(report(&globex, "0190b7c4-0000-7000-8000-000000000000"))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        foreign.message().replace(&d.decision_id, "<id>"),
        unknown
            .message()
            .replace("0190b7c4-0000-7000-8000-000000000000", "<id>"),
        "exactly as for an unknown decision"
    );
    // Nothing was booked or marked: the owner's first report of attempt 1 books.
    let ack = t
        .router
        .report_outcome(report(&acme, &d.decision_id))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
    assert!(ack.cost_usd > 0.0);
    // And the other tenant still cannot see it, duplicate or not.
    assert_eq!(
        t.router
            .report_outcome(report(&globex, &d.decision_id))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    t.server.shutdown().await.unwrap();
    let outcomes = read_log(&t.log_dir, "outcomes");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0]["tenant_id"], "acme");
}

#[tokio::test]
async fn a_revoked_key_stops_working_after_a_reload_and_a_bad_keys_file_keeps_the_old_keys() {
    let mut t = AuthServer::start("").await;
    let acme = t.keys.acme.clone();
    t.still_serves().await;

    // An invalid keys file: the reload is refused, the old keys keep working.
    let good = std::fs::read_to_string(&t.keys_file).unwrap();
    std::fs::write(&t.keys_file, format!("{good}\n[[keys]]\nid = \"nope\"\n")).unwrap();
    let status = t.reload().await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("keys.toml") && status.message().contains("line"),
        "{status:?}"
    );
    t.still_serves().await;
    std::fs::write(&t.keys_file, &good).unwrap();

    revoke_key(&t.keys_file, &t.keys.acme_id).unwrap();
    t.reload().await.unwrap();
    let status = t.route_as(&acme, "acme").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), REFUSED);
    // The other keys still work.
    let globex = t.keys.globex.clone();
    assert!(t.route_as(&globex, "globex").await.is_ok());
    // (The file watcher may have reloaded the same files too.)
    let stats = t.stats().await;
    assert!(stats.reloads >= 1 && stats.failed_reloads >= 1, "{stats:?}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_watcher_reloads_a_changed_keys_file() {
    let mut t = AuthServer::start("").await;
    let acme = t.keys.acme.clone();
    t.still_serves().await;
    revoke_key(&t.keys_file, &t.keys.acme_id).unwrap();
    // Polled every 2 s, loaded once stable for one more poll.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match t.route_as(&acme, "acme").await {
            Err(s) if s.code() == Code::Unauthenticated => break,
            Ok(_) => {}
            Err(s) => panic!("{s:?}"),
        }
        assert!(Instant::now() < deadline, "the revoked key still works");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    t.server.shutdown().await.unwrap();
}

type ReflectionClient =
    tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient<Channel>;

/// Reflection's ListServices, with `key` if given.
async fn list_services(channel: &Channel, key: Option<&str>) -> Result<Vec<String>, Status> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let mut client = ReflectionClient::new(channel.clone());
    let stream = tokio_stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]);
    let request = match key {
        Some(k) => keyed(stream, k),
        None => Request::new(stream),
    };
    let mut answers = client.server_reflection_info(request).await?.into_inner();
    let answer = answers.message().await?.expect("an answer");
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn health_is_open_and_reflection_follows_the_policy() {
    let mut t = AuthServer::start("").await;
    let health = tonic_health::pb::health_client::HealthClient::new(t.channel.clone());
    for service in ["", "signalbox.v1.Router"] {
        let status = health
            .clone()
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health needs no key")
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    // Default: reflection needs a key (any role).
    let status = list_services(&t.channel, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let names = list_services(&t.channel, Some(&t.keys.acme_route_only))
        .await
        .unwrap();
    assert!(
        names.contains(&"signalbox.v1.Router".to_string()),
        "{names:?}"
    );
    t.still_serves().await;

    // `reflection = "open"`, reloaded in: no key needed; Router still needs one.
    std::fs::write(
        &t.config,
        auth_policy_text(&t.log_dir, "reflection = \"open\"\n"),
    )
    .unwrap();
    t.reload().await.unwrap();
    let names = list_services(&t.channel, None).await.unwrap();
    assert!(
        names.contains(&"signalbox.v1.Admin".to_string()),
        "{names:?}"
    );
    assert_eq!(
        t.router
            .route(text_request("acme", "hello"))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    t.server.shutdown().await.unwrap();
}

/// The delay a RESOURCE_EXHAUSTED status asks for, from its RetryInfo detail, checked against
/// its `retry-after-ms` metadata.
fn retry_delay(status: &Status) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let delay = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a google.rpc.RetryInfo detail");
    let ms: u64 = status
        .metadata()
        .get("retry-after-ms")
        .expect("a retry-after-ms entry")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ms, delay.as_micros().div_ceil(1000) as u64, "{status:?}");
    delay
}

const TENANT_LIMITS: &str = "\n[rate_limits]\ndefault_tenant = { requests_per_sec = 1000.0, burst = 1000 }\n\n[[rate_limits.tenants]]\ntenant = \"acme\"\nrequests_per_sec = 0.5\nburst = 3\n";

#[tokio::test]
async fn a_tenant_over_its_rate_gets_resource_exhausted_with_retry_info() {
    let mut t = AuthServer::start(TENANT_LIMITS).await;
    let (acme, route_only, globex) = (
        t.keys.acme.clone(),
        t.keys.acme_route_only.clone(),
        t.keys.globex.clone(),
    );
    // The tenant's bucket is shared by its keys: 3 in a burst, then refused.
    for key in [&acme, &route_only, &acme] {
        t.route_as(key, "acme").await.unwrap();
    }
    let status = t.route_as(&acme, "acme").await.unwrap_err();
    let delay = retry_delay(&status);
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(2),
        "{delay:?}"
    );
    assert!(status.message().contains("tenant \"acme\""), "{status:?}");
    // Outcomes count against the same bucket, before anything is booked.
    let status = t
        .router
        .report_outcome(keyed(outcome("unknown-decision", MIXTRAL), &acme))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // Another tenant is unaffected.
    for _ in 0..5 {
        t.route_as(&globex, "globex").await.unwrap();
    }
    // After the delay, acme routes again.
    tokio::time::sleep(retry_delay(&t.route_as(&acme, "acme").await.unwrap_err())).await;
    t.route_as(&acme, "acme").await.unwrap();
    assert_eq!(t.stats().await.rate_limited, 3);
    t.server.shutdown().await.unwrap();
    // Refused requests made no decision.
    let decisions = read_log(&t.log_dir, "decisions");
    assert_eq!(
        decisions
            .iter()
            .filter(|r| r["tenant_id"] == "acme")
            .count(),
        4
    );
}

#[tokio::test]
async fn a_keys_own_rate_limit_applies_to_it_alone() {
    let mut t = AuthServer::start("").await;
    let limited = create_key(
        &t.keys_file,
        &NewKey {
            tenant: "acme".into(),
            roles: roles(&[Role::Route]),
            expires: None,
            rate: Some(Rate::new(1.0, 2).unwrap()),
        },
    )
    .unwrap();
    t.reload().await.unwrap();
    let key = limited.key.expose().to_string();
    t.route_as(&key, "acme").await.unwrap();
    t.route_as(&key, "acme").await.unwrap();
    let status = t.route_as(&key, "acme").await.unwrap_err();
    let delay = retry_delay(&status);
    assert!(delay <= Duration::from_secs(1), "{delay:?}");
    assert!(
        status
            .message()
            .contains(&format!("API key {}", limited.id)),
        "{status:?}"
    );
    // The tenant's other key is not limited.
    for _ in 0..5 {
        t.still_serves().await;
    }
    tokio::time::sleep(delay).await;
    t.route_as(&key, "acme").await.unwrap();
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limits_work_without_auth_too() {
    let t = start_example(|text| format!("{text}{TENANT_LIMITS}")).await;
    let mut client = t.client.clone();
    for _ in 0..3 {
        route(&mut client, text_request("acme", "hello there")).await;
    }
    let status = client
        .route(text_request("acme", "hello there"))
        .await
        .unwrap_err();
    retry_delay(&status);
    // Without keys an outcome's tenant is its decision's.
    let d = route(&mut client, text_request("globex", "hello there")).await;
    let _ = route(&mut client, text_request("globex", "hello there")).await;
    assert!(
        client
            .report_outcome(outcome(&d.decision_id, primary_id(&d)))
            .await
            .is_ok()
    );
    route(&mut client, text_request("globex", "hello there")).await;
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reload_to_mode_none_is_refused_where_it_was_not_allowed_at_start() {
    let mut t = AuthServer::start("").await;
    // As if listening on a non-loopback address without --insecure-no-auth.
    t.server.shared().auth.allow_no_auth(false);
    std::fs::write(
        &t.config,
        example_policy_text(&t.log_dir) + "\n[auth]\nmode = \"none\"\n",
    )
    .unwrap();
    let status = t.reload().await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("--insecure-no-auth"),
        "{status:?}"
    );
    t.still_serves().await;
    // Allowed (loopback): mode none serves anonymous callers again.
    t.server.shared().auth.allow_no_auth(true);
    t.reload().await.unwrap();
    route(&mut t.router, text_request("acme", "hello")).await;
    t.server.shutdown().await.unwrap();
}

// ---- The binary ---------------------------------------------------------------------------

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn serving_without_auth_off_loopback_exits_2_before_binding() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("policy.toml");
    std::fs::write(&config, example_policy_text(&tmp.path().join("log"))).unwrap();
    // Refused before anything is bound, so nothing serves on 0.0.0.0.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let all = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("--insecure-no-auth") && all.contains("api_key"),
        "{all}"
    );
    assert!(!all.contains("listening on"), "{all}");
    assert!(!tmp.path().join("log").exists(), "nothing started");
}

#[test]
fn an_invalid_keys_file_at_start_exits_2_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("policy.toml");
    std::fs::write(&config, auth_policy_text(&tmp.path().join("log"), "")).unwrap();
    let keys = tmp.path().join("keys.toml");
    new_key(&keys, "acme", &[Role::Route]);
    let text = std::fs::read_to_string(&keys).unwrap();
    std::fs::write(&keys, text.replace("\"route\"", "\"rout\"")).unwrap();
    let line = text.lines().position(|l| l.trim() == "[[keys]]").unwrap() + 1;
    for args in [
        vec!["check-config", "--config"],
        vec!["serve", "--listen", "127.0.0.1:0", "--config"],
    ] {
        let out = Command::new(BIN).args(&args).arg(&config).output().unwrap();
        let all = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        assert!(
            all.contains(&keys.display().to_string()) && all.contains(&format!("line {line}")),
            "{all}"
        );
        assert!(all.contains("roles"), "{all}");
        assert!(!all.contains("listening on"), "{all}");
    }
    // api_key without a keys file names the key.
    std::fs::remove_file(&keys).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        output_text(&out).contains("keys.toml"),
        "{}",
        output_text(&out)
    );
}

fn keys_cli(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("keys")
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn keys_create_prints_the_key_once_and_stores_only_its_hash_and_revoke_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("sub-dir-less-keys.toml");
    let keys_arg = keys.to_str().unwrap();
    let out = keys_cli(&[
        "create",
        "--keys-file",
        keys_arg,
        "--tenant",
        "acme",
        "--role",
        "route",
        "--role",
        "report",
        "--expires",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the key on stdout: {stdout}");
    let key = lines[0];
    assert!(key.starts_with("sbx_") && key.len() == 85, "{key}");
    let (id, secret) = key["sbx_".len()..].split_once('_').unwrap();
    assert_eq!((id.len(), secret.len()), (16, 64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(id), "{stderr}");
    assert!(
        !stderr.contains(secret),
        "the secret is shown once, on stdout"
    );
    let text = std::fs::read_to_string(&keys).unwrap();
    assert!(!text.contains(secret), "the file holds no secret");
    assert!(text.contains(&signalbox::auth::keys::secret_hash(secret)));
    assert!(
        text.contains("expires = \"2099-01-01T00:00:00Z\""),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The key authenticates against the file.
    let ring = signalbox::auth::keys::load(&keys).unwrap();
    let who = ring
        .authenticate(Some(format!("Bearer {key}").as_bytes()), chrono::Utc::now())
        .unwrap();
    assert_eq!(who.tenant, "acme");

    // Bad arguments: exit 2, nothing written.
    for bad in [
        vec![
            "create",
            "--keys-file",
            keys_arg,
            "--tenant",
            "acme",
            "--role",
            "root",
        ],
        vec!["create", "--keys-file", keys_arg, "--tenant", "acme"],
        vec![
            "create",
            "--keys-file",
            keys_arg,
            "--tenant",
            "acme",
            "--role",
            "route",
            "--expires",
            "2001-01-01T00:00:00Z",
        ],
        vec![
            "create",
            "--keys-file",
            keys_arg,
            "--tenant",
            "acme",
            "--role",
            "route",
            "--expires",
            "soon",
        ],
    ] {
        let out = keys_cli(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", output_text(&out));
        assert!(out.stdout.is_empty(), "{bad:?}");
    }
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), text);

    let out = keys_cli(&["revoke", "--keys-file", keys_arg, "--id", id]);
    assert!(out.status.success(), "{}", output_text(&out));
    let after = std::fs::read_to_string(&keys).unwrap();
    assert!(!after.contains(id), "{after}");
    assert!(signalbox::auth::keys::load(&keys).unwrap().is_empty());
    let out = keys_cli(&["revoke", "--keys-file", keys_arg, "--id", id]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

/// Authenticated traffic (and refused attempts with the same key id) through the binary at
/// debug level: the secret is in no log file and no line the server wrote.
#[test]
fn no_secret_reaches_the_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let config = tmp.path().join("policy.toml");
    std::fs::write(&config, auth_policy_text(&log_dir, "")).unwrap();
    let keys = tmp.path().join("keys.toml");
    let (id, key) = new_key(&keys, "acme", &[Role::Route, Role::Report]);
    let secret = key["sbx_".len() + 17..].to_string();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && let Some(pos) = line.find("listening on ") {
                let _ = tx.send(line[pos + "listening on ".len()..].trim().to_string());
                sent = true;
            }
            lines.push(line);
        }
        lines
    });
    let drain_err = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            panic!("server did not start: {:?}", drain.join());
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = RouterClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        for i in 0..20 {
            let d = client
                .route(keyed(
                    text_request("", &format!("Request {i}: summarise the meeting notes.")),
                    &key,
                ))
                .await
                .unwrap()
                .into_inner();
            client
                .report_outcome(keyed(outcome(&d.decision_id, primary_id(&d)), &key))
                .await
                .unwrap();
        }
        // Refused attempts with the key's id are logged with the id, never a secret.
        let wrong = format!("sbx_{id}_{}", "0".repeat(64));
        for _ in 0..3 {
            let status = client
                .route(keyed(text_request("acme", "hello"), &wrong))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated);
        }
    });
    assert!(sigterm_and_wait(&mut child).success());
    let out = drain.join().unwrap().join("\n");
    let err = drain_err.join().unwrap().join("\n");
    assert!(
        out.contains("API key refused") && out.contains(&id),
        "{out}"
    );
    assert!(!out.contains(&secret) && !err.contains(&secret));
    assert!(!out.contains(&key) && !err.contains(&key));
    // grep -r over the log dir.
    let mut files = 0;
    for entry in std::fs::read_dir(&log_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in the log"
        );
    }
    assert!(files > 0);
    assert_eq!(read_log(&log_dir, "decisions").len(), 20);
    assert!(
        read_log(&log_dir, "decisions")
            .iter()
            .all(|r| r["tenant_id"] == "acme")
    );
}
