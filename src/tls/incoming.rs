//! The TLS accept path: a task accepts TCP connections and spawns one handshake per connection
//! (so a slow or silent client never holds up the next accept), each bounded by
//! `server.tls.handshake_timeout_secs`; completed streams reach tonic through a channel.
//! Failed handshakes are logged at DEBUG, with at most one WARN a minute, so a scanner cannot
//! flood the log; they never stop the server.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::TlsState;

/// Completed handshakes waiting for tonic to pick them up.
const READY_QUEUE: usize = 64;

/// At most one WARN per this interval for failed handshakes (and for accept errors); the rest
/// are logged at DEBUG.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// After an accept error (e.g. out of file descriptors), wait this long before the next accept.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// TLS connections for `tonic::transport::Server::serve_with_incoming_shutdown`. Each item is a
/// `TlsStream<TcpStream>`, which implements tonic's `Connected` (so `Request::remote_addr` and
/// `Request::peer_certs` work). Dropping it (tonic does when it stops accepting) closes the
/// listener, abandons handshakes in progress and stops the certificate watcher.
pub struct TlsIncoming {
    ready: mpsc::Receiver<TlsStream<TcpStream>>,
    accept: JoinHandle<()>,
    watcher: JoinHandle<()>,
}

impl TlsIncoming {
    /// Accept TLS connections on `listener` with the configuration `state` holds at each
    /// handshake, and watch its files for rotation.
    pub fn new(listener: TcpListener, state: Arc<TlsState>) -> TlsIncoming {
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
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let watcher = tokio::spawn(super::watch(state.clone()));
        let accept = tokio::spawn(accept_loop(listener, state, tx));
        TlsIncoming {
            ready,
            accept,
            watcher,
        }
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accept.abort();
        self.watcher.abort();
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = Result<TlsStream<TcpStream>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.ready.poll_recv(cx).map(|s| s.map(Ok))
    }
}

/// Logs an event at DEBUG every time and at WARN at most once per [`WARN_EVERY`], with how
/// many happened since the last WARN.
struct RateLimitedWarn {
    last_warn: Option<Instant>,
    since_warn: u64,
}

impl RateLimitedWarn {
    fn new() -> Self {
        RateLimitedWarn {
            last_warn: None,
            since_warn: 0,
        }
    }

    /// Whether this event should be a WARN, and how many events (this one included) it stands
    /// for.
    fn should_warn(&mut self, now: Instant) -> Option<u64> {
        self.since_warn += 1;
        if self
            .last_warn
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            return None;
        }
        self.last_warn = Some(now);
        Some(std::mem::take(&mut self.since_warn))
    }
}

/// Why a handshake did not complete.
struct Failed {
    peer: SocketAddr,
    error: String,
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<TlsState>,
    ready: mpsc::Sender<TlsStream<TcpStream>>,
) {
    let mut handshakes: JoinSet<Result<(), Failed>> = JoinSet::new();
    let mut failures = RateLimitedWarn::new();
    let mut accept_errors = RateLimitedWarn::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let tls = state.current();
                    let acceptor = TlsAcceptor::from(tls.loaded.server_config.clone());
                    let timeout = Duration::from_secs(tls.handshake_timeout_secs);
                    let ready = ready.clone();
                    handshakes.spawn(async move {
                        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                // Only fails once tonic stopped accepting: drop the connection.
                                let _ = ready.send(stream).await;
                                Ok(())
                            }
                            Ok(Err(e)) => Err(Failed { peer, error: e.to_string() }),
                            Err(_) => Err(Failed {
                                peer,
                                error: format!("no handshake within {}s", timeout.as_secs()),
                            }),
                        }
                    });
                }
                Err(e) => {
                    match accept_errors.should_warn(Instant::now()) {
                        Some(n) => tracing::warn!(error = %e, errors = n, "TLS: accept failed"),
                        None => tracing::debug!(error = %e, "TLS: accept failed"),
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                if let Ok(Err(Failed { peer, error })) = done {
                    match failures.should_warn(Instant::now()) {
                        Some(n) => tracing::warn!(
                            %peer,
                            %error,
                            failed_since_last_warning = n,
                            "TLS: handshake failed (more within a minute are logged at DEBUG)"
                        ),
                        None => tracing::debug!(%peer, %error, "TLS: handshake failed"),
                    }
                }
            },
            () = ready.closed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_handshakes_warn_at_most_once_a_minute_and_count_the_rest() {
        let mut w = RateLimitedWarn::new();
        let t0 = Instant::now();
        assert_eq!(w.should_warn(t0), Some(1));
        for s in 1..=59 {
            assert_eq!(w.should_warn(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(w.should_warn(t0 + Duration::from_secs(60)), Some(60));
        assert_eq!(w.should_warn(t0 + Duration::from_secs(61)), None);
    }
}
