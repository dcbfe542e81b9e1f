//! Network configuration: listen address, bootstrap peers, limits and the admission policy.

use std::{collections::HashSet, fmt, net::SocketAddr, sync::Arc, time::Duration};

use libp2p::{Multiaddr, PeerId, multiaddr};

use super::{
    Certificates, NetworkError, NodeId, Protocol,
    identity::peer_id_of,
    limits::{
        CONSENSUS_MAX_STREAMS, CONSENSUS_RATE, CONSENSUS_TIMEOUT, MAX_CONSENSUS_MESSAGE, MAX_SYNC_REQUEST,
        MAX_SYNC_RESPONSE, MAX_TX_BATCH, RateLimit, SYNC_MAX_STREAMS, SYNC_RATE, SYNC_TIMEOUT, TX_MAX_STREAMS, TX_RATE,
        TX_TIMEOUT,
    },
};
use crate::version::NodeVersion;

/// Limits of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolLimits {
    /// Largest message (request) accepted or sent, in bytes.
    pub max_request: usize,
    /// Largest response accepted or sent, in bytes; 0 for one-way protocols, whose
    /// acknowledgement is empty.
    pub max_response: usize,
    /// Inbound rate allowed to each peer; messages over it are dropped and counted.
    pub rate: RateLimit,
    /// Time for one message and its answer.
    pub timeout: Duration,
    /// Concurrent streams of the protocol on one connection.
    pub max_streams: usize,
}

/// Limits of every protocol. The defaults are the protocol maxima of [`super::limits`]; sizes may
/// be lowered, never raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `/bcos/consensus/1`.
    pub consensus: ProtocolLimits,
    /// `/bcos/txs/1`.
    pub txs: ProtocolLimits,
    /// `/bcos/sync/1`.
    pub sync: ProtocolLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            consensus: ProtocolLimits {
                max_request: MAX_CONSENSUS_MESSAGE,
                max_response: 0,
                rate: CONSENSUS_RATE,
                timeout: CONSENSUS_TIMEOUT,
                max_streams: CONSENSUS_MAX_STREAMS,
            },
            txs: ProtocolLimits {
                max_request: MAX_TX_BATCH,
                max_response: 0,
                rate: TX_RATE,
                timeout: TX_TIMEOUT,
                max_streams: TX_MAX_STREAMS,
            },
            sync: ProtocolLimits {
                max_request: MAX_SYNC_REQUEST,
                max_response: MAX_SYNC_RESPONSE,
                rate: SYNC_RATE,
                timeout: SYNC_TIMEOUT,
                max_streams: SYNC_MAX_STREAMS,
            },
        }
    }
}

impl Limits {
    /// The limits of one protocol.
    pub fn of(&self, protocol: Protocol) -> &ProtocolLimits {
        match protocol {
            Protocol::Consensus => &self.consensus,
            Protocol::Transactions => &self.txs,
            Protocol::Sync => &self.sync,
        }
    }

    /// Requests of ours in flight to one peer: half the protocol's stream budget, which the
    /// peer's requests to us share.
    pub(crate) fn outbound_streams(&self, protocol: Protocol) -> usize {
        (self.of(protocol).max_streams / 2).max(1)
    }

    /// Rejects sizes above the protocol maxima, zero rates or timeouts, and fewer than two
    /// streams.
    pub fn validate(&self) -> Result<(), NetworkError> {
        for protocol in Protocol::ALL {
            let limits = self.of(protocol);
            let invalid = |what: &str| Err(NetworkError::InvalidConfig(format!("{protocol}: {what}")));
            if limits.max_request == 0 || limits.max_request > protocol.max_request() {
                return invalid(&format!("max_request must be in 1..={}", protocol.max_request()));
            }
            if limits.max_response > protocol.max_response() {
                return invalid(&format!("max_response must be at most {}", protocol.max_response()));
            }
            if protocol.has_response() && limits.max_response == 0 {
                return invalid("max_response must be positive");
            }
            if limits.rate.messages_per_sec == 0 || limits.rate.bytes_per_sec == 0 {
                return invalid("rates must be positive");
            }
            if limits.timeout.is_zero() {
                return invalid("timeout must be positive");
            }
            if limits.max_streams < 2 {
                return invalid("max_streams must be at least 2 (half for each direction)");
            }
        }
        Ok(())
    }
}

