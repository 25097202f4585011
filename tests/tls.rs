//! TLS and mTLS with real handshakes: certificates generated here (rcgen), files in a temp dir,
//! the server on port 0, tonic's rustls client. Rotation on disk and through Admin/Reload,
//! slow clients, and config errors from the binary.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use signalbox::proto::admin_client::AdminClient;
use signalbox::proto::router_client::RouterClient;
use signalbox::server::RunningServer;
use tokio::io::AsyncReadExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const BIN: &str = env!("CARGO_BIN_EXE_signalbox");

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names`, as (certificate PEM, key PEM).
    fn issue(
        &self,
        names: &[&str],
        serial: u64,
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server_pair(&self, name: &str, serial: u64) -> (String, String) {
        self.issue(&[name], serial, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    fn client_pair(&self, serial: u64, expired: bool) -> (String, String) {
        self.issue(&[], serial, ExtendedKeyUsagePurpose::ClientAuth, expired)
    }
}

/// Write the server's pair where `[server.tls]` points (a rotation, when the server runs).
fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("server-cert.pem"), cert).unwrap();
    std::fs::write(dir.join("server-key.pem"), key).unwrap();
}

/// The example policy (rules only, log in the temp dir) with a `[server.tls]` section whose
/// files are relative to `dir`, where the policy file is written.
fn tls_policy_file(dir: &Path, extra: &str) -> (PathBuf, String) {
    let text = format!(
        "{}\n[server.tls]\ncert = \"server-cert.pem\"\nkey = \"server-key.pem\"\n{extra}\n",
        example_policy_text(&dir.join("log"))
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

/// A server on port 0 serving `dir/policy.toml` (reloadable), with the `[server.tls]` files
/// in `dir`.
async fn start_tls(dir: &Path, extra: &str) -> RunningServer {
    let (path, _) = tls_policy_file(dir, extra);
    let policy = signalbox::config::Policy::load(&path).expect("policy with TLS loads");
    signalbox::server::start_from_file(policy, path, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("server starts")
}

/// A TLS connection to `addr` trusting only `ca` for `name`, with an optional client pair.
async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    name: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(name);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// Connect and route one request; the error (connect or RPC) as text.
async fn route_over(
    addr: SocketAddr,
    ca: &str,
    name: &str,
    identity: Option<&(String, String)>,
) -> Result<signalbox::proto::RouteDecision, String> {
    let channel = tls_channel(addr, ca, name, identity)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    RouterClient::new(channel)
        .route(text_request("acme", "What is the capital of Australia?"))
        .await
        .map(|r| r.into_inner())
        .map_err(|e| format!("route: {e:?}"))
}

async fn route_on(channel: &Channel) -> Result<signalbox::proto::RouteDecision, tonic::Status> {
    RouterClient::new(channel.clone())
        .route(text_request(
            "acme",
            "Write a Python function that adds two numbers.",
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn route_over_tls_works_and_plaintext_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    write_pair(tmp.path(), &ca.server_pair("localhost", 1));
    let server = start_tls(tmp.path(), "").await;
    let addr = server.local_addr();

    let d = route_over(addr, &ca.pem(), "localhost", None)
        .await
        .expect("TLS route");
    assert!(!d.decision_id.is_empty());
    assert!(d.primary.is_some());

    // Health over the same kind of channel.
    let channel = tls_channel(addr, &ca.pem(), "localhost", None)
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // A plaintext HTTP/2 client gets no answer from the TLS port.
    let plain = async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        RouterClient::new(channel)
            .route(text_request("acme", "hello"))
            .await
            .map_err(|e| e.to_string())
    };
    assert!(plain.await.is_err(), "plaintext must not be served");

    // A client that does not trust the server's CA refuses it.
    let stranger = Ca::new("someone else");
    assert!(
        route_over(addr, &stranger.pem(), "localhost", None)
            .await
            .is_err()
    );
    // Nor does a name the certificate was not issued for pass.
    assert!(
        route_over(addr, &ca.pem(), "other.example", None)
            .await
            .is_err()
    );

    // The server is still fine after those failed handshakes.
    route_over(addr, &ca.pem(), "localhost", None)
        .await
        .expect("TLS route after failed handshakes");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_client_neither_blocks_other_handshakes_nor_stays_past_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    write_pair(tmp.path(), &ca.server_pair("localhost", 1));
    let server = start_tls(tmp.path(), "handshake_timeout_secs = 1").await;
    let addr = server.local_addr();

    // Connects, never says a word.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    route_over(addr, &ca.pem(), "localhost", None)
        .await
        .expect("a handshake while another one hangs");

    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the server closes a handshake that does not finish");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn mtls_refuses_missing_foreign_and_expired_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    write_pair(tmp.path(), &server_ca.server_pair("localhost", 1));
    std::fs::write(tmp.path().join("client-ca.pem"), client_ca.pem()).unwrap();
    let server = start_tls(tmp.path(), "client_ca = \"client-ca.pem\"").await;
    let addr = server.local_addr();
    let server_ca_pem = server_ca.pem();

    let foreign = Ca::new("another client CA").client_pair(2, false);
    let expired = client_ca.client_pair(3, true);
    let valid = client_ca.client_pair(4, false);
    for (what, identity, alert) in [
        ("no client certificate", None, "CertificateRequired"),
        ("a certificate from another CA", Some(&foreign), "UnknownCA"),
        (
            "an expired certificate",
            Some(&expired),
            "CertificateExpired",
        ),
    ] {
        match route_over(addr, &server_ca_pem, "localhost", identity).await {
            Ok(_) => panic!("{what} must be refused"),
            Err(e) => assert!(e.contains(alert), "{what}: {e}"),
        }
    }
    let d = route_over(addr, &server_ca_pem, "localhost", Some(&valid))
        .await
        .expect("a valid client certificate");
    assert!(!d.decision_id.is_empty());
    server.shutdown().await.unwrap();
}

/// Route with a fresh connection trusting only `ca` for `name` until it works, up to `limit`.
async fn until_served(addr: SocketAddr, ca: &str, name: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match route_over(addr, ca, name, None).await {
            Ok(_) => return started.elapsed(),
            Err(e) => assert!(
                started.elapsed() < limit,
                "the rotated certificate was not served within {limit:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_certificate_rotated_on_disk_serves_new_connections_and_keeps_old_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    write_pair(tmp.path(), &old_ca.server_pair("localhost", 1));
    let server = start_tls(tmp.path(), "watch_secs = 1").await;
    let addr = server.local_addr();

    // A connection made before the rotation, trusting only the old CA.
    let before = tls_channel(addr, &old_ca.pem(), "localhost", None)
        .await
        .unwrap();
    route_on(&before).await.expect("before the rotation");

    // A new leaf: another CA, another name, another serial.
    write_pair(tmp.path(), &new_ca.server_pair("rotated.example", 2));
    until_served(
        addr,
        &new_ca.pem(),
        "rotated.example",
        Duration::from_secs(15),
    )
    .await;
    // New connections get the new leaf: trusting only the old CA no longer works...
    let e = route_over(addr, &old_ca.pem(), "localhost", None)
        .await
        .expect_err("the old certificate is no longer presented");
    assert!(e.contains("UnknownIssuer"), "{e}");
    // ...while the connection made before keeps working (it could not reconnect: it trusts
    // only the old CA).
    for _ in 0..3 {
        route_on(&before)
            .await
            .expect("the existing connection survives");
    }

    // A rotation to a pair that does not match: rejected, the current pair keeps serving.
    let (cert, _) = new_ca.server_pair("broken.example", 3);
    let (_, other_key) = new_ca.server_pair("broken.example", 4);
    write_pair(tmp.path(), &(cert, other_key));
    tokio::time::sleep(Duration::from_secs(4)).await;
    route_over(addr, &new_ca.pem(), "rotated.example", None)
        .await
        .expect("the previous pair keeps serving after a bad rotation");
    assert!(
        route_over(addr, &new_ca.pem(), "broken.example", None)
            .await
            .is_err()
    );
    route_on(&before).await.expect("still the old connection");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_reload_reads_the_certificates_again() {
    let tmp = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    write_pair(tmp.path(), &old_ca.server_pair("localhost", 1));
    // Polling off: only the reload can pick the new files up.
    let server = start_tls(tmp.path(), "watch_secs = 0").await;
    let addr = server.local_addr();
    let before = tls_channel(addr, &old_ca.pem(), "localhost", None)
        .await
        .unwrap();

    write_pair(tmp.path(), &new_ca.server_pair("rotated.example", 2));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        route_over(addr, &new_ca.pem(), "rotated.example", None)
            .await
            .is_err(),
        "not picked up before the reload"
    );
    AdminClient::new(before.clone())
        .reload(signalbox::proto::ReloadRequest::default())
        .await
        .expect("reload over the existing TLS connection");
    route_over(addr, &new_ca.pem(), "rotated.example", None)
        .await
        .expect("new connections get the reloaded pair");
    route_on(&before)
        .await
        .expect("the old connection survives");

    // A reload while the pair on disk is broken is rejected as a whole; the pair that was
    // serving keeps serving.
    std::fs::write(tmp.path().join("server-key.pem"), "garbage").unwrap();
    let e = AdminClient::new(before.clone())
        .reload(signalbox::proto::ReloadRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("server.tls.key"), "{}", e.message());
    route_over(addr, &new_ca.pem(), "rotated.example", None)
        .await
        .expect("still serving the last good pair");

    // Switching to plaintext needs a restart.
    write_pair(tmp.path(), &new_ca.server_pair("rotated.example", 3));
    std::fs::write(
        tmp.path().join("policy.toml"),
        example_policy_text(&tmp.path().join("log")),
    )
    .unwrap();
    let e = AdminClient::new(before.clone())
        .reload(signalbox::proto::ReloadRequest::default())
        .await
        .unwrap_err();
    assert!(
        e.message().contains("server.tls was removed"),
        "{}",
        e.message()
    );
    route_on(&before).await.expect("still TLS");
    server.shutdown().await.unwrap();
}

#[test]
fn check_config_and_serve_exit_2_naming_an_unusable_tls_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    write_pair(tmp.path(), &ca.server_pair("localhost", 1));
    let (config, _) = tls_policy_file(tmp.path(), "client_ca = \"missing-ca.pem\"");
    let missing = tmp.path().join("missing-ca.pem");
    for args in [
        vec!["check-config", "--config"],
        vec!["serve", "--listen", "127.0.0.1:0", "--config"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .arg(&config)
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        assert!(all.contains("server.tls.client_ca"), "{all}");
        assert!(all.contains(&missing.display().to_string()), "{all}");
        assert!(!all.contains("listening on"), "{all}");
    }
    // With the CA in place the same file is valid.
    std::fs::write(&missing, ca.pem()).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_drives_an_mtls_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    write_pair(tmp.path(), &server_ca.server_pair("localhost", 1));
    std::fs::write(tmp.path().join("server-ca.pem"), server_ca.pem()).unwrap();
    std::fs::write(tmp.path().join("client-ca.pem"), client_ca.pem()).unwrap();
    let (cert, key) = client_ca.client_pair(2, false);
    std::fs::write(tmp.path().join("client-cert.pem"), cert).unwrap();
    std::fs::write(tmp.path().join("client-key.pem"), key).unwrap();
    let server = start_tls(tmp.path(), "client_ca = \"client-ca.pem\"").await;
    let addr = format!("https://{}", server.local_addr());
    let dir = tmp.path().to_path_buf();
    let run = move |mtls: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_signalbox-loadgen"));
        cmd.args(["--addr", &addr, "--duration", "0.5", "--warmup", "0.2"])
            .args([
                "--concurrency",
                "2",
                "--tls-domain",
                "localhost",
                "--tls-ca",
            ])
            .arg(dir.join("server-ca.pem"));
        if mtls {
            cmd.arg("--tls-cert")
                .arg(dir.join("client-cert.pem"))
                .arg("--tls-key")
                .arg(dir.join("client-key.pem"));
        }
        cmd.output().unwrap()
    };
    let (with_cert, without) = tokio::task::spawn_blocking(move || (run(true), run(false)))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&with_cert.stdout);
    assert!(with_cert.status.success(), "{with_cert:?}");
    assert!(stdout.contains("errors=0"), "{stdout}");
    assert!(!stdout.contains("decisions=0 "), "{stdout}");
    assert!(
        !without.status.success(),
        "no client certificate: {without:?}"
    );
    server.shutdown().await.unwrap();
}

/// Whether python3 with grpcio and grpcio-tools is installed (`scripts/test` installs them; in
/// CI a missing one is a failure, not a skip).
fn python_grpc() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI: python3 with grpcio and grpcio-tools is required (scripts/test installs them)"
    );
    ok
}

/// The Python example (examples/python/route.py, grpcio) over TLS with an API key: routes and
/// reports an outcome, with the tenant taken from the key.
#[tokio::test]
async fn the_python_example_routes_over_tls_with_an_api_key() {
    use signalbox::auth::keys::{NewKey, create_key};
    use signalbox::auth::{Role, Roles};
    if !python_grpc() {
        eprintln!("skipped: python3 with grpcio and grpcio-tools not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("python-test-ca");
    write_pair(tmp.path(), &ca.server_pair("localhost", 7));
    std::fs::write(tmp.path().join("ca.pem"), ca.pem()).unwrap();
    let keys = tmp.path().join("keys.toml");
    let created = create_key(
        &keys,
        &NewKey {
            tenant: "acme".into(),
            roles: Roles::NONE.with(Role::Route).with(Role::Report),
            expires: None,
            rate: None,
        },
    )
    .unwrap();
    let server = start_tls(
        tmp.path(),
        "[auth]\nmode = \"api_key\"\nkeys_file = \"keys.toml\"",
    )
    .await;
    let root = env!("CARGO_MANIFEST_DIR");
    let stubs = tmp.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let generated = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(format!("{root}/proto"))
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg("signalbox/v1/router.proto")
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let port = server.local_addr().port();
    let key = created.key.expose().to_string();
    let ca_path = tmp.path().join("ca.pem");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(format!("{root}/examples/python/route.py"))
            .arg(format!("localhost:{port}"))
            .arg("--ca")
            .arg(&ca_path)
            .args(["--tenant", ""])
            .env("PYTHONPATH", &stubs)
            .env("SIGNALBOX_API_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("primary: "), "{stdout}");
    assert!(stdout.contains("booked cost: "), "{stdout}");
    server.shutdown().await.unwrap();
}
