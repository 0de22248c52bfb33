//! A tiny TCP forwarding proxy for simulating a dependency outage.
//!
//! Postgres and Redis are shared by every test running in parallel, so a test must never
//! stop them. Instead the app under test is pointed at a [`TcpProxy`] in front of the real
//! server, and the test breaks the proxy: [`TcpProxy::cut`] closes every live connection
//! and closes new ones at once (the server went away), [`TcpProxy::stall`] keeps every
//! connection open but forwards nothing (a network partition: nothing answers, nothing
//! fails), and [`TcpProxy::restore`] forwards again. Connections caught by a cut or a stall
//! are closed on restore; the client has to reconnect, as after a real outage.
//! [`TcpProxy::redirect`] sends new connections to another server and closes the live ones,
//! as a failover does when the endpoint's name moves to the promoted replica.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with connections right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes both ways.
    Open,
    /// Close live connections; accept new ones and close them at once.
    Cut,
    /// Hold every connection open and forward nothing.
    Stall,
}

/// What the proxy does, and where it forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    mode: ProxyMode,
    upstream: SocketAddr,
}

/// A TCP proxy on `127.0.0.1:<random port>` in front of `upstream`.
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<watch::Sender<State>>,
    accept_task: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, _) = watch::channel(State {
            mode: ProxyMode::Open,
            upstream,
        });
        let state = Arc::new(state);
        let accept_task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(Self {
            addr,
            state,
            accept_task,
        })
    }

    /// The address clients should connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The real server behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.state.borrow().upstream
    }

    fn set_mode(&self, mode: ProxyMode) {
        self.state.send_modify(|state| state.mode = mode);
    }

    /// The dependency goes down: live connections are closed, new ones closed at once.
    pub fn cut(&self) {
        self.set_mode(ProxyMode::Cut);
    }

    /// The network partitions: connections stay open but nothing is forwarded.
    pub fn stall(&self) {
        self.set_mode(ProxyMode::Stall);
    }

    /// The dependency is back: new connections are forwarded again.
    pub fn restore(&self) {
        self.set_mode(ProxyMode::Open);
    }

    /// A failover: live connections are closed and new ones go to `upstream`.
    pub fn redirect(&self, upstream: SocketAddr) {
        self.state.send_modify(|state| state.upstream = upstream);
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.state.borrow().mode
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Ends every connection task, then the accept loop.
        self.set_mode(ProxyMode::Cut);
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<watch::Sender<State>>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let rx = state.subscribe();
        let current = *rx.borrow();
        match current.mode {
            ProxyMode::Cut => drop(inbound),
            ProxyMode::Stall => {
                tokio::spawn(hold(inbound, None, rx));
            }
            ProxyMode::Open => {
                tokio::spawn(forward(inbound, current.upstream, rx));
            }
        }
    }
}

async fn forward(mut inbound: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<State>) {
    let _ = inbound.set_nodelay(true);
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = copy_bidirectional(&mut inbound, &mut outbound) => return,
        _ = rx.wait_for(|s| s.mode != ProxyMode::Open || s.upstream != upstream) => {}
    }
    let now = *rx.borrow();
    if now.mode == ProxyMode::Stall {
        hold(inbound, Some(outbound), rx).await;
    }
    // Cut, redirected (or the proxy is gone): both sockets close here.
}

/// Keeps the sockets open, reading and writing nothing, until the stall ends.
async fn hold(inbound: TcpStream, outbound: Option<TcpStream>, mut rx: watch::Receiver<State>) {
    let _ = rx.wait_for(|s| s.mode != ProxyMode::Stall).await;
    drop(outbound);
    drop(inbound);
}
