//! `[server.tls]` as the policy loader sees it: files resolved against the config file's
//! directory and read at load time; every unusable file is an error naming its key and path.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, Policy};

const EXAMPLE: &str = include_str!("../../config/signalbox.toml");

/// A CA, a leaf it issued for `localhost` and the leaf's key, plus a key of another pair, as
/// PEM files in `dir`.
fn write_pki(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("other-key.pem"), other.serialize_pem()).unwrap();
    std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
    std::fs::write(
        dir.join("bad-der.pem"),
        "-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
}

/// The example policy with `tls` as its `[server.tls]` section, loaded from `dir/policy.toml`.
fn load_with(dir: &Path, tls: &str) -> Result<Policy, ConfigError> {
    let text = EXAMPLE.replace("\n[log]\n", &format!("\n[server.tls]\n{tls}\n\n[log]\n"));
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    Policy::load(&path)
}

fn error_with(dir: &Path, tls: &str) -> String {
    match load_with(dir, tls) {
        Ok(_) => panic!("[server.tls] {tls:?} should be rejected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tls_files_are_resolved_against_the_config_directory_and_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    write_pki(tmp.path());
    let p = load_with(
        tmp.path(),
        "cert = \"cert.pem\"\nkey = \"key.pem\"\nclient_ca = \"ca.pem\"",
    )
    .unwrap();
    let tls = p.server.tls.expect("tls section");
    assert_eq!(tls.cert, tmp.path().join("cert.pem"));
    assert_eq!(tls.key, tmp.path().join("key.pem"));
    assert_eq!(tls.client_ca, Some(tmp.path().join("ca.pem")));
    assert_eq!(tls.handshake_timeout_secs, 10);
    assert_eq!(tls.watch_secs, 2);
    assert_eq!(
        tls.loaded.server_config.alpn_protocols,
        vec![b"h2".to_vec()]
    );
    assert_eq!(tls.loaded.cert_sha256.len(), 16);

    let plain = Policy::from_toml(EXAMPLE, Path::new("t.toml"), tmp.path()).unwrap();
    assert!(plain.server.tls.is_none(), "no [server.tls]: plaintext");
}

#[test]
fn unusable_tls_files_are_config_errors_naming_the_key_and_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    write_pki(tmp.path());
    let at = |f: &str| -> PathBuf { tmp.path().join(f) };
    let cases = [
        (
            "cert = \"missing.pem\"\nkey = \"key.pem\"",
            "server.tls.cert",
            at("missing.pem"),
            "cannot read",
        ),
        (
            "cert = \"garbage.pem\"\nkey = \"key.pem\"",
            "server.tls.cert",
            at("garbage.pem"),
            "no CERTIFICATE",
        ),
        (
            "cert = \"bad-der.pem\"\nkey = \"key.pem\"",
            "server.tls.cert",
            at("bad-der.pem"),
            "not valid X.509",
        ),
        (
            "cert = \"cert.pem\"\nkey = \"missing-key.pem\"",
            "server.tls.key",
            at("missing-key.pem"),
            "cannot read",
        ),
        (
            "cert = \"cert.pem\"\nkey = \"cert.pem\"",
            "server.tls.key",
            at("cert.pem"),
            "no private key",
        ),
        (
            "cert = \"cert.pem\"\nkey = \"other-key.pem\"",
            "server.tls.key",
            at("other-key.pem"),
            "does not match the certificate",
        ),
        (
            "cert = \"cert.pem\"\nkey = \"key.pem\"\nclient_ca = \"missing-ca.pem\"",
            "server.tls.client_ca",
            at("missing-ca.pem"),
            "cannot read",
        ),
        (
            "cert = \"cert.pem\"\nkey = \"key.pem\"\nclient_ca = \"garbage.pem\"",
            "server.tls.client_ca",
            at("garbage.pem"),
            "no CERTIFICATE",
        ),
        (
            "cert = \"cert.pem\"\nkey = \"key.pem\"\nclient_ca = \"bad-der.pem\"",
            "server.tls.client_ca",
            at("bad-der.pem"),
            "not a usable CA",
        ),
    ];
    for (tls, key, path, why) in cases {
        let e = error_with(tmp.path(), tls);
        assert!(e.contains(&format!("`{key}`")), "{tls:?}: {e}");
        assert!(e.contains(&path.display().to_string()), "{tls:?}: {e}");
        assert!(e.contains(why), "{tls:?}: {e}");
    }
}

#[test]
fn tls_section_keys_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    write_pki(tmp.path());
    let e = error_with(
        tmp.path(),
        "cert = \"cert.pem\"\nkey = \"key.pem\"\nca = \"x\"",
    );
    assert!(e.contains("unknown field `ca`"), "{e}");
    let e = error_with(tmp.path(), "cert = \"cert.pem\"");
    assert!(e.contains("missing field `key`"), "{e}");
    let e = error_with(tmp.path(), "cert = \" \"\nkey = \"key.pem\"");
    assert!(e.contains("`server.tls.cert`: must not be empty"), "{e}");
    let e = error_with(
        tmp.path(),
        "cert = \"cert.pem\"\nkey = \"key.pem\"\nhandshake_timeout_secs = 0",
    );
    assert!(
        e.contains("`server.tls.handshake_timeout_secs`: must be positive"),
        "{e}"
    );
}

#[test]
fn a_rotation_to_an_unusable_pair_keeps_the_previous_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    write_pki(tmp.path());
    let tls = load_with(tmp.path(), "cert = \"cert.pem\"\nkey = \"key.pem\"")
        .unwrap()
        .server
        .tls
        .unwrap();
    let state = super::TlsState::new(&tls);
    let before = state.current().loaded.server_config.clone();
    std::fs::copy(tmp.path().join("other-key.pem"), tmp.path().join("key.pem")).unwrap();
    let e = state.reread().unwrap_err();
    assert_eq!(e.key, "server.tls.key");
    assert!(std::sync::Arc::ptr_eq(
        &before,
        &state.current().loaded.server_config
    ));
}
