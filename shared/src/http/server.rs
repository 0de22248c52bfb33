//! The local server's connections: HTTP/1.1 over hyper with the limits a server on an open
//! network needs, which `axum::serve` does not set (it has no timer, so hyper's header-read
//! timeout never runs, and it accepts without limit). Never used on Lambda, where API
//! Gateway holds the client connections.
//!
//! - **Header-read timeout** (`HTTP_HEADER_READ_TIMEOUT_SECONDS`): a request's head (request
//!   line and headers) must arrive whole within this time, counted from the connection's
//!   start for its first request and from the first byte of each later one. A client that
//!   trickles its headers (slowloris) is disconnected at the deadline, however steadily it
//!   sends.
//! - **Idle timeout** (`HTTP_IDLE_TIMEOUT_SECONDS`): a kept-alive connection with no request
//!   in flight is closed this long after its last response.
//! - **Connection cap** (`HTTP_MAX_CONNECTIONS`): at most this many connections are open at
//!   once; past it the server stops accepting, so further clients wait in the listen backlog
//!   until a connection closes (or their connect times out), and those already in are served
//!   as before.
//!
//! Why the two timeouts are kept here rather than by hyper alone: hyper's own
//! `header_read_timeout` also runs while a kept-alive connection waits for its next request,
//! so it cannot tell a slow head from an idle connection, and it has no idle timeout of its
//! own. Here each connection knows its phase (waiting for a head, serving, idle: see
//! [`Phase`]) and the deadline that phase has.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::config::HttpServerConfig;

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets
/// every connection finish the request it is serving, and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: HttpServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let connections = TaskTracker::new();
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // A free slot before the next accept: past the cap, clients wait in the backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            serve_connection(stream, peer, router, config, stopping).await;
            drop(slot);
        });
    }
    stop.send_replace(true);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// An accept that failed: the client's own trouble (it reset or gave up) is skipped; any
/// other error (out of file descriptors above all) is logged and the loop pauses a moment,
/// rather than spinning, before it tries again.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

/// What a connection is doing, which decides its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's head to arrive whole, since this instant (the connection's
    /// start, or the first byte after an idle wait): the header-read timeout runs.
    Head(Instant),
    /// This many requests are being handled: no deadline (the handlers bound their own work).
    Busy(usize),
    /// Its last response went at this instant and nothing has arrived since: the idle
    /// timeout runs.
    Idle(Instant),
}

impl Phase {
    fn request_started(self) -> Self {
        match self {
            Self::Busy(n) => Self::Busy(n + 1),
            Self::Head(_) | Self::Idle(_) => Self::Busy(1),
        }
    }

    fn request_done(self) -> Self {
        match self {
            Self::Busy(n) if n > 1 => Self::Busy(n - 1),
            _ => Self::Idle(Instant::now()),
        }
    }

    fn deadline(self, config: &HttpServerConfig) -> Option<Instant> {
        match self {
            Self::Head(since) => Some(since + config.header_read_timeout),
            Self::Busy(_) => None,
            Self::Idle(since) => Some(since + config.idle_timeout),
        }
    }
}

/// One connection until it closes: hyper serves it, this enforces its deadlines.
///
/// Cheap per request, because the phase changes on every request: a request only writes
/// its phase (a lock nobody else contends: the connection's own task). Every change happens
/// while hyper's connection future is polled, so the loop reads the phase after each poll
/// and moves its one timer only when the deadline comes earlier; a later deadline is picked
/// up when the timer fires. Under steady traffic the timer fires about once per timeout per
/// connection, not once per request.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    config: HttpServerConfig,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let phase = SharedPhase::new(Phase::Head(Instant::now()));
    let io = TokioIo::new(Watched {
        stream,
        phase: phase.clone(),
    });
    let service = {
        let phase = phase.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            phase.update(Phase::request_started);
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().oneshot(request);
            let phase = phase.clone();
            async move {
                let response = response.await;
                phase.update(Phase::request_done);
                response
            }
        })
    };
    let mut connection =
        pin!(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
    // The one deadline timer; [`never`] stands for "nothing armed".
    let mut timer = pin!(tokio::time::sleep_until(never()));
    // The server's stop signal (it only ever turns true); `None` once it has been seen.
    let mut stop = pin!(Some(stopping.changed()));
    let mut closing = false;
    std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return Poll::Ready(());
            }
            if let Some(changed) = stop.as_mut().as_pin_mut()
                && let Poll::Ready(changed) = changed.poll(cx)
            {
                stop.set(None);
                if changed.is_ok() {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                    continue;
                }
            }
            let current = phase.get();
            // Once closing, an idle connection ends on hyper's next poll: no deadline to wait for.
            let due = match current {
                Phase::Idle(_) if closing => None,
                _ => current.deadline(&config),
            };
            if let Some(due) = due
                && due < timer.deadline()
            {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: the deadline of the phase the connection is in now decides.
            match (current, due) {
                (_, Some(due)) if due > Instant::now() => timer.as_mut().reset(due),
                // Dropping the connection closes the socket: nothing is owed to a client
                // that has not sent a whole request.
                (Phase::Head(_), Some(_)) => {
                    tracing::info!(%peer, "request head not received within the header-read timeout; connection closed");
                    return Poll::Ready(());
                }
                (Phase::Idle(_), Some(_)) => {
                    closing = true;
                    timer.as_mut().reset(never());
                    connection.as_mut().graceful_shutdown();
                }
                // Busy (or idle while closing): no deadline until the phase changes.
                _ => timer.as_mut().reset(never()),
            }
        }
    })
    .await;
}

/// The instant that stands for "no deadline": about 30 years away, as tokio's own.
fn never() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365 * 30)
}

/// A connection's [`Phase`], shared by its socket, its requests and its loop: all on the
/// connection's own task, so the lock is never contended.
#[derive(Clone)]
struct SharedPhase(Arc<Mutex<Phase>>);

impl SharedPhase {
    fn new(phase: Phase) -> Self {
        Self(Arc::new(Mutex::new(phase)))
    }

    fn get(&self) -> Phase {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = change(*phase);
    }
}

/// The connection's socket, telling its [`Phase`] when the first bytes of a request arrive
/// on an idle connection (the header-read timeout starts then).
struct Watched {
    stream: TcpStream,
    phase: SharedPhase,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.update(|phase| match phase {
                Phase::Idle(_) => Phase::Head(Instant::now()),
                Phase::Head(_) | Phase::Busy(_) => phase,
            });
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> HttpServerConfig {
        HttpServerConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 4,
        }
    }

    #[test]
    fn each_phase_has_its_deadline() {
        let now = Instant::now();
        let config = config();
        assert_eq!(
            Phase::Head(now).deadline(&config),
            Some(now + Duration::from_secs(10))
        );
        assert_eq!(
            Phase::Idle(now).deadline(&config),
            Some(now + Duration::from_secs(75))
        );
        assert_eq!(Phase::Busy(1).deadline(&config), None);
    }

    #[test]
    fn a_connection_is_idle_only_when_its_last_request_is_done() {
        let phase = Phase::Head(Instant::now())
            .request_started()
            .request_started();
        assert_eq!(phase, Phase::Busy(2));
        assert_eq!(phase.request_done(), Phase::Busy(1));
        assert!(matches!(
            phase.request_done().request_done(),
            Phase::Idle(_)
        ));
    }
}
