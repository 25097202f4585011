//! The TLS handshake of the accept path ([`crate::listener`]): each connection is handshaken
//! with the configuration current at that moment (so rotated certificates serve new
//! connections), bounded by `server.tls.handshake_timeout_secs`.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::TlsState;
use crate::listener::Handshake;

/// TLS over the accepted TCP connection. The stream implements tonic's `Connected`, so
/// `Request::remote_addr` and `Request::peer_certs` work.
pub struct TlsHandshake {
    state: Arc<TlsState>,
}

impl TlsHandshake {
    /// Handshakes with the configuration `state` holds at each accept; logs what is served.
    pub fn new(state: Arc<TlsState>) -> TlsHandshake {
        let current = state.current();
        let client_ca = current
            .client_ca
            .as_deref()
            .map_or(String::new(), |p| p.display().to_string());
        let what = if current.client_ca.is_some() {
            "mTLS, client certificates required"
        } else {
            "TLS"
        };
        tracing::info!(
            cert = %current.cert.display(),
            cert_sha256 = %current.loaded.cert_sha256,
            %client_ca,
            "TLS: serving {what}"
        );
        TlsHandshake { state }
    }
}

impl Handshake for TlsHandshake {
    type Stream = TlsStream<TcpStream>;

    fn handshake(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = io::Result<TlsStream<TcpStream>>> + Send + 'static {
        let acceptor = TlsAcceptor::from(self.state.current().loaded.server_config.clone());
        acceptor.accept(tcp)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.state.current().handshake_timeout_secs)
    }

    fn name(&self) -> &'static str {
        "TLS"
    }
}
