//! Per-connection hygiene, below HTTP/2: a connection that has not sent the HTTP/2 preface
//! within the handshake timeout, or that has sent no request (a HEADERS frame) within the idle
//! timeout after it, is closed. Keepalive PINGs, SETTINGS and WINDOW_UPDATEs do not count, so a
//! peer that only sent the preface, or only answers pings, is closed too.
//!
//! A connection that has made a request is never closed here: closing it below HTTP/2 could
//! race a new request, which the client would see fail. Such connections are recycled
//! gracefully instead (tonic's `max_connection_age`: GOAWAY, then the client reconnects), and
//! dead peers are found by HTTP/2 keepalive PINGs.
//!
//! [`Watched`] wraps the connection's byte stream (plain TCP, or TLS after its handshake) and
//! follows the client's HTTP/2 frame headers as they are read; it never buffers or alters a
//! byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

/// A HEADERS frame: a request (RFC 9113 §6.2).
fn is_request(frame_type: u8) -> bool {
    frame_type == 0x1
}

/// Where the reader is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parse {
    /// Bytes of the preface still to come.
    Preface(usize),
    /// A frame header, `have` bytes of it read so far.
    Header {
        buf: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    /// Payload bytes of the current frame still to come.
    Payload(usize),
}

/// Timeouts of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From accept until the preface has been read.
    pub handshake: Duration,
    /// Without a first request, after the preface.
    pub idle: Duration,
}

/// A connection's byte stream, closed (reads fail with `TimedOut`) past its timeouts.
pub struct Watched<IO> {
    io: IO,
    timeouts: Timeouts,
    parse: Parse,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
    /// A request came: no deadline from now on.
    served: bool,
    /// The connection's slot under `server.max_connections`, given back when it closes.
    _slot: Option<OwnedSemaphorePermit>,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, timeouts: Timeouts) -> Watched<IO> {
        Watched {
            io,
            timeouts,
            parse: Parse::Preface(PREFACE_LEN),
            deadline: Box::pin(tokio::time::sleep(timeouts.handshake)),
            expired: false,
            served: false,
            _slot: None,
        }
    }

    /// The same, holding `slot` until the connection is dropped.
    pub fn holding(self, slot: OwnedSemaphorePermit) -> Watched<IO> {
        Watched {
            _slot: Some(slot),
            ..self
        }
    }

    /// Follow the frame headers in `bytes` (just read); true when the preface completed (the
    /// idle deadline starts). Sets `served` at the first request.
    fn observe(&mut self, mut bytes: &[u8]) -> bool {
        let mut active = false;
        while !bytes.is_empty() {
            match &mut self.parse {
                Parse::Preface(left) => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.parse = Parse::Header {
                            buf: [0; FRAME_HEADER_LEN],
                            have: 0,
                        };
                        active = true;
                    }
                }
                Parse::Header { buf, have } => {
                    let n = (FRAME_HEADER_LEN - *have).min(bytes.len());
                    buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == FRAME_HEADER_LEN {
                        let len = usize::from(buf[0]) << 16
                            | usize::from(buf[1]) << 8
                            | usize::from(buf[2]);
                        self.served |= is_request(buf[3]);
                        self.parse = if len == 0 {
                            Parse::Header {
                                buf: [0; FRAME_HEADER_LEN],
                                have: 0,
                            }
                        } else {
                            Parse::Payload(len)
                        };
                    }
                }
                Parse::Payload(left) => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.parse = Parse::Header {
                            buf: [0; FRAME_HEADER_LEN],
                            have: 0,
                        };
                    }
                }
            }
        }
        active
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if this.observe(read) {
                    this.deadline
                        .as_mut()
                        .reset(Instant::now() + this.timeouts.idle);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.served => Poll::Pending,
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.expired = true;
                    let what = if matches!(this.parse, Parse::Preface(_)) {
                        "no HTTP/2 preface within the handshake timeout"
                    } else {
                        "idle: no request within the idle timeout"
                    };
                    tracing::debug!("closing connection: {what}");
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: Connected> Connected for Watched<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn watched() -> Watched<tokio::io::DuplexStream> {
        Watched::new(
            tokio::io::duplex(64).0,
            Timeouts {
                handshake: Duration::from_secs(1),
                idle: Duration::from_secs(1),
            },
        )
    }

    #[tokio::test]
    async fn frames_are_followed_across_any_split_of_the_bytes() {
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(0x4, &[0; 6])); // SETTINGS
        stream.extend(frame(0x6, &[7; 8])); // PING
        stream.extend(frame(0x1, &[1; 300])); // HEADERS
        stream.extend(frame(0x8, &[0; 4])); // WINDOW_UPDATE
        for chunk in [1, 2, 5, 9, 10, 64, stream.len()] {
            let mut w = watched();
            let mut served_after = None;
            for (i, piece) in stream.chunks(chunk).enumerate() {
                w.observe(piece);
                if w.served && served_after.is_none() {
                    served_after = Some((i + 1) * chunk);
                }
            }
            // Served from the HEADERS frame's header on, not before (24 + 15 + 17 bytes precede it).
            let at = served_after.expect("the HEADERS frame is seen");
            assert!(
                at >= 24 + 15 + 17 + 9,
                "chunk {chunk}: served after {at} bytes"
            );
            assert_eq!(
                w.parse,
                Parse::Header {
                    buf: [0; FRAME_HEADER_LEN],
                    have: 0
                },
                "chunk {chunk}"
            );
        }
        let mut w = watched();
        assert!(w.observe(PREFACE), "the preface completes");
        w.observe(&frame(0x6, &[0; 8]));
        w.observe(&frame(0x4, &[]));
        w.observe(&frame(0x0, b"data"));
        assert!(!w.served, "PING, SETTINGS and DATA are not requests");
        w.observe(&frame(0x1, b"hdrs"));
        assert!(w.served, "HEADERS is");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_before_the_preface_and_pings_only_after_it_time_out() {
        let timeouts = Timeouts {
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        };
        // Nothing sent: closed after the handshake timeout.
        let (client, server) = tokio::io::duplex(1024);
        let mut w = Watched::new(server, timeouts);
        let started = Instant::now();
        let err = w.read(&mut [0; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 10);
        drop(client);

        // The preface, then only pings: closed an idle timeout after the preface.
        let (mut client, server) = tokio::io::duplex(1024);
        let mut w = Watched::new(server, timeouts);
        client.write_all(PREFACE).await.unwrap();
        let started = Instant::now();
        let mut buf = [0; 256];
        assert_eq!(w.read(&mut buf).await.unwrap(), PREFACE_LEN);
        let pinger = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if client.write_all(&frame(0x6, &[0; 8])).await.is_err() {
                    break;
                }
            }
        });
        let err = loop {
            match w.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 60);
        pinger.abort();

        // After a request, never closed here, however long it stays quiet.
        let (mut client, server) = tokio::io::duplex(1024);
        let mut w = Watched::new(server, timeouts);
        client.write_all(PREFACE).await.unwrap();
        assert_eq!(w.read(&mut buf).await.unwrap(), PREFACE_LEN);
        client.write_all(&frame(0x1, &[0; 10])).await.unwrap();
        assert!(w.read(&mut buf).await.unwrap() > 0);
        let quiet = tokio::time::timeout(Duration::from_secs(3600), w.read(&mut buf)).await;
        assert!(
            quiet.is_err(),
            "still open (and reading) after an hour: {quiet:?}"
        );
    }
}
