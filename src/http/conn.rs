//! Connections: the accept loop, per-connection HTTP/1 serving with timeouts, and
//! graceful closing.
//!
//! What keeps a slow or stuck client from holding the server:
//! - at most [`MAX_CONNECTIONS`] at once; beyond that new ones wait in the kernel's
//!   backlog;
//! - a connection that has not yet sent a request with a valid credential is
//!   *unauthenticated*: at most [`MAX_UNAUTHENTICATED`] of them wait for their first
//!   request, each for at most [`FIRST_REQUEST_TIMEOUT`]; one more evicts (closes)
//!   the oldest that has sent nothing at all (else the oldest). So idle connections
//!   without a token, however many, hold a bounded share of the budget, and a client
//!   that sends its request at once is always served. A request that is refused
//!   (401, 403, …) on a connection that never authenticated closes it
//!   (`Connection: close`). Peers are not counted apart: on loopback every local
//!   process is 127.0.0.1;
//! - [`HEADER_TIMEOUT`] to send a request's headers, which also closes a kept-alive
//!   connection idle that long (the body has its own limit, in `limits`);
//! - [`WRITE_STALL`]: a connection whose client stops reading (its socket buffer
//!   stays full that long) is dropped.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use super::auth::Authenticated;

pub const MAX_CONNECTIONS: usize = 256;
/// Connections waiting for their first request at once (a share of
/// [`MAX_CONNECTIONS`]).
pub const MAX_UNAUTHENTICATED: usize = 64;
/// How long a new connection may take to send its first request's headers.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
pub const WRITE_STALL: Duration = Duration::from_secs(60);

/// New connections still waiting for their first request, oldest first.
#[derive(Default)]
struct Waiting {
    next: AtomicU64,
    queue: Mutex<VecDeque<Newcomer>>,
}

struct Newcomer {
    id: u64,
    /// Cancelled to close it.
    evict: CancellationToken,
    /// It has sent at least one byte.
    spoke: Arc<AtomicBool>,
}

impl Waiting {
    /// Register a new connection; evicts one if there are too many.
    fn admit(&self) -> (u64, CancellationToken, Arc<AtomicBool>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evict = CancellationToken::new();
        let spoke = Arc::new(AtomicBool::new(false));
        let Ok(mut queue) = self.queue.lock() else {
            return (id, evict, spoke);
        };
        queue.push_back(Newcomer {
            id,
            evict: evict.clone(),
            spoke: spoke.clone(),
        });
        if queue.len() > MAX_UNAUTHENTICATED {
            let victim = queue
                .iter()
                .position(|n| !n.spoke.load(Ordering::Relaxed))
                .unwrap_or(0);
            if let Some(n) = queue.remove(victim) {
                n.evict.cancel();
            }
        }
        (id, evict, spoke)
    }

    /// It sent its first request, or closed.
    fn leave(&self, id: u64) {
        if let Ok(mut queue) = self.queue.lock()
            && let Some(at) = queue.iter().position(|n| n.id == id)
        {
            queue.remove(at);
        }
    }
}

/// Every open connection, tracked, and the signal that asks them to close.
#[derive(Default)]
pub struct Connections {
    pub tracker: TaskTracker,
    /// Cancelled at shutdown: each connection finishes the request it is serving and
    /// then closes.
    pub closing: CancellationToken,
}

/// Accept connections until `stop` completes; the listener is closed on return.
pub async fn accept_until(
    listener: TcpListener,
    app: Router,
    stop: impl Future<Output = ()>,
    conns: &Connections,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let waiting = Arc::new(Waiting::default());
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            _ = &mut stop => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (id, evict, spoke) = waiting.admit();
        let newcomer = Newcomer { id, evict, spoke };
        let (app, waiting) = (app.clone(), waiting.clone());
        let closing = conns.closing.clone();
        conns.tracker.spawn(async move {
            serve_connection(stream, peer, app, closing, newcomer, &waiting).await;
            waiting.leave(id);
            drop(permit);
        });
    }
}

/// What a connection knows about itself.
#[derive(Default)]
struct Standing {
    /// Its first request has arrived (it no longer waits among the newcomers).
    started: AtomicBool,
    /// A request on it presented a valid credential.
    authenticated: AtomicBool,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    closing: CancellationToken,
    newcomer: Newcomer,
    waiting: &Arc<Waiting>,
) {
    let io = TokioIo::new(StallGuard::new(stream, WRITE_STALL, newcomer.spoke));
    let standing = Arc::new(Standing::default());
    let started = CancellationToken::new();
    let service = {
        let (standing, started, waiting) = (standing.clone(), started.clone(), waiting.clone());
        let id = newcomer.id;
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            if !standing.started.swap(true, Ordering::Relaxed) {
                waiting.leave(id);
                started.cancel();
            }
            let mut app = app.clone();
            let standing = standing.clone();
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            async move {
                let mut response = app.call(request).await?;
                if response.extensions().get::<Authenticated>().is_some() {
                    standing.authenticated.store(true, Ordering::Relaxed);
                } else if !standing.authenticated.load(Ordering::Relaxed) {
                    // Refused on a connection that never authenticated: close it.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    // Until its first request arrives, the connection may be evicted or time out.
    let unwelcome = async {
        tokio::select! {
            _ = started.cancelled() => std::future::pending::<&str>().await,
            _ = newcomer.evict.cancelled() => "evicted by newer connections",
            _ = tokio::time::sleep(FIRST_REQUEST_TIMEOUT) => "no request in time",
        }
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        why = unwelcome => {
            tracing::debug!(%peer, "closed a connection that sent no request: {why}");
            return;
        }
        _ = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// A stream whose writes fail once they have been blocked for `limit`: a client
/// that stops reading cannot pin a connection (and its task) forever. It also notes
/// when the client first sent something (`spoke`).
struct StallGuard {
    io: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    spoke: Arc<AtomicBool>,
}

impl StallGuard {
    fn new(io: TcpStream, limit: Duration, spoke: Arc<AtomicBool>) -> Self {
        Self {
            io,
            limit,
            stalled: None,
            spoke,
        }
    }

    /// Called when a write is pending: arm the timer, or fail if it has run out.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn settle<T>(
        &mut self,
        poll: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.spoke.store(true, Ordering::Relaxed);
        }
        poll
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.settle(poll, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.settle(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.settle(poll, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
