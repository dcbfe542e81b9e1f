//! The swarm's behaviour: admission, connection limits, liveness pings and the three protocols.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use libp2p::{
    Multiaddr, PeerId, connection_limits,
    core::{Endpoint, transport::PortUse},
    ping,
    request_response::{self, ProtocolSupport},
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent,
        ToSwarm, dummy,
    },
};

use super::{
    NodeId, PeerPolicy, Protocol,
    certificates::{ADMISSION_TIMEOUT, MAX_ADMISSION_MESSAGE},
    codec::FrameCodec,
    config::Limits,
    hello::{ADMISSION_PROTOCOL, AdmissionCodec, FIRST_ADMISSION_PROTOCOL},
    identity::node_id_of,
    limits::{MAX_CONNECTIONS_PER_PEER, MAX_PENDING_INCOMING, PING_INTERVAL, PING_TIMEOUT},
};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The peer id does not carry an Ed25519 key, so it is no node.
    #[error("peer id is not an Ed25519 node id")]
    NotANode,
    /// The node is neither in the node list nor in the local whitelist.
    #[error("node is not in the allowed set")]
    NotAllowed,
    /// The node abused the protocols and is banned for a while.
    #[error("node is banned")]
    Banned,
    /// The [`PeerPolicy`] refused the node.
    #[error("refused by policy: {0}")]
    Policy(&'static str),
}

impl Refusal {
    /// A short, stable label for metrics.
    pub(crate) fn metric_label(self) -> &'static str {
        match self {
            Self::NotANode => "not_a_node",
            Self::NotAllowed => "not_allowed",
            Self::Banned => "banned",
            Self::Policy(reason) => reason,
        }
    }
}

/// Closes every connection to a peer that is not admitted, as soon as the peer id is known
/// (after the Noise handshake), before any protocol runs on it.
pub(crate) struct Admission {
    allowed: HashMap<PeerId, NodeId>,
    bans: HashMap<PeerId, Instant>,
    policy: Arc<dyn PeerPolicy>,
}

impl Admission {
    fn new(policy: Arc<dyn PeerPolicy>) -> Self {
        Self { allowed: HashMap::new(), bans: HashMap::new(), policy }
    }

    /// Whether `peer` may be connected, and its node id if so.
    pub(crate) fn check(&self, peer: &PeerId, now: Instant) -> Result<NodeId, Refusal> {
        let node = node_id_of(peer).ok_or(Refusal::NotANode)?;
        if self.bans.get(peer).is_some_and(|until| *until > now) {
            return Err(Refusal::Banned);
        }
        if !self.allowed.contains_key(peer) {
            return Err(Refusal::NotAllowed);
        }
        self.policy.admit(&node).map_err(Refusal::Policy)?;
        Ok(node)
    }

    /// Replaces the allowed set.
    pub(crate) fn set_allowed(&mut self, allowed: HashMap<PeerId, NodeId>, now: Instant) {
        self.allowed = allowed;
        self.bans.retain(|_, until| *until > now);
    }

    /// Refuses `peer` until `until`.
    pub(crate) fn ban(&mut self, peer: PeerId, until: Instant, now: Instant) {
        self.bans.retain(|_, until| *until > now);
        self.bans.insert(peer, until);
    }

    fn enforce(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        self.check(peer, Instant::now()).map(|_| ()).map_err(ConnectionDenied::new)
    }
}

impl NetworkBehaviour for Admission {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.enforce(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = peer {
            self.enforce(&peer)?;
        }
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.enforce(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Everything the node's swarm runs. Admission comes first, so a refused connection never
/// reaches the protocols.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) admission: Admission,
    pub(crate) connection_limits: connection_limits::Behaviour,
    pub(crate) ping: ping::Behaviour,
    /// `/bcos/admission/2` (or `/1` with a first-release peer): versions and certificate
    /// chains, exchanged once per peer connection.
    pub(crate) certificates: request_response::Behaviour<AdmissionCodec>,
    pub(crate) consensus: request_response::Behaviour<FrameCodec>,
    pub(crate) txs: request_response::Behaviour<FrameCodec>,
    pub(crate) sync: request_response::Behaviour<FrameCodec>,
}

impl Behaviour {
    pub(crate) fn new(limits: &Limits, policy: Arc<dyn PeerPolicy>) -> Self {
        let protocol = |protocol: Protocol| {
            let limits = limits.of(protocol);
            request_response::Behaviour::with_codec(
                FrameCodec::new(limits.max_request, limits.max_response),
                [(protocol.stream_protocol(), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(limits.timeout)
                    .with_max_concurrent_streams(limits.max_streams),
            )
        };
        let connection_limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER));
        Self {
            admission: Admission::new(policy),
            connection_limits: connection_limits::Behaviour::new(connection_limits),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL).with_timeout(PING_TIMEOUT)),
            certificates: request_response::Behaviour::with_codec(
                AdmissionCodec::new(MAX_ADMISSION_MESSAGE),
                // In order of preference: a peer negotiates the first it supports.
                [(ADMISSION_PROTOCOL, ProtocolSupport::Full), (FIRST_ADMISSION_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(ADMISSION_TIMEOUT)
                    .with_max_concurrent_streams(2),
            ),
            consensus: protocol(Protocol::Consensus),
            txs: protocol(Protocol::Transactions),
            sync: protocol(Protocol::Sync),
        }
    }

    /// The request/response behaviour of a protocol.
    pub(crate) fn protocol(&mut self, protocol: Protocol) -> &mut request_response::Behaviour<FrameCodec> {
        match protocol {
            Protocol::Consensus => &mut self.consensus,
            Protocol::Transactions => &mut self.txs,
            Protocol::Sync => &mut self.sync,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bcos_sdk::crypto::NodeKey;

    use super::*;
    use crate::network::{AllowedSetOnly, Blacklist, identity::peer_id_of};

    #[test]
    fn admission_checks_allowed_set_bans_and_policy() {
        let now = Instant::now();
        let (a, b) = (NodeKey::generate().node_id(), NodeKey::generate().node_id());
        let (pa, pb) = (peer_id_of(&a).expect("valid"), peer_id_of(&b).expect("valid"));
        let mut admission = Admission::new(Arc::new(AllowedSetOnly));
        assert_eq!(admission.check(&pa, now), Err(Refusal::NotAllowed));
        admission.set_allowed([(pa, a), (pb, b)].into_iter().collect(), now);
        assert_eq!(admission.check(&pa, now), Ok(a));
        admission.ban(pa, now + Duration::from_secs(1), now);
        assert_eq!(admission.check(&pa, now), Err(Refusal::Banned));
        assert_eq!(admission.check(&pa, now + Duration::from_secs(1)), Ok(a), "bans expire");

        let mut admission = Admission::new(Arc::new(Blacklist([b].into_iter().collect())));
        admission.set_allowed([(pa, a), (pb, b)].into_iter().collect(), now);
        assert_eq!(admission.check(&pb, now), Err(Refusal::Policy("blacklisted")));
        assert_eq!(Refusal::Policy("blacklisted").metric_label(), "blacklisted");
    }
}
