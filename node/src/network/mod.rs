//! The peer-to-peer network: libp2p over TCP, secured by Noise, multiplexed by Yamux.
//!
//! # Data flow
//!
//! [`Network::start`] binds the listen address and spawns one task that owns the libp2p swarm.
//! The node talks to that task through a cloneable [`NetworkHandle`] (commands in) and one
//! [`NetworkEvent`] receiver (messages and peer changes out):
//!
//! - consensus sends `send_consensus` / `broadcast_consensus` and receives
//!   [`NetworkEvent::Consensus`] (`/bcos/consensus/1`);
//! - the transaction pool gossips with `gossip_txs` and receives [`NetworkEvent::Transactions`]
//!   (`/bcos/txs/1`);
//! - block sync asks with `request_sync` and answers [`NetworkEvent::SyncRequest`] through its
//!   `reply` channel (`/bcos/sync/1`).
//!
//! Payloads are opaque bytes here; the modules above define and decode them. Consensus and
//! transaction messages are fire-and-forget: each travels on its own stream and is acknowledged
//! empty, so delivery is at most once and messages may overtake each other.
//!
//! # Peers and admission
//!
//! A node's Ed25519 key is its libp2p identity and its node id is the public key
//! ([`identity`]). The allowed set is the bootstrap whitelist of the configuration plus the list
//! given to [`NetworkHandle::set_peers`] (the on-chain node registry). A connection is closed as
//! soon as the Noise handshake names the remote, unless the remote is in the allowed set, not
//! banned, and accepted by the configured [`PeerPolicy`]. With [`Certificates`] configured, a
//! connection that passes this is still not admitted: both sides then send their versions and
//! certificate chain on `/bcos/admission/2` (the chain alone on `/bcos/admission/1`, to peers of
//! the first release), and the peer counts as connected (events, messages) only once it shares a
//! protocol version with this node ([`crate::version`]) and its chain verifies to the chain CA,
//! is valid now, is not revoked and certifies the key the peer proved in Noise; otherwise, or
//! without a chain within [`ADMISSION_TIMEOUT`], it is dropped. The versions admitted peers
//! stated are kept ([`NetworkHandle::peers`]); without certificates there is no such exchange,
//! and peers' versions are neither known nor checked. Admitted chains are re-verified when the
//! revocation list changes ([`NetworkHandle::recheck_certificates`]) and when one of them
//! expires. Every allowed peer with a known address that is not connected is dialed, with
//! exponential backoff ([`limits::BACKOFF_INITIAL`] doubling
//! to [`limits::BACKOFF_MAX`]). Liveness pings close dead connections.
//!
//! # Hostile input
//!
//! Every frame is length-prefixed and refused from its prefix alone when over the protocol's
//! limit ([`limits`]); truncated frames, trailing bytes and messages over a peer's rate (token
//! buckets per peer and protocol) are dropped and counted in
//! `bcos_network_dropped_messages_total{protocol,reason}`. A peer that keeps doing so is
//! disconnected and banned for [`limits::BAN_DURATION`].

#[cfg(test)]
mod admission_tests;
mod behaviour;
mod certificates;
mod codec;
mod config;
mod error;
mod hello;
pub mod identity;
pub mod limits;
mod metrics;
mod peers;
mod protocol;
mod service;
#[cfg(test)]
pub(crate) mod tests;

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use alloy_primitives::{B256, Bytes};
use bcos_sdk::crypto::NodeKey;
use libp2p::{PeerId, SwarmBuilder, noise, tcp, yamux};
use parking_lot::RwLock;
use prometheus::Registry;
use tokio::sync::{mpsc, oneshot};

pub use certificates::{ADMISSION_TIMEOUT, Certificates};
pub use codec::FrameError;
pub use config::{
    AllowedSetOnly, Blacklist, Limits, NetworkConfig, PeerPolicy, ProtocolLimits, host_multiaddr, tcp_multiaddr,
};
pub use error::{NetworkError, Result};
pub use hello::PeerVersion;
pub use libp2p::Multiaddr;
pub use protocol::Protocol;

use self::{
    behaviour::Behaviour,
    config::dial_address,
    identity::peer_id_of,
    limits::{COMMAND_QUEUE, CONNECTION_TIMEOUT, EVENT_QUEUE},
    metrics::NetworkMetrics,
    service::{AdmissionRules, Service},
};

/// A node id: the node's Ed25519 public key.
pub type NodeId = B256;

