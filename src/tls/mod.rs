//! TLS and mTLS for the gRPC port (`[server.tls]`): the certificate files are read into a
//! rustls [`ServerConfig`] (ring provider, ALPN `h2`) when the policy is loaded, so a missing or
//! invalid file is a config error naming it. While serving, [`TlsState`] holds the current
//! configuration behind an `ArcSwap`: each new handshake takes the current one, so a rotation
//! (the files changing on disk, polled by [`watch`], or a policy reload) applies to the next
//! connection and never touches the established ones. A rotation to files that do not load is
//! logged at ERROR and the previous pair keeps serving. The accept path is [`incoming`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use sha2::Digest;

pub mod incoming;
#[cfg(test)]
mod tests;

pub use incoming::TlsHandshake;

/// A TLS file that cannot be used: the policy key naming it, its path, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{key}`: {}: {message}", path.display())]
pub struct TlsFileError {
    pub key: &'static str,
    pub path: PathBuf,
    pub message: String,
}

const CERT_KEY: &str = "server.tls.cert";
const KEY_KEY: &str = "server.tls.key";
const CA_KEY: &str = "server.tls.client_ca";

/// The files of `[server.tls]`, resolved.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: Option<&'a Path>,
}

impl<'a> From<&'a TlsPolicy> for TlsFiles<'a> {
    fn from(p: &'a TlsPolicy) -> Self {
        TlsFiles {
            cert: &p.cert,
            key: &p.key,
            client_ca: p.client_ca.as_deref(),
        }
    }
}

/// The crypto provider: ring (aws-lc-rs, rustls' default, needs a C/cmake build).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| TlsFileError {
        key,
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })
}

/// Every `CERTIFICATE` block of a PEM file, in order.
fn pem_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let fail = |message: String| TlsFileError {
        key,
        path: path.to_path_buf(),
        message,
    };
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no CERTIFICATE block in the PEM file".into()));
    }
    Ok(certs)
}

/// A server configuration built from the files, and which leaf certificate it presents.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub server_config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate (hex, first 16 digits): what the logs show to tell one
    /// certificate from the next.
    pub cert_sha256: String,
}

/// Read and check the certificate chain, its private key and the optional client CA bundle,
/// and build the server configuration: TLS 1.2 and 1.3, ALPN `h2`, and with a client CA a
/// client certificate required and verified against it.
pub fn load(files: TlsFiles<'_>) -> Result<Loaded, TlsFileError> {
    let provider = provider();
    let cert_error = |message: String| TlsFileError {
        key: CERT_KEY,
        path: files.cert.to_path_buf(),
        message,
    };
    let key_error = |message: String| TlsFileError {
        key: KEY_KEY,
        path: files.key.to_path_buf(),
        message,
    };

    let chain = pem_certificates(CERT_KEY, files.cert)?;
    for (i, cert) in chain.iter().enumerate() {
        ParsedCertificate::try_from(cert)
            .map_err(|e| cert_error(format!("certificate {} is not valid X.509: {e}", i + 1)))?;
    }
    let key_pem = read(KEY_KEY, files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        key_error(format!(
            "no private key (PKCS#8, PKCS#1 or SEC1 PEM block) found: {e}"
        ))
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(format!("unusable private key: {e}")))?;
    let cert_sha256 = chain.first().map_or(String::new(), |leaf| {
        sha2::Sha256::digest(leaf.as_ref())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    });
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(key_error(format!(
                "does not match the certificate in {}",
                files.cert.display()
            )));
        }
        Err(e) => return Err(cert_error(format!("unusable certificate: {e}"))),
    }

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_error(format!("TLS configuration: {e}")))?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_error = |message: String| TlsFileError {
                key: CA_KEY,
                path: ca.to_path_buf(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for (i, cert) in pem_certificates(CA_KEY, ca)?.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    ca_error(format!("certificate {} is not a usable CA: {e}", i + 1))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ca_error(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        server_config: Arc::new(config),
        cert_sha256,
    })
}

