//! TCP proxies between the nodes of a [`Cluster`](crate::Cluster), so tests can partition the
//! network without root privileges.
//!
//! Every ordered pair of nodes `(i, j)` gets its own link: a listener on a loopback port that node
//! `i` is configured to dial as node `j`, forwarding each accepted connection to node `j`'s real
//! peer-to-peer port. Traffic of a connection flows both ways, so the link `(i, j)` carries what
//! `i` and `j` say to each other over connections `i` opened; `(j, i)` carries those `j` opened.
//!
//! [`Proxy::cut`] blocks the links between two groups in both directions: it drops every live
//! connection on them and closes each new one as soon as it is accepted (the dialer sees the
//! handshake fail). [`Proxy::heal`] lifts every block. The nodes notice dropped connections and
//! redial with their own backoff.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{AbortHandle, JoinHandle},
};

/// A link is named by (dialing node, dialed node).
type Link = (usize, usize);

#[derive(Default)]
struct State {
    blocked: HashSet<Link>,
    /// Live forwarding tasks per link, by connection number.
    live: HashMap<Link, HashMap<u64, AbortHandle>>,
    next_connection: u64,
}

/// The proxies of one cluster. Dropping it stops every listener and connection.
pub struct Proxy {
    state: Arc<Mutex<State>>,
    ports: HashMap<Link, u16>,
    listeners: Vec<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Proxy {
    /// Binds one loopback listener per ordered pair of distinct nodes; node `j`'s real peer-to-peer
    /// port is `targets[j]`. Must run inside a Tokio runtime, which runs the forwarding.
    pub async fn start(targets: &[u16]) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let mut ports = HashMap::new();
        let mut listeners = Vec::new();
        for from in 0..targets.len() {
            for (to, &target) in targets.iter().enumerate() {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                ports.insert((from, to), listener.local_addr()?.port());
                let upstream = SocketAddr::from(([127, 0, 0, 1], target));
                listeners.push(tokio::spawn(accept_loop(listener, (from, to), upstream, state.clone())));
            }
        }
        Ok(Self { state, ports, listeners })
    }

    /// The port node `from` dials to reach node `to`.
    pub fn port(&self, from: usize, to: usize) -> Option<u16> {
        self.ports.get(&(from, to)).copied()
    }

    /// Blocks all traffic between every node of `a` and every node of `b`, both directions:
    /// live connections are dropped and new ones refused until [`Proxy::heal`].
    pub fn cut(&self, a: &[usize], b: &[usize]) {
        let mut state = lock(&self.state);
        for &x in a {
            for &y in b {
                for link in [(x, y), (y, x)] {
                    state.blocked.insert(link);
                    for (_, task) in state.live.remove(&link).unwrap_or_default() {
                        task.abort();
                    }
                }
            }
        }
    }

    /// Lifts every block; the nodes reconnect on their own.
    pub fn heal(&self) {
        lock(&self.state).blocked.clear();
    }

    /// Live proxied connections from `from` to `to` (for diagnostics).
    pub fn connections(&self, from: usize, to: usize) -> usize {
        lock(&self.state).live.get(&(from, to)).map_or(0, HashMap::len)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
        let mut state = lock(&self.state);
        for (_, tasks) in state.live.drain() {
            for (_, task) in tasks {
                task.abort();
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, link: Link, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    loop {
        let Ok((downstream, _)) = listener.accept().await else { continue };
        let mut guard = lock(&state);
        if guard.blocked.contains(&link) {
            // Dropping the socket closes it: the dialer's handshake fails.
            continue;
        }
        let id = guard.next_connection;
        guard.next_connection += 1;
        // The task is registered before it can finish, under the same lock it removes itself with.
        let task = tokio::spawn(forward(downstream, upstream, link, id, state.clone()));
        guard.live.entry(link).or_default().insert(id, task.abort_handle());
    }
}

async fn forward(mut downstream: TcpStream, upstream: SocketAddr, link: Link, id: u64, state: Arc<Mutex<State>>) {
    if let Ok(mut upstream) = TcpStream::connect(upstream).await {
        let _ = downstream.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
    }
    let mut guard = lock(&state);
    if let Some(tasks) = guard.live.get_mut(&link) {
        tasks.remove(&id);
    }
}
