//! The network task: owns the swarm, executes commands, enforces limits and reports events.

use std::{
    collections::{HashMap, VecDeque},
    io,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use alloy_primitives::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use libp2p::{
    Multiaddr, PeerId, Swarm, connection_limits, multiaddr, ping,
    request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel},
    swarm::{
        ConnectionDenied, DialError, ListenError, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::sync::{mpsc, oneshot};

use super::{
    Command, NetworkError, NetworkEvent, NodeId, Protocol, Result, Shared,
    behaviour::{Behaviour, BehaviourEvent, Refusal},
    certificates::{AdmissionRefusal, CertificateGate, Certificates},
    codec::{Frame, FrameError},
    config::{Limits, tcp_multiaddr},
    hello::PeerVersion,
    identity::node_id_of,
    limits::{
        BAN_DURATION, DNS_TIMEOUT, LISTEN_TIMEOUT, MAX_HELD_PEER_EVENTS, OUTBOX_BACKLOG, RateLimiter, Violations,
    },
    metrics::{INBOUND, NetworkMetrics, OUTBOUND},
    peers::Dialer,
};
use crate::version::NodeVersion;

/// How long the task sleeps when no dial is scheduled (it wakes earlier for any event).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// Inbound limits and abuse record of one peer.
struct Guard {
    consensus: RateLimiter,
    txs: RateLimiter,
    sync: RateLimiter,
    violations: Violations,
}

impl Guard {
    fn new(limits: &Limits, now: Instant) -> Self {
        let limiter = |protocol| {
            let limits = limits.of(protocol);
            RateLimiter::new(limits.rate, limits.max_request, now)
        };
        Self {
            consensus: limiter(Protocol::Consensus),
            txs: limiter(Protocol::Transactions),
            sync: limiter(Protocol::Sync),
            violations: Violations::default(),
        }
    }

    fn limiter(&mut self, protocol: Protocol) -> &mut RateLimiter {
        match protocol {
            Protocol::Consensus => &mut self.consensus,
            Protocol::Transactions => &mut self.txs,
            Protocol::Sync => &mut self.sync,
        }
    }
}

/// A message for a peer.
enum Outgoing {
    /// A one-way message.
    Message(Bytes),
    /// A sync request and where its response goes.
    Sync { bytes: Bytes, reply: SyncReply },
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Self::Message(bytes) | Self::Sync { bytes, .. } => bytes.len(),
        }
    }

    /// Gives up on the message: a sync requester learns why.
    fn fail(self, error: NetworkError) {
        if let Self::Sync { reply, .. } = self {
            let _ = reply.send(Err(error));
        }
    }
}

/// Messages of one protocol for one peer. Requests in flight share the protocol's per-connection
/// stream budget with the peer's requests to us, so at most half of it is used for ours and the
/// rest wait here, in order.
#[derive(Default)]
struct Outbox {
    in_flight: usize,
    backlog: VecDeque<Outgoing>,
}

/// Where the response to one of our sync requests goes.
type SyncReply = oneshot::Sender<Result<Bytes>>;
/// The node's answer to a peer's sync request (`None`: no answer in time).
type Reply = (ResponseChannel<Bytes>, NodeId, Option<Bytes>);
/// The addresses a peer's DNS name resolved to.
type Resolved = (PeerId, Multiaddr, io::Result<Vec<Multiaddr>>);

/// The network task's state.
pub(super) struct Service {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    /// Peer (dis)connection events waiting for room in `events`, in order.
    held: VecDeque<NetworkEvent>,
    shared: Arc<Shared>,
    metrics: NetworkMetrics,
    limits: Limits,
    local_peer: PeerId,
    /// The configured whitelist.
    bootstrap: HashMap<PeerId, (NodeId, Multiaddr)>,
    /// Peers from the node registry.
    registry: HashMap<PeerId, (NodeId, Option<Multiaddr>)>,
    dialer: Dialer,
    /// Certificate admission, when configured.
    gate: Option<CertificateGate>,
    /// Peers with at least one admitted connection.
    connected: HashMap<PeerId, NodeId>,
    guards: HashMap<PeerId, Guard>,
    outboxes: HashMap<(PeerId, Protocol), Outbox>,
    /// Requests in flight: their peer, and for sync requests where the response goes.
    in_flight: HashMap<(Protocol, OutboundRequestId), (PeerId, Option<SyncReply>)>,
    replies: FuturesUnordered<BoxFuture<'static, Reply>>,
    resolving: FuturesUnordered<BoxFuture<'static, Resolved>>,
}