/// `[server.tls]`, with the files already read and checked into a rustls configuration.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Set: mTLS, a client certificate issued by this CA bundle is required.
    pub client_ca: Option<PathBuf>,
    pub handshake_timeout_secs: u64,
    pub watch_secs: u64,
    /// The rustls configuration built from the files when the policy was loaded
    /// ([`load`]).
    pub loaded: Loaded,
}

/// The running TLS configuration, swapped whole: files, settings and the rustls configuration
/// built from them.
pub struct TlsState {
    live: ArcSwap<TlsPolicy>,
    /// Serializes the watcher's re-reads and the installs of reloaded policies, so an older
    /// read never replaces a newer one.
    swap: parking_lot::Mutex<()>,
}

impl TlsState {
    pub fn new(policy: &TlsPolicy) -> TlsState {
        TlsState {
            live: ArcSwap::from_pointee(policy.clone()),
            swap: parking_lot::Mutex::new(()),
        }
    }

    /// What the next handshake uses.
    pub fn current(&self) -> Arc<TlsPolicy> {
        self.live.load_full()
    }

    /// Serve a reloaded policy's TLS files (already loaded and validated with it) from the next
    /// handshake on.
    pub fn install(&self, policy: &TlsPolicy) {
        let _one_at_a_time = self.swap.lock();
        self.live.store(Arc::new(policy.clone()));
        tracing::info!(
            cert = %policy.cert.display(),
            cert_sha256 = %policy.loaded.cert_sha256,
            "TLS: certificate from the reloaded policy serves new connections"
        );
    }

    /// Read the current files again; on success new handshakes get them, on failure the
    /// previous configuration keeps serving.
    pub fn reread(&self) -> Result<(), TlsFileError> {
        let _one_at_a_time = self.swap.lock();
        let current = self.live.load_full();
        let loaded = load(TlsFiles::from(current.as_ref()))?;
        let next = TlsPolicy {
            loaded,
            ..current.as_ref().clone()
        };
        tracing::info!(
            cert = %next.cert.display(),
            cert_sha256 = %next.loaded.cert_sha256,
            "TLS: certificate files reloaded; new connections get them"
        );
        self.live.store(Arc::new(next));
        Ok(())
    }
}

type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// Modification times and sizes of the certificate, key and client CA files.
fn fingerprint(policy: &TlsPolicy) -> Fingerprint {
    std::iter::once(&policy.cert)
        .chain(std::iter::once(&policy.key))
        .chain(policy.client_ca.as_ref())
        .map(|p| {
            let m = std::fs::metadata(p).ok();
            (
                p.clone(),
                m.as_ref().and_then(|m| m.modified().ok()),
                m.map_or(0, |m| m.len()),
            )
        })
        .collect()
}

/// Poll the TLS files every `server.tls.watch_secs` and load them once a change has been stable
/// for one more poll (a certificate and its key are seldom written at the same instant). A
/// change that does not load is logged at ERROR and not retried until the files change again.
pub async fn watch(state: Arc<TlsState>) {
    let mut seen = fingerprint(&state.current());
    let mut pending: Option<Fingerprint> = None;
    loop {
        let secs = state.current().watch_secs;
        tokio::time::sleep(Duration::from_secs(secs.max(1))).await;
        if secs == 0 {
            continue;
        }
        let now = fingerprint(&state.current());
        if now == seen {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            pending = Some(now);
            continue;
        }
        tracing::info!("TLS: certificate files changed on disk: reloading them");
        let reread = {
            let state = state.clone();
            tokio::task::spawn_blocking(move || state.reread()).await
        };
        match reread {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(
                error = %e,
                "TLS: certificate rotation rejected; the previous certificate keeps serving"
            ),
            Err(e) => tracing::error!(error = %e, "TLS: certificate reload task failed"),
        }
        seen = fingerprint(&state.current());
        pending = None;
    }
}