/// What the network reports to the node.
#[derive(Debug)]
pub enum NetworkEvent {
    /// A consensus message from a peer.
    Consensus {
        /// The sender.
        from: NodeId,
        /// The message.
        bytes: Bytes,
    },
    /// A batch of raw transactions gossiped by a peer.
    Transactions {
        /// The sender.
        from: NodeId,
        /// The batch.
        bytes: Bytes,
    },
    /// A block-sync request; send the response on `reply`. Dropping `reply` (or answering after
    /// the sync timeout) leaves the requester without an answer.
    SyncRequest {
        /// The requester.
        from: NodeId,
        /// The request.
        bytes: Bytes,
        /// Where the response goes; it must not exceed the sync response limit.
        reply: oneshot::Sender<Bytes>,
    },
    /// A peer got its first connection.
    PeerConnected(NodeId),
    /// A peer lost its last connection.
    PeerDisconnected(NodeId),
}

/// A command from a handle to the network task.
#[derive(Debug)]
enum Command {
    /// Send a one-way message to one connected peer, or (`to: None`) to every connected peer.
    Send { protocol: Protocol, to: Option<NodeId>, bytes: Bytes },
    /// Send a sync request.
    Sync { to: NodeId, bytes: Bytes, reply: oneshot::Sender<Result<Bytes>> },
    /// Replace the registry peers.
    SetPeers { peers: Vec<(PeerId, NodeId, Option<Multiaddr>)>, done: oneshot::Sender<()> },
    /// Re-verify the certificates of admitted peers (the revocation list changed).
    RecheckCertificates { done: oneshot::Sender<()> },
    /// Stop; `done` fires once the listener and the connections are closed.
    Shutdown { done: oneshot::Sender<()> },
}

/// State the network task publishes to handles.
#[derive(Debug, Default)]
struct Shared {
    /// Admitted peers and the versions they stated (`None`: no admission exchange).
    connected: RwLock<BTreeMap<NodeId, Option<PeerVersion>>>,
    listen_addrs: RwLock<Vec<Multiaddr>>,
}

/// The network: [`Network::start`] runs it.
#[derive(Debug)]
pub struct Network;

impl Network {
    /// Binds `config.listen`, registers the network metrics in `registry` and spawns the network
    /// task, which dials the bootstrap peers at once. Returns once the listener is bound.
    ///
    /// The task stops on [`NetworkHandle::shutdown`] or when every handle is dropped.
    pub async fn start(
        config: NetworkConfig,
        key: &NodeKey,
        registry: &Registry,
    ) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>)> {
        config.validate()?;
        let keypair = identity::keypair(key)?;
        let local_node = key.node_id();
        let behaviour = Behaviour::new(&config.limits, Arc::clone(&config.policy));
        let swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::new().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|e| NetworkError::Transport(e.to_string()))?
            .with_behaviour(|_| behaviour)
            .unwrap_or_else(|never| match never {})
            .with_swarm_config(|swarm| {
                // Peers are few and known: connections stay open while idle; pings watch them.
                swarm.with_idle_connection_timeout(Duration::MAX)
            })
            .with_connection_timeout(CONNECTION_TIMEOUT)
            .build();

        let metrics = NetworkMetrics::register(registry);
        let shared = Arc::new(Shared::default());
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let mut bootstrap = Vec::with_capacity(config.bootstrap.len());
        for (node, addr) in &config.bootstrap {
            let (peer, addr) = dial_address(node, addr)?;
            bootstrap.push((peer, *node, addr));
        }
        let mut service = Service::new(
            swarm,
            command_rx,
            event_tx,
            Arc::clone(&shared),
            metrics.clone(),
            config.limits,
            AdmissionRules { bootstrap, certificates: config.certificates, version: config.version },
        );
        service.listen(config.listen).await?;
        tracing::info!(
            target: "network",
            node = %local_node,
            peer = %service.local_peer_id(),
            addrs = ?shared.listen_addrs.read(),
            "network started"
        );
        tokio::spawn(service.run());
        let handle = NetworkHandle { commands, shared, limits: config.limits, metrics, local_node };
        Ok((handle, events))
    }
}

/// A handle to the running network. Cheap to clone; the network stops when the last handle is
/// dropped or on [`shutdown`](Self::shutdown).
#[derive(Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    limits: Limits,
    metrics: NetworkMetrics,
    local_node: NodeId,
}

impl std::fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkHandle").field("local_node", &self.local_node).finish_non_exhaustive()
    }
}

impl NetworkHandle {
    /// The local node id.
    pub fn local_node_id(&self) -> NodeId {
        self.local_node
    }