/// Who the network admits: the whitelist (checked, with peer ids), and the certificate rules
/// with the versions this node states beside its certificate.
pub(super) struct AdmissionRules {
    pub(super) bootstrap: Vec<(PeerId, NodeId, Multiaddr)>,
    pub(super) certificates: Option<Certificates>,
    pub(super) version: NodeVersion,
}

impl Service {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
        shared: Arc<Shared>,
        metrics: NetworkMetrics,
        limits: Limits,
        rules: AdmissionRules,
    ) -> Self {
        let AdmissionRules { bootstrap, certificates, version } = rules;
        let local_peer = *swarm.local_peer_id();
        let bootstrap = bootstrap
            .into_iter()
            .filter(|(peer, ..)| *peer != local_peer)
            .map(|(peer, node, addr)| (peer, (node, addr)))
            .collect();
        let mut service = Self {
            swarm,
            commands,
            events,
            held: VecDeque::new(),
            shared,
            metrics,
            limits,
            local_peer,
            bootstrap,
            registry: HashMap::new(),
            dialer: Dialer::default(),
            gate: certificates.map(|certificates| CertificateGate::new(certificates, &version)),
            connected: HashMap::new(),
            guards: HashMap::new(),
            outboxes: HashMap::new(),
            in_flight: HashMap::new(),
            replies: FuturesUnordered::new(),
            resolving: FuturesUnordered::new(),
        };
        service.apply_peer_set(Instant::now());
        service
    }

    pub(super) fn local_peer_id(&self) -> PeerId {
        self.local_peer
    }

    /// Binds `addr` and waits for the listener's first address, handling anything else that
    /// happens meanwhile.
    pub(super) async fn listen(&mut self, addr: Multiaddr) -> Result<()> {
        let listen_error = |reason: String| NetworkError::Listen { addr: addr.clone(), reason };
        let listener = self.swarm.listen_on(addr.clone()).map_err(|e| listen_error(e.to_string()))?;
        let bound = tokio::time::timeout(LISTEN_TIMEOUT, async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::ListenerClosed { listener_id, reason, .. } if listener_id == listener => {
                        return Err(reason.err().map_or_else(|| "listener closed".to_owned(), |e| e.to_string()));
                    }
                    SwarmEvent::ListenerError { listener_id, error } if listener_id == listener => {
                        return Err(error.to_string());
                    }
                    event @ SwarmEvent::NewListenAddr { .. } => {
                        self.on_swarm_event(event);
                        return Ok(());
                    }
                    event => self.on_swarm_event(event),
                }
            }
        })
        .await;
        match bound {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(listen_error(reason)),
            Err(_) => Err(listen_error(format!("no address bound within {LISTEN_TIMEOUT:?}"))),
        }
    }

    /// Runs until shut down or until every handle is dropped.
    pub(super) async fn run(mut self) {
        let sleep = tokio::time::sleep(IDLE_WAKE);
        tokio::pin!(sleep);
        let done = loop {
            let now = Instant::now();
            self.dial_due(now);
            self.enforce_certificates(now, SystemTime::now());
            let certificates_due = self.gate.as_ref().and_then(|gate| gate.next_due(now, SystemTime::now()));
            let wake = self.dialer.next_due().into_iter().chain(certificates_due).min().unwrap_or(now + IDLE_WAKE);
            sleep.as_mut().reset(tokio::time::Instant::from_std(wake));
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { done }) => break Some(done),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some((channel, from, answer)) = self.replies.next(), if !self.replies.is_empty() => {
                    self.on_reply(channel, from, answer);
                }
                Some((peer, name, resolved)) = self.resolving.next(), if !self.resolving.is_empty() => {
                    self.on_resolved(peer, name, resolved);
                }
                // An owned permit: it must not borrow `self`, which the branch bodies need.
                permit = self.events.clone().reserve_owned(), if !self.held.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.held.pop_front() {
                            permit.send(event);
                        }
                    }
                    Err(_) => self.held.clear(),
                },
                () = &mut sleep => {}
            }
        };
        // Dropping the swarm closes the listener and every connection.
        drop(self.swarm);
        self.shared.connected.write().clear();
        self.shared.listen_addrs.write().clear();
        self.metrics.connected_peers.set(0);
        for (_, (_, reply)) in self.in_flight.drain() {
            if let Some(reply) = reply {
                let _ = reply.send(Err(NetworkError::Shutdown));
            }
        }
        for (_, outbox) in self.outboxes.drain() {
            outbox.backlog.into_iter().for_each(|message| message.fail(NetworkError::Shutdown));
        }
        tracing::info!(target: "network", "network stopped");
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send { protocol, to: Some(node), bytes } => match self.connected_peer(&node) {
                Some(peer) => self.enqueue(protocol, peer, Outgoing::Message(bytes)),
                None => {
                    self.metrics.send_failure(protocol, "not_connected");
                    tracing::debug!(target: "network", %node, %protocol, "dropping message to unconnected peer");
                }
            },
            Command::Send { protocol, to: None, bytes } => {
                let peers: Vec<PeerId> = self.connected.keys().copied().collect();
                for peer in peers {
                    self.enqueue(protocol, peer, Outgoing::Message(bytes.clone()));
                }
            }
            Command::Sync { to, bytes, reply } => match self.connected_peer(&to) {
                Some(peer) => self.enqueue(Protocol::Sync, peer, Outgoing::Sync { bytes, reply }),
                None => {
                    self.metrics.send_failure(Protocol::Sync, "not_connected");
                    let _ = reply.send(Err(NetworkError::NotConnected(to)));
                }
            },
            Command::SetPeers { peers, done } => {
                self.registry = peers
                    .into_iter()
                    .filter(|(peer, ..)| *peer != self.local_peer)
                    .map(|(peer, node, addr)| (peer, (node, addr)))
                    .collect();
                self.apply_peer_set(Instant::now());
                let _ = done.send(());
            }
            Command::RecheckCertificates { done } => {
                if let Some(gate) = &mut self.gate {
                    let refused = gate.recheck(SystemTime::now());
                    self.drop_refused(refused);
                }
                let _ = done.send(());
            }
            Command::Shutdown { done } => {
                // Handled by the loop; kept total for the match.
                let _ = done.send(());
            }
        }
    }

    fn connected_peer(&self, node: &NodeId) -> Option<PeerId> {
        self.connected.iter().find_map(|(peer, n)| (n == node).then_some(*peer))
    }

    /// Sends `message` to the connected `peer` now, or queues it behind the requests in flight.
    fn enqueue(&mut self, protocol: Protocol, peer: PeerId, message: Outgoing) {
        let outbox = self.outboxes.entry((peer, protocol)).or_default();
        if outbox.in_flight < self.limits.outbound_streams(protocol) {
            self.dispatch(protocol, peer, message);
        } else if outbox.backlog.len() < OUTBOX_BACKLOG {
            outbox.backlog.push_back(message);
        } else {
            self.metrics.send_failure(protocol, "backlog_full");
            tracing::debug!(target: "network", %peer, %protocol, "outbox full; dropping message");
            message.fail(NetworkError::Backpressure);
        }
    }

    fn dispatch(&mut self, protocol: Protocol, peer: PeerId, message: Outgoing) {
        self.metrics.message(protocol, OUTBOUND, message.len());
        let (bytes, reply) = match message {
            Outgoing::Message(bytes) => (bytes, None),
            Outgoing::Sync { bytes, reply } => (bytes, Some(reply)),
        };
        let id = self.swarm.behaviour_mut().protocol(protocol).send_request(&peer, Frame::Data(bytes));
        self.in_flight.insert((protocol, id), (peer, reply));
        self.outboxes.entry((peer, protocol)).or_default().in_flight += 1;
    }

    /// A request finished (answered or failed): frees its slot for the next queued message.
    fn complete(&mut self, protocol: Protocol, id: OutboundRequestId) -> Option<SyncReply> {
        let (peer, reply) = self.in_flight.remove(&(protocol, id))?;
        let connected = self.connected.contains_key(&peer);
        let slots = self.limits.outbound_streams(protocol);
        let mut next = Vec::new();
        if let Some(outbox) = self.outboxes.get_mut(&(peer, protocol)) {
            outbox.in_flight = outbox.in_flight.saturating_sub(1);
            while connected && outbox.in_flight + next.len() < slots {
                let Some(message) = outbox.backlog.pop_front() else { break };
                next.push(message);
            }
            if outbox.in_flight == 0 && outbox.backlog.is_empty() && next.is_empty() {
                self.outboxes.remove(&(peer, protocol));
            }
        }
        for message in next {
            self.dispatch(protocol, peer, message);
        }
        reply
    }

    /// `peer` lost its last connection: its queued messages are dropped (requests in flight fail
    /// through their own events).
    fn drop_outboxes(&mut self, peer: &PeerId, node: NodeId) {
        for protocol in Protocol::ALL {
            if let Some(outbox) = self.outboxes.get_mut(&(*peer, protocol)) {
                for message in outbox.backlog.drain(..) {
                    self.metrics.send_failure(protocol, "disconnected");
                    message.fail(NetworkError::Disconnected { peer: node, protocol });
                }
                if outbox.in_flight == 0 {
                    self.outboxes.remove(&(*peer, protocol));
                }
            }
        }
    }

    /// Recomputes the allowed set and dial targets from the whitelist and the registry, and
    /// closes connections of peers no longer admitted.
    fn apply_peer_set(&mut self, now: Instant) {
        let mut allowed: HashMap<PeerId, NodeId> =
            self.bootstrap.iter().map(|(peer, (node, _))| (*peer, *node)).collect();
        allowed.extend(self.registry.iter().map(|(peer, (node, _))| (*peer, *node)));
        // A registry address is the newer word; the whitelist's serves when it has none.
        let mut targets: HashMap<PeerId, Multiaddr> =
            self.bootstrap.iter().map(|(peer, (_, addr))| (*peer, addr.clone())).collect();
        targets.extend(self.registry.iter().filter_map(|(peer, (_, addr))| Some((*peer, addr.clone()?))));
        let connected = &self.connected;
        self.dialer.set_targets(targets, |peer| connected.contains_key(peer), now);
        self.guards.retain(|peer, _| allowed.contains_key(peer));
        self.swarm.behaviour_mut().admission.set_allowed(allowed, now);

        let admission = &self.swarm.behaviour().admission;
        // Every connected peer, admitted or still owing its certificate.
        let refused: Vec<(PeerId, Refusal)> = self
            .swarm
            .connected_peers()
            .filter_map(|peer| admission.check(peer, now).err().map(|r| (*peer, r)))
            .collect();
        for (peer, refusal) in refused {
            self.metrics.refuse(refusal.metric_label());
            tracing::info!(target: "network", %peer, %refusal, "disconnecting peer no longer admitted");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn dial_due(&mut self, now: Instant) {
        for (peer, addr) in self.dialer.due(now) {
            if self.swarm.is_connected(&peer) {
                self.dialer.connected(&peer, now);
            } else if let Err(refusal) = self.swarm.behaviour().admission.check(&peer, now) {
                // Banned or refused by the policy: try again later, when that may have changed.
                tracing::debug!(target: "network", %peer, %refusal, "not dialing a refused peer");
                self.dialer.dial_failed(&peer, now);
            } else if is_dns(&addr) {
                self.resolving.push(resolve(peer, addr).boxed());
            } else {
                self.dial(peer, vec![addr]);
            }
        }
    }

    fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        tracing::debug!(target: "network", %peer, ?addrs, "dialing");
        let opts = DialOpts::peer_id(peer).addresses(addrs).condition(PeerCondition::DisconnectedAndNotDialing).build();
        if let Err(error) = self.swarm.dial(opts) {
            match &error {
                DialError::DialPeerConditionFalse(_) if self.swarm.is_connected(&peer) => {
                    self.dialer.connected(&peer, Instant::now());
                    return;
                }
                DialError::Denied { cause } => self.count_refusal(cause, &peer),
                _ => tracing::debug!(target: "network", %peer, %error, "dial failed"),
            }
            self.dialer.dial_failed(&peer, Instant::now());
        }
    }

    fn on_resolved(&mut self, peer: PeerId, name: Multiaddr, resolved: io::Result<Vec<Multiaddr>>) {
        match resolved {
            Ok(addrs) if !addrs.is_empty() => self.dial(peer, addrs),
            Ok(_) => {
                tracing::debug!(target: "network", %peer, %name, "name resolved to no address of its family");
                self.dialer.dial_failed(&peer, Instant::now());
            }
            Err(error) => {
                tracing::debug!(target: "network", %peer, %name, %error, "cannot resolve peer address");
                self.dialer.dial_failed(&peer, Instant::now());
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = Instant::now();
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, .. } => {
                if num_established.get() != 1 {
                    return;
                }
                let Some(node) = node_id_of(&peer_id) else {
                    // Admission refuses such peers before this point.
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                tracing::info!(target: "network", %node, addr = %endpoint.get_remote_address(), "peer connected");
                match &mut self.gate {
                    Some(gate) => {
                        gate.connected(peer_id, now);
                        let chain = gate.own_message();
                        self.swarm.behaviour_mut().certificates.send_request(&peer_id, Frame::Data(chain));
                    }
                    None => self.admit(peer_id, node, None, now),
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                if num_established != 0 {
                    return;
                }
                if let Some(gate) = &mut self.gate {
                    gate.disconnected(&peer_id);
                }
                let Some(node) = self.connected.remove(&peer_id) else {
                    // A peer dropped before admission still frees its dial slot.
                    self.dialer.disconnected(&peer_id, now);
                    return;
                };
                self.shared.connected.write().remove(&node);
                self.metrics.connected_peers.set(gauge(self.connected.len()));
                self.dialer.disconnected(&peer_id, now);
                self.drop_outboxes(&peer_id, node);
                let cause = cause.map(|c| c.to_string());
                tracing::info!(target: "network", %node, ?cause, "peer disconnected");
                self.notify(NetworkEvent::PeerDisconnected(node));
            }
            SwarmEvent::IncomingConnectionError { error, peer_id, send_back_addr, .. } => match &error {
                ListenError::Denied { cause } => {
                    let peer = peer_id.map(|p| p.to_string()).unwrap_or_default();
                    let reason = self.count_refusal_label(cause);
                    tracing::info!(target: "network", %peer, addr = %send_back_addr, reason, "refused inbound connection");
                }
                _ => tracing::debug!(target: "network", addr = %send_back_addr, %error, "inbound connection failed"),
            },
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let DialError::Denied { cause } = &error {
                    let reason = self.count_refusal_label(cause);
                    tracing::info!(target: "network", ?peer_id, reason, "refused outbound connection");
                } else {
                    tracing::debug!(target: "network", ?peer_id, %error, "dial failed");
                }
                if let Some(peer) = peer_id {
                    self.dialer.dial_failed(&peer, now);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(target: "network", %address, "listening");
                self.shared.listen_addrs.write().push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.shared.listen_addrs.write().retain(|a| *a != address);
            }
            SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                self.shared.listen_addrs.write().retain(|a| !addresses.contains(a));
                tracing::error!(target: "network", ?addresses, ?reason, "listener closed");
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(target: "network", %error, "listener error");
            }
            _ => {}
        }
    }

    /// `peer` passed admission, stating `version`: it counts as connected from now on.
    fn admit(&mut self, peer: PeerId, node: NodeId, version: Option<PeerVersion>, now: Instant) {
        self.connected.insert(peer, node);
        let (software, protocol) = match &version {
            Some(version) => (version.software.as_deref().unwrap_or("unstated"), Some(version.protocol)),
            None => ("unknown", None),
        };
        tracing::info!(target: "network", %node, software, protocol, "peer admitted");
        self.shared.connected.write().insert(node, version);
        self.metrics.connected_peers.set(gauge(self.connected.len()));
        self.dialer.connected(&peer, now);
        self.notify(NetworkEvent::PeerConnected(node));
    }

    /// A peer presented its versions and certificate chain.
    fn on_certificate(&mut self, peer: PeerId, request: Frame, channel: ResponseChannel<Bytes>) {
        // The acknowledgement; failure means the stream is gone already.
        let _ = self.swarm.behaviour_mut().certificates.send_response(channel, Bytes::new());
        let Some(gate) = &mut self.gate else { return };
        let Some(node) = node_id_of(&peer) else { return };
        let presented = match request {
            Frame::Data(bytes) => gate.present(peer, node, &bytes, SystemTime::now()),
            Frame::Rejected(error) => Err(AdmissionRefusal::Malformed(error.to_string())),
        };
        match presented {
            Ok(Some(version)) => self.admit(peer, node, Some(version), Instant::now()),
            Ok(None) => {}
            Err(refusal) => {
                if let Some(gate) = &mut self.gate {
                    gate.disconnected(&peer);
                }
                self.drop_refused(vec![(peer, refusal)]);
            }
        }
    }

    /// Drops peers whose certificates were refused, counting each reason.
    fn drop_refused(&mut self, refused: Vec<(PeerId, AdmissionRefusal)>) {
        for (peer, refusal) in refused {
            self.metrics.refuse(refusal.metric_label());
            tracing::warn!(target: "network", %peer, %refusal, "dropping peer: admission refused");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Drops peers that owe a certificate past the deadline, and peers whose certificate
    /// expired.
    fn enforce_certificates(&mut self, now: Instant, wall: SystemTime) {
        let Some(gate) = &mut self.gate else { return };
        let mut refused: Vec<(PeerId, AdmissionRefusal)> =
            gate.overdue(now).into_iter().map(|peer| (peer, AdmissionRefusal::NoCertificate)).collect();
        if gate.any_expired(wall) {
            refused.extend(gate.recheck(wall));
        }
        if !refused.is_empty() {
            self.drop_refused(refused);
        }
    }

    fn count_refusal(&self, cause: &ConnectionDenied, peer: &PeerId) {
        let reason = self.count_refusal_label(cause);
        tracing::debug!(target: "network", %peer, reason, "connection refused");
    }

    /// Counts a denied connection and returns its reason label.
    fn count_refusal_label(&self, cause: &ConnectionDenied) -> &'static str {
        let reason = if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            refusal.metric_label()
        } else if cause.downcast_ref::<connection_limits::Exceeded>().is_some() {
            "connection_limit"
        } else {
            "denied"
        };
        self.metrics.refuse(reason);
        reason
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Admission(never) | BehaviourEvent::ConnectionLimits(never) => match never {},
            BehaviourEvent::Ping(ping::Event { peer, connection, result }) => {
                if let Err(failure) = result {
                    tracing::debug!(target: "network", %peer, %failure, "ping failed; closing the connection");
                    self.swarm.close_connection(connection);
                }
            }
            BehaviourEvent::Certificates(event) => match event {
                request_response::Event::Message {
                    peer,
                    message: request_response::Message::Request { request, channel, .. },
                    ..
                } => self.on_certificate(peer, request, channel),
                request_response::Event::OutboundFailure { peer, error, .. } => {
                    tracing::debug!(target: "network", %peer, %error, "certificate chain not delivered");
                }
                _ => {}
            },
            BehaviourEvent::Consensus(event) => self.on_protocol_event(Protocol::Consensus, event),
            BehaviourEvent::Txs(event) => self.on_protocol_event(Protocol::Transactions, event),
            BehaviourEvent::Sync(event) => self.on_protocol_event(Protocol::Sync, event),
        }
    }

    fn on_protocol_event(&mut self, protocol: Protocol, event: request_response::Event<Frame, Bytes>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_request(protocol, peer, request, channel);
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.complete(protocol, request_id) {
                        self.metrics.message(protocol, INBOUND, response.len());
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                self.on_outbound_failure(protocol, peer, request_id, error);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(target: "network", %peer, %protocol, %error, "inbound stream failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_request(&mut self, protocol: Protocol, peer: PeerId, request: Frame, channel: ResponseChannel<Bytes>) {
        let now = Instant::now();
        // Dropping `channel` unanswered closes the stream: the sender learns nothing arrived.
        let bytes = match request {
            Frame::Data(bytes) => bytes,
            Frame::Rejected(error) => {
                self.metrics.drop(protocol, error.metric_label());
                tracing::debug!(target: "network", %peer, %protocol, %error, "dropping malformed message");
                self.violation(peer, now);
                return;
            }
        };
        let Ok(from) = self.swarm.behaviour().admission.check(&peer, now) else {
            self.metrics.drop(protocol, "not_allowed");
            return;
        };
        if self.gate.as_ref().is_some_and(|gate| gate.is_pending(&peer)) {
            // Sent by a peer that verified our chain before we verified its own.
            self.metrics.drop(protocol, "not_admitted");
            return;
        }
        let limits = &self.limits;
        let guard = self.guards.entry(peer).or_insert_with(|| Guard::new(limits, now));
        if !guard.limiter(protocol).try_acquire(now, bytes.len()) {
            self.metrics.drop(protocol, "rate_limited");
            tracing::debug!(target: "network", %from, %protocol, "dropping message over the rate limit");
            self.violation(peer, now);
            return;
        }
        self.metrics.message(protocol, INBOUND, bytes.len());
        match protocol {
            Protocol::Consensus | Protocol::Transactions => {
                let event = if protocol == Protocol::Consensus {
                    NetworkEvent::Consensus { from, bytes }
                } else {
                    NetworkEvent::Transactions { from, bytes }
                };
                if self.deliver(protocol, event) {
                    // The empty acknowledgement; failure means the stream is gone already.
                    let _ = self.swarm.behaviour_mut().protocol(protocol).send_response(channel, Bytes::new());
                }
            }
            Protocol::Sync => {
                let (reply, answer) = oneshot::channel();
                if self.deliver(protocol, NetworkEvent::SyncRequest { from, bytes, reply }) {
                    let timeout = self.limits.sync.timeout;
                    self.replies.push(
                        async move {
                            let answer = tokio::time::timeout(timeout, answer).await.ok().and_then(|a| a.ok());
                            (channel, from, answer)
                        }
                        .boxed(),
                    );
                }
            }
        }
    }

    fn on_reply(&mut self, channel: ResponseChannel<Bytes>, to: NodeId, answer: Option<Bytes>) {
        let Some(response) = answer else {
            self.metrics.send_failure(Protocol::Sync, "no_answer");
            tracing::debug!(target: "network", %to, "sync request left unanswered");
            return;
        };
        let limit = self.limits.sync.max_response;
        if response.len() > limit {
            self.metrics.send_failure(Protocol::Sync, "oversize");
            tracing::error!(target: "network", %to, size = response.len(), limit, "sync response over the limit not sent");
            return;
        }
        let len = response.len();
        match self.swarm.behaviour_mut().sync.send_response(channel, response) {
            Ok(()) => self.metrics.message(Protocol::Sync, OUTBOUND, len),
            Err(_) => {
                self.metrics.send_failure(Protocol::Sync, "closed");
                tracing::debug!(target: "network", %to, "sync requester gone before the answer");
            }
        }
    }

    fn on_outbound_failure(&mut self, protocol: Protocol, peer: PeerId, id: OutboundRequestId, error: OutboundFailure) {
        let node = node_id_of(&peer).unwrap_or_default();
        let error = match error {
            OutboundFailure::Timeout => NetworkError::Timeout { peer: node, protocol },
            OutboundFailure::ConnectionClosed => NetworkError::Disconnected { peer: node, protocol },
            OutboundFailure::DialFailure => NetworkError::NotConnected(node),
            OutboundFailure::UnsupportedProtocols => NetworkError::PeerMisbehaved {
                peer: node,
                protocol,
                reason: "does not support the protocol".to_owned(),
            },
            OutboundFailure::Io(error) => match FrameError::from_io(&error) {
                Some(frame) => {
                    if frame.is_bad_peer() {
                        self.metrics.drop(protocol, frame.metric_label());
                        self.violation(peer, Instant::now());
                    }
                    NetworkError::from_frame(node, protocol, frame)
                }
                None => NetworkError::Io { peer: node, protocol, reason: error.to_string() },
            },
        };
        self.metrics.send_failure(protocol, error.metric_label());
        tracing::debug!(target: "network", %protocol, %error, "message not delivered");
        if let Some(reply) = self.complete(protocol, id) {
            let _ = reply.send(Err(error));
        }
    }

    /// Records a violation by `peer`; past the limit it is disconnected and banned.
    fn violation(&mut self, peer: PeerId, now: Instant) {
        let limits = &self.limits;
        let guard = self.guards.entry(peer).or_insert_with(|| Guard::new(limits, now));
        if !guard.violations.record(now) {
            return;
        }
        let until = now + BAN_DURATION;
        tracing::warn!(target: "network", %peer, ban = ?BAN_DURATION, "peer keeps sending bad messages; banning it");
        self.metrics.refuse(Refusal::Banned.metric_label());
        self.swarm.behaviour_mut().admission.ban(peer, until, now);
        self.dialer.defer(&peer, until);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// Hands a message to the node; `false` (counted) if its queue is full.
    fn deliver(&mut self, protocol: Protocol, event: NetworkEvent) -> bool {
        if !self.held.is_empty() {
            // Keep peer events first; the queue was full a moment ago.
            self.metrics.drop(protocol, "queue_full");
            return false;
        }
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.drop(protocol, "queue_full");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.drop(protocol, "no_receiver");
                false
            }
        }
    }

    /// Hands a peer event to the node, holding it back while the queue is full.
    fn notify(&mut self, event: NetworkEvent) {
        if self.held.is_empty() {
            match self.events.try_send(event) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(event)) => self.held.push_back(event),
            }
        } else {
            self.held.push_back(event);
        }
        if self.held.len() > MAX_HELD_PEER_EVENTS {
            self.held.pop_front();
            tracing::warn!(target: "network", "event queue stalled; dropped the oldest peer event");
        }
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn is_dns(addr: &Multiaddr) -> bool {
    matches!(
        addr.iter().next(),
        Some(multiaddr::Protocol::Dns(_) | multiaddr::Protocol::Dns4(_) | multiaddr::Protocol::Dns6(_))
    )
}

/// Resolves `/dns|dns4|dns6/<name>/tcp/<port>` with the system resolver (so `/etc/hosts`
/// applies), keeping the family a `dns4` or `dns6` address asks for.
async fn resolve(peer: PeerId, addr: Multiaddr) -> Resolved {
    let mut protocols = addr.iter();
    let (name, family) = match protocols.next() {
        Some(multiaddr::Protocol::Dns(name)) => (name, None),
        Some(multiaddr::Protocol::Dns4(name)) => (name, Some(true)),
        Some(multiaddr::Protocol::Dns6(name)) => (name, Some(false)),
        _ => return (peer, addr.clone(), Err(io::Error::new(io::ErrorKind::InvalidInput, "not a DNS address"))),
    };
    let Some(multiaddr::Protocol::Tcp(port)) = protocols.next() else {
        return (peer, addr.clone(), Err(io::Error::new(io::ErrorKind::InvalidInput, "no TCP port")));
    };
    let lookup = tokio::net::lookup_host((name.as_ref(), port));
    let resolved = match tokio::time::timeout(DNS_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => {
            Ok(addrs.filter(|a| family.is_none_or(|v4| a.is_ipv4() == v4)).map(tcp_multiaddr).collect::<Vec<_>>())
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "name resolution timed out")),
    };
    (peer, addr.clone(), resolved)
}