/// Decides which peers of the allowed set may stay connected: the hook for admission checks
/// beyond the node list (a local blacklist now; certificate checks later).
///
/// It is asked when a connection to an allowed peer is established, and again for every
/// connected peer whenever the peer list is replaced with [`set_peers`](super::NetworkHandle::set_peers).
pub trait PeerPolicy: fmt::Debug + Send + Sync + 'static {
    /// `Ok` keeps the peer; `Err(reason)` closes its connections, counted in
    /// `bcos_network_refused_connections_total` under `reason` (a short, fixed label).
    fn admit(&self, node: &NodeId) -> Result<(), &'static str>;
}

/// The policy that admits every peer of the allowed set.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowedSetOnly;

impl PeerPolicy for AllowedSetOnly {
    fn admit(&self, _: &NodeId) -> Result<(), &'static str> {
        Ok(())
    }
}

/// A fixed set of refused nodes (a local blacklist).
#[derive(Debug, Clone, Default)]
pub struct Blacklist(pub HashSet<NodeId>);

impl PeerPolicy for Blacklist {
    fn admit(&self, node: &NodeId) -> Result<(), &'static str> {
        if self.0.contains(node) { Err("blacklisted") } else { Ok(()) }
    }
}

/// The network's configuration.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Where to listen: `/ip4/<ip>/tcp/<port>` or `/ip6/...` (port 0 picks a free port; see
    /// [`listen_addrs`](super::NetworkHandle::listen_addrs)).
    pub listen: Multiaddr,
    /// The local whitelist: nodes always allowed, dialed at these addresses. Peers from the node
    /// registry are added with [`set_peers`](super::NetworkHandle::set_peers). The local node may
    /// appear; it is skipped.
    pub bootstrap: Vec<(NodeId, Multiaddr)>,
    /// Per-protocol limits.
    pub limits: Limits,
    /// Further admission checks on allowed peers.
    pub policy: Arc<dyn PeerPolicy>,
    /// Certificate admission; `None` admits allowed peers on their node id alone.
    pub certificates: Option<Certificates>,
    /// The versions this node states to peers in certificate admission, whose protocol range
    /// peers must share.
    pub version: NodeVersion,
}

impl NetworkConfig {
    /// A configuration listening on `listen` with no bootstrap peers and default limits.
    pub fn new(listen: Multiaddr) -> Self {
        Self {
            listen,
            bootstrap: Vec::new(),
            limits: Limits::default(),
            policy: Arc::new(AllowedSetOnly),
            certificates: None,
            version: NodeVersion::this_build(),
        }
    }

    /// Checks the listen address, the bootstrap list (valid node ids, dialable addresses, no
    /// duplicates) and the limits.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let mut protocols = self.listen.iter();
        let ip = matches!(protocols.next(), Some(multiaddr::Protocol::Ip4(_) | multiaddr::Protocol::Ip6(_)));
        let tcp = matches!(protocols.next(), Some(multiaddr::Protocol::Tcp(_)));
        if !ip || !tcp || protocols.next().is_some() {
            return Err(NetworkError::InvalidConfig(format!(
                "listen address {} is not /ip4|ip6/<ip>/tcp/<port>",
                self.listen
            )));
        }
        let mut seen = HashSet::new();
        for (node, addr) in &self.bootstrap {
            if !seen.insert(node) {
                return Err(NetworkError::InvalidConfig(format!("bootstrap node {node} is listed twice")));
            }
            dial_address(node, addr)?;
        }
        self.limits.validate()
    }
}

/// The multiaddr of a TCP socket address.
pub fn tcp_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::from(addr.ip()).with(multiaddr::Protocol::Tcp(addr.port()))
}

/// The multiaddr of a `host:port` peer address already split (node.yaml's `p2p.peers`, the node
/// registry): an IP address directly, any other host as a DNS name resolved when dialed. `None`
/// when the host is not something a multiaddr can carry (a `/` in it).
pub fn host_multiaddr(host: &str, port: u16) -> Option<Multiaddr> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(tcp_multiaddr((ip, port).into())),
        Err(_) => format!("/dns/{host}/tcp/{port}").parse().ok(),
    }
}

