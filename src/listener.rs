//! The accept path, plaintext or TLS: one task accepts TCP connections and spawns one handshake
//! per connection (so a slow or silent client never holds up the next accept); completed
//! connections reach tonic through a channel, each wrapped in [`Watched`] (preface and idle
//! timeouts) and holding one of `server.max_connections` permits until it closes.
//!
//! An accept error (out of file descriptors, say) is logged at most once a minute at WARN (the
//! rest at DEBUG) and followed by a pause that doubles from 10 ms to 1 s while errors last, so
//! the loop never spins; a connection over the cap is closed at once, logged the same way.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::server::Connected;

use crate::connection::{Timeouts, Watched};

/// Completed handshakes waiting for tonic to pick them up.
const READY_QUEUE: usize = 64;
/// At most one WARN per this interval for each kind of connection trouble.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The pause after an accept error, doubling while errors last.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// What turns an accepted TCP connection into the stream tonic serves (nothing, or TLS).
pub trait Handshake: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;

    fn handshake(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static;

    /// How long the handshake may take.
    fn timeout(&self) -> Duration;

    /// For the log: "TCP", "TLS".
    fn name(&self) -> &'static str;
}

/// Plaintext: the TCP stream as it is.
pub struct Plain;

impl Handshake for Plain {
    type Stream = TcpStream;

    fn handshake(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = io::Result<TcpStream>> + Send + 'static {
        std::future::ready(Ok(tcp))
    }

    fn timeout(&self) -> Duration {
        Duration::MAX
    }

    fn name(&self) -> &'static str {
        "TCP"
    }
}

/// Connection limits, from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub timeouts: Timeouts,
    pub max_connections: usize,
}

/// The connections for `tonic::transport::Server::serve_with_incoming_shutdown`. Dropping it
/// (tonic does when it stops accepting) closes the listener and abandons handshakes in
/// progress.
pub struct Incoming<S> {
    ready: mpsc::Receiver<Watched<S>>,
    accept: JoinHandle<()>,
}

impl<S> Incoming<S> {
    pub fn new<H: Handshake<Stream = S>>(
        listener: TcpListener,
        handshake: H,
        limits: ConnectionLimits,
    ) -> Incoming<S>
    where
        S: Send + 'static,
    {
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accept = tokio::spawn(accept_loop(listener, Arc::new(handshake), limits, tx));
        Incoming { ready, accept }
    }
}

impl<S> Drop for Incoming<S> {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl<S> tokio_stream::Stream for Incoming<S> {
    type Item = Result<Watched<S>, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.ready.poll_recv(cx).map(|s| s.map(Ok))
    }
}

/// Logs an event at DEBUG every time and at WARN at most once per [`WARN_EVERY`], with how
/// many happened since the last WARN.
pub struct RateLimitedWarn {
    last_warn: Option<Instant>,
    since_warn: u64,
}

impl Default for RateLimitedWarn {
    fn default() -> Self {
        RateLimitedWarn::new()
    }
}

impl RateLimitedWarn {
    pub fn new() -> Self {
        RateLimitedWarn {
            last_warn: None,
            since_warn: 0,
        }
    }

    /// Whether this event should be a WARN, and how many events (this one included) it stands
    /// for.
    pub fn should_warn(&mut self, now: Instant) -> Option<u64> {
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

async fn accept_loop<H: Handshake>(
    listener: TcpListener,
    handshake: Arc<H>,
    limits: ConnectionLimits,
    ready: mpsc::Sender<Watched<H::Stream>>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut handshakes: JoinSet<Result<(), Failed>> = JoinSet::new();
    let mut failures = RateLimitedWarn::new();
    let mut accept_errors = RateLimitedWarn::new();
    let mut over_cap = RateLimitedWarn::new();
    let mut pause = ACCEPT_PAUSE_FIRST;
    let name = handshake.name();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    pause = ACCEPT_PAUSE_FIRST;
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        // Closed at once: the caller sees a reset and retries elsewhere.
                        drop(tcp);
                        match over_cap.should_warn(Instant::now()) {
                            Some(n) => tracing::warn!(
                                %peer,
                                max_connections = limits.max_connections,
                                refused_since_last_warning = n,
                                "connection limit reached: new connections are closed"
                            ),
                            None => tracing::debug!(%peer, "connection over the limit closed"),
                        }
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let handshake = handshake.clone();
                    let ready = ready.clone();
                    let timeouts = limits.timeouts;
                    handshakes.spawn(async move {
                        let timeout = handshake.timeout();
                        match tokio::time::timeout(timeout, handshake.handshake(tcp)).await {
                            Ok(Ok(stream)) => {
                                let conn = Watched::new(stream, timeouts).holding(permit);
                                // Only fails once tonic stopped accepting: drop the connection.
                                let _ = ready.send(conn).await;
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
                        Some(n) => tracing::warn!(
                            error = %e,
                            errors_since_last_warning = n,
                            "accept failed; pausing accepts (more within a minute are logged at DEBUG)"
                        ),
                        None => tracing::debug!(error = %e, "accept failed"),
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                }
            },
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                if let Ok(Err(Failed { peer, error })) = done {
                    match failures.should_warn(Instant::now()) {
                        Some(n) => tracing::warn!(
                            %peer,
                            %error,
                            failed_since_last_warning = n,
                            "{name}: handshake failed (more within a minute are logged at DEBUG)"
                        ),
                        None => tracing::debug!(%peer, %error, "{name}: handshake failed"),
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
    fn failures_warn_at_most_once_a_minute_and_count_the_rest() {
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
