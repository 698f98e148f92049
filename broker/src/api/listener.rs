//! The API's listener: accepts TCP connections within a cap, gives each a bounded time to finish
//! TLS and to start a request, and serves it with hyper (HTTP/2 if ALPN chose it, else HTTP/1.1).
//!
//! Its own module because this loop is the API's first line against strangers: anyone who can
//! reach the port can open connections, each a file descriptor and a task, so everything it lets
//! a connection hold is bounded here. Over `api.max_connections`, connections are not accepted
//! and wait in the kernel's listen backlog (128; past it the kernel drops their SYNs and clients
//! send them again): they cost this process nothing, are served in order as slots free (the
//! timeouts below bound how long an idle one holds a slot), and a client sees a slow connect
//! rather than a reset it cannot tell from a failure. Accepting and closing them at once would
//! spend a descriptor and CPU on each, and turn away real clients as often as idle ones. An
//! accept that fails (out of file descriptors or memory) is retried after a pause growing from
//! 10 ms to 1 s, logged once a minute at most: retried at once it fails again at once, at full
//! CPU.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use backon::{BackoffBuilder, ExponentialBuilder};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::ApiSection;

/// Pauses after a failed accept: 10 ms, doubling to 1 s, until an accept succeeds.
const ACCEPT_PAUSES: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(10))
    .with_max_delay(Duration::from_secs(1))
    .with_factor(2.0)
    .without_max_times();
/// A condition that recurs (accepts failing, the cap reached) is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// HTTP/2 connections are pinged this often when idle, so a peer that vanished without closing
/// frees its slot (hyper closes the connection when a ping goes unanswered for 20 s).
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// The HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`): a client that has not sent
/// that much has not started, and hyper waits for it without a deadline of its own.
const H2_PREFACE_LEN: usize = 24;

/// What one connection may hold, from `[api]`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
}

impl From<&ApiSection> for Limits {
    fn from(api: &ApiSection) -> Self {
        Self {
            max_connections: api.max_connections,
            handshake_timeout: api.handshake_timeout(),
            header_timeout: api.header_timeout(),
        }
    }
}

/// What every connection's task shares.
struct Server {
    acceptor: TlsAcceptor,
    router: Router,
    limits: Limits,
    /// HTTP/1.1, with hyper's header read timeout: it runs from the moment the connection waits
    /// for a request's head (after TLS, after each response) until the head is complete.
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

/// Serves `router` on `listener` until `stop` changes.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let mut http1 = auto::Builder::new(TokioExecutor::new()).http1_only();
    http1
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut http2 = auto::Builder::new(TokioExecutor::new()).http2_only();
    http2
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL);
    let server = Arc::new(Server {
        acceptor: TlsAcceptor::from(tls),
        router,
        limits,
        http1,
        http2,
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut pauses = ACCEPT_PAUSES.build();
    let mut failures = Throttle::default();
    let mut full = Throttle::default();
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(since) = full.hit(Instant::now()) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        times_since_last_warning = since,
                        "api at its connection limit; new connections wait in the listen backlog"
                    );
                }
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => slot,
                    _ = stop.changed() => return,
                };
                slot.expect("the semaphore is never closed")
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => {
                tracing::debug!(%error, "api connection closed before it was accepted");
                continue;
            }
            Err(error) => {
                if let Some(since) = failures.hit(Instant::now()) {
                    tracing::warn!(
                        %error,
                        failures_since_last_warning = since,
                        "api cannot accept connections; pausing accepts (10 ms growing to 1 s) until one succeeds"
                    );
                }
                let pause = pauses.next().expect("pauses never run out");
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        pauses = ACCEPT_PAUSES.build();
        // Small JSON replies would otherwise wait on Nagle and delayed acks.
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(server.clone(), stream, peer, slot));
    }
}

/// One connection, holding its slot until it ends.
async fn serve(
    server: Arc<Server>,
    stream: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    let limits = server.limits;
    let tls = match tokio::time::timeout(limits.handshake_timeout, server.acceptor.accept(stream))
        .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "api tls handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "api tls handshake timed out; connection closed");
            return;
        }
    };
    let service = TowerToHyperService::new(server.router.clone());
    // RFC 9113 has HTTP/2 over TLS chosen by ALPN alone; anything else is HTTP/1.1.
    let result = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let started = Arc::new(AtomicBool::new(false));
        let io = Counted {
            inner: tls,
            left: H2_PREFACE_LEN,
            reached: started.clone(),
        };
        let connection = server.http2.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            result = &mut connection => result,
            () = tokio::time::sleep(limits.header_timeout) => {
                if !started.load(Ordering::Acquire) {
                    tracing::debug!(%peer, "api http/2 client sent no preface in time; connection closed");
                    return;
                }
                connection.await
            }
        }
    } else {
        server
            .http1
            .serve_connection(TokioIo::new(tls), service)
            .await
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "api connection ended with an error");
    }
}

/// Errors of the one connection being accepted (its peer gave up first): the next accept can
/// follow at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Lets a recurring condition be logged once, then at most once every [`LOG_EVERY`].
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    since: u64,
}

impl Throttle {
    /// Some(how many times it recurred unlogged since the last time) when it is to be logged now.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < LOG_EVERY => {
                self.since += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.since))
            }
        }
    }
}

/// A stream that sets `reached` once its peer has sent `left` bytes.
struct Counted<S> {
    inner: S,
    left: usize,
    reached: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.left > 0 {
            let read = buf.filled().len() - before;
            self.left = self.left.saturating_sub(read);
            if self.left == 0 {
                self.reached.store(true, Ordering::Release);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_pauses_double_from_10_ms_to_1_s_and_never_run_out() {
        let pauses: Vec<u128> = ACCEPT_PAUSES
            .build()
            .take(10)
            .map(|d| d.as_millis())
            .collect();
        let expected = [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000];
        // backon's factor is an f32: 40 ms may come out as 39.
        let near = pauses.iter().zip(expected).all(|(p, e)| p.abs_diff(e) <= 1);
        assert!(near, "{pauses:?}");
    }

    #[test]
    fn a_recurring_condition_is_logged_once_a_minute_with_its_count() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert_eq!(throttle.hit(start), Some(0));
        for i in 1..=100 {
            assert_eq!(throttle.hit(start + Duration::from_millis(i)), None);
        }
        assert_eq!(throttle.hit(start + LOG_EVERY), Some(100));
        assert_eq!(throttle.hit(start + LOG_EVERY), None);
    }

    #[test]
    fn only_a_peers_own_failure_is_retried_at_once() {
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
        ] {
            assert!(is_connection_error(&io::Error::from(kind)));
        }
        // EMFILE, ENFILE, ENOBUFS and ENOMEM: the process or the system ran out.
        for errno in [24, 23, 105, 12] {
            assert!(!is_connection_error(&io::Error::from_raw_os_error(errno)));
        }
    }

    #[tokio::test]
    async fn the_preface_is_noted_once_its_bytes_have_arrived() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64);
        let reached = Arc::new(AtomicBool::new(false));
        let mut counted = Counted {
            inner: server,
            left: H2_PREFACE_LEN,
            reached: reached.clone(),
        };
        let mut buf = [0u8; 64];
        client.write_all(&[b'P'; 23]).await.unwrap();
        let n = counted.read(&mut buf).await.unwrap();
        assert_eq!(n, 23);
        assert!(!reached.load(Ordering::Acquire));
        client.write_all(b"M").await.unwrap();
        assert_eq!(counted.read(&mut buf).await.unwrap(), 1);
        assert!(reached.load(Ordering::Acquire));
    }
}