/// Checks that `addr` is a TCP address of `node` (`/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>`,
/// optionally ending in `/p2p/<peer id of node>`) and returns its peer id and the address
/// without the `/p2p` suffix.
pub(crate) fn dial_address(node: &NodeId, addr: &Multiaddr) -> Result<(PeerId, Multiaddr), NetworkError> {
    let peer = peer_id_of(node).ok_or(NetworkError::InvalidNodeId(*node))?;
    let invalid = |reason| NetworkError::InvalidAddress { node: *node, addr: addr.clone(), reason };
    let mut stripped = addr.clone();
    if let Some(multiaddr::Protocol::P2p(id)) = stripped.iter().last() {
        if id != peer {
            return Err(invalid("its /p2p peer id is not the node's"));
        }
        stripped.pop();
    }
    let mut protocols = stripped.iter();
    let host = matches!(
        protocols.next(),
        Some(
            multiaddr::Protocol::Ip4(_)
                | multiaddr::Protocol::Ip6(_)
                | multiaddr::Protocol::Dns(_)
                | multiaddr::Protocol::Dns4(_)
                | multiaddr::Protocol::Dns6(_)
        )
    );
    let tcp = matches!(protocols.next(), Some(multiaddr::Protocol::Tcp(_)));
    if !host || !tcp || protocols.next().is_some() {
        return Err(invalid("not /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>"));
    }
    Ok((peer, stripped))
}

#[cfg(test)]
mod tests {
    use bcos_sdk::crypto::NodeKey;

    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn dial_addresses() {
        let node = NodeKey::generate().node_id();
        let peer = peer_id_of(&node).expect("valid");
        let (id, plain) = dial_address(&node, &addr("/ip4/10.0.0.1/tcp/30300")).expect("ip4");
        assert_eq!((id, plain), (peer, addr("/ip4/10.0.0.1/tcp/30300")));
        let with_p2p = addr(&format!("/dns4/node-0.chain/tcp/30300/p2p/{peer}"));
        assert_eq!(dial_address(&node, &with_p2p).expect("dns").1, addr("/dns4/node-0.chain/tcp/30300"));
        let other = peer_id_of(&NodeKey::generate().node_id()).expect("valid");
        let wrong = addr(&format!("/ip4/10.0.0.1/tcp/1/p2p/{other}"));
        assert!(matches!(dial_address(&node, &wrong), Err(NetworkError::InvalidAddress { .. })));
        assert!(matches!(dial_address(&node, &addr("/ip4/10.0.0.1/udp/1")), Err(NetworkError::InvalidAddress { .. })));
        assert!(matches!(dial_address(&node, &addr("/ip4/10.0.0.1")), Err(NetworkError::InvalidAddress { .. })));
    }

    #[test]
    fn host_multiaddrs() {
        assert_eq!(host_multiaddr("10.0.0.1", 30300), Some(addr("/ip4/10.0.0.1/tcp/30300")));
        assert_eq!(host_multiaddr("::1", 1), Some(addr("/ip6/::1/tcp/1")));
        assert_eq!(host_multiaddr("node-0.chain", 30300), Some(addr("/dns/node-0.chain/tcp/30300")));
        assert_eq!(host_multiaddr("a/b", 1), None);
    }

    #[test]
    fn config_validation() {
        let mut config = NetworkConfig::new(tcp_multiaddr("127.0.0.1:0".parse().expect("socket")));
        config.validate().expect("default config is valid");
        let node = NodeKey::generate().node_id();
        config.bootstrap = vec![(node, addr("/ip4/127.0.0.1/tcp/1")), (node, addr("/ip4/127.0.0.1/tcp/2"))];
        assert!(matches!(config.validate(), Err(NetworkError::InvalidConfig(_))), "duplicate bootstrap");
        config.bootstrap.truncate(1);
        config.limits.consensus.max_request = MAX_CONSENSUS_MESSAGE + 1;
        assert!(matches!(config.validate(), Err(NetworkError::InvalidConfig(_))), "above the maximum");
        config.limits = Limits::default();
        config.limits.sync.max_response = 0;
        assert!(matches!(config.validate(), Err(NetworkError::InvalidConfig(_))), "sync needs responses");
        config.limits = Limits::default();
        config.listen = addr("/ip4/127.0.0.1/udp/1");
        assert!(matches!(config.validate(), Err(NetworkError::InvalidConfig(_))), "not tcp");
    }

    #[test]
    fn blacklist_policy() {
        let bad = NodeKey::generate().node_id();
        let policy = Blacklist([bad].into_iter().collect());
        assert_eq!(policy.admit(&bad), Err("blacklisted"));
        assert_eq!(policy.admit(&NodeKey::generate().node_id()), Ok(()));
    }
}