    /// The addresses the node listens on (with port 0 configured, the bound port).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.shared.listen_addrs.read().clone()
    }

    /// The peers with an admitted connection, in node-id order.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.shared.connected.read().keys().copied().collect()
    }

    /// The peers with an admitted connection and the versions each stated in admission (`None`
    /// without certificates, when there is no admission exchange), in node-id order.
    pub fn peers(&self) -> Vec<(NodeId, Option<PeerVersion>)> {
        self.shared.connected.read().iter().map(|(node, version)| (*node, version.clone())).collect()
    }

    /// Whether `node` has an admitted connection.
    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.shared.connected.read().contains_key(node)
    }

    /// Sends a consensus message to one connected peer (fire and forget).
    pub fn send_consensus(&self, to: NodeId, bytes: Bytes) -> Result<()> {
        self.send(Protocol::Consensus, Some(to), bytes)
    }

    /// Sends a consensus message to every connected peer (fire and forget).
    pub fn broadcast_consensus(&self, bytes: Bytes) -> Result<()> {
        self.send(Protocol::Consensus, None, bytes)
    }

    /// Gossips a batch of raw transactions to every connected peer (fire and forget).
    pub fn gossip_txs(&self, bytes: Bytes) -> Result<()> {
        self.send(Protocol::Transactions, None, bytes)
    }

    /// Sends a block-sync request to a connected peer and waits for its response (at most the
    /// sync timeout of [`Limits`]).
    pub async fn request_sync(&self, to: NodeId, bytes: Bytes) -> Result<Bytes> {
        self.check_size(Protocol::Sync, bytes.len())?;
        peer_id_of(&to).ok_or(NetworkError::InvalidNodeId(to))?;
        if !self.is_connected(&to) {
            return Err(NetworkError::NotConnected(to));
        }
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Sync { to, bytes, reply }).await.map_err(|_| NetworkError::Shutdown)?;
        answer.await.map_err(|_| NetworkError::Shutdown)?
    }

    /// Replaces the peers from the node registry: they join the bootstrap whitelist in the
    /// allowed set, and those with an address are kept connected. Connected peers no longer
    /// allowed (or now refused by the [`PeerPolicy`]) are disconnected. The local node may be
    /// listed; it is skipped. Returns once the new set is in force.
    pub async fn set_peers(&self, peers: Vec<(NodeId, Option<Multiaddr>)>) -> Result<()> {
        let mut seen = HashSet::with_capacity(peers.len());
        let mut checked = Vec::with_capacity(peers.len());
        for (node, addr) in peers {
            if !seen.insert(node) {
                return Err(NetworkError::InvalidConfig(format!("peer {node} is listed twice")));
            }
            if node == self.local_node {
                continue;
            }
            let (peer, addr) = match addr {
                Some(addr) => dial_address(&node, &addr).map(|(peer, addr)| (peer, Some(addr)))?,
                None => (peer_id_of(&node).ok_or(NetworkError::InvalidNodeId(node))?, None),
            };
            checked.push((peer, node, addr));
        }
        let (done, applied) = oneshot::channel();
        self.commands.send(Command::SetPeers { peers: checked, done }).await.map_err(|_| NetworkError::Shutdown)?;
        applied.await.map_err(|_| NetworkError::Shutdown)
    }

    /// Re-verifies the certificate chains of admitted peers against the revocation list given in
    /// [`Certificates`] (call it after that list changed) and drops those that no longer pass.
    /// Returns once done; without certificates there is nothing to check.
    pub async fn recheck_certificates(&self) -> Result<()> {
        let (done, checked) = oneshot::channel();
        self.commands.send(Command::RecheckCertificates { done }).await.map_err(|_| NetworkError::Shutdown)?;
        checked.await.map_err(|_| NetworkError::Shutdown)
    }

    /// Stops the network and waits until its listener and connections are closed. Idempotent.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).await.is_ok() {
            // An error means the task stopped for another shutdown: equally done.
            let _ = stopped.await;
        }
    }

    fn send(&self, protocol: Protocol, to: Option<NodeId>, bytes: Bytes) -> Result<()> {
        self.check_size(protocol, bytes.len())?;
        if let Some(to) = to {
            peer_id_of(&to).ok_or(NetworkError::InvalidNodeId(to))?;
            if !self.is_connected(&to) {
                self.metrics.send_failure(protocol, "not_connected");
                return Err(NetworkError::NotConnected(to));
            }
        }
        self.commands.try_send(Command::Send { protocol, to, bytes }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.metrics.send_failure(protocol, "backpressure");
                NetworkError::Backpressure
            }
            mpsc::error::TrySendError::Closed(_) => NetworkError::Shutdown,
        })
    }

    fn check_size(&self, protocol: Protocol, size: usize) -> Result<()> {
        let limit = self.limits.of(protocol).max_request;
        if size > limit {
            self.metrics.send_failure(protocol, "oversize");
            return Err(NetworkError::Oversize { protocol, size, limit });
        }
        Ok(())
    }
}
