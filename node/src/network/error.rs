//! Network errors.

use libp2p::Multiaddr;

use super::{NodeId, Protocol, codec::FrameError};

/// A network operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The configuration is inconsistent (see [`NetworkConfig::validate`](super::NetworkConfig::validate)).
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    /// The node key cannot be used as a libp2p identity.
    #[error("invalid node key: {0}")]
    InvalidKey(String),
    /// A node id is not an Ed25519 public key, so no peer can have it.
    #[error("invalid node id {0}: not an Ed25519 public key")]
    InvalidNodeId(NodeId),
    /// A peer address cannot be dialed.
    #[error("invalid address {addr} for node {node}: {reason}")]
    InvalidAddress {
        /// The node.
        node: NodeId,
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: &'static str,
    },
    /// Building the transport (TCP, Noise, Yamux) failed.
    #[error("transport setup failed: {0}")]
    Transport(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The peer is not connected (messages go only to connected peers; the network keeps dialing
    /// known peers by itself).
    #[error("peer {0} is not connected")]
    NotConnected(NodeId),
    /// The connection closed before the peer answered.
    #[error("connection to {peer} closed before it answered on {protocol}")]
    Disconnected {
        /// The peer.
        peer: NodeId,
        /// The protocol.
        protocol: Protocol,
    },
    /// The peer did not answer in time.
    #[error("{protocol} request to {peer} timed out")]
    Timeout {
        /// The peer.
        peer: NodeId,
        /// The protocol.
        protocol: Protocol,
    },
    /// The peer closed the stream without answering (it may be rate-limiting us or busy).
    #[error("{peer} did not answer the {protocol} request")]
    NoResponse {
        /// The peer.
        peer: NodeId,
        /// The protocol.
        protocol: Protocol,
    },
    /// The peer broke the protocol: an oversized or malformed answer, or no support for it.
    #[error("{peer} misbehaved on {protocol}: {reason}")]
    PeerMisbehaved {
        /// The peer.
        peer: NodeId,
        /// The protocol.
        protocol: Protocol,
        /// What it did.
        reason: String,
    },
    /// A message to send exceeds the protocol's limit.
    #[error("{protocol} message of {size} bytes exceeds the limit of {limit}")]
    Oversize {
        /// The protocol.
        protocol: Protocol,
        /// The message size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The network task has more commands queued than it accepts; the message was not sent.
    #[error("network command queue is full")]
    Backpressure,
    /// An I/O error on a stream.
    #[error("{protocol} stream to {peer} failed: {reason}")]
    Io {
        /// The peer.
        peer: NodeId,
        /// The protocol.
        protocol: Protocol,
        /// The error.
        reason: String,
    },
    /// The network has been shut down.
    #[error("network is shut down")]
    Shutdown,
}

impl NetworkError {
    /// Whether the error shows the remote peer misbehaving, so it may be penalised.
    pub fn is_bad_peer(&self) -> bool {
        matches!(self, Self::PeerMisbehaved { .. })
    }

    /// Whether the same operation may succeed later (the peer may reconnect or get less busy).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::NotConnected(_)
                | Self::Disconnected { .. }
                | Self::Timeout { .. }
                | Self::NoResponse { .. }
                | Self::Backpressure
                | Self::Io { .. }
        )
    }

    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "invalid_config",
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidNodeId(_) => "invalid_node_id",
            Self::InvalidAddress { .. } => "invalid_address",
            Self::Transport(_) => "transport",
            Self::Listen { .. } => "listen",
            Self::NotConnected(_) => "not_connected",
            Self::Disconnected { .. } => "disconnected",
            Self::Timeout { .. } => "timeout",
            Self::NoResponse { .. } => "no_response",
            Self::PeerMisbehaved { .. } => "peer_misbehaved",
            Self::Oversize { .. } => "oversize",
            Self::Backpressure => "backpressure",
            Self::Io { .. } => "io",
            Self::Shutdown => "shutdown",
        }
    }

    /// The error for a frame the peer sent in answer.
    pub(crate) fn from_frame(peer: NodeId, protocol: Protocol, error: &FrameError) -> Self {
        if error.is_bad_peer() {
            Self::PeerMisbehaved { peer, protocol, reason: error.to_string() }
        } else {
            Self::NoResponse { peer, protocol }
        }
    }
}

/// A network result.
pub type Result<T, E = NetworkError> = std::result::Result<T, E>;
