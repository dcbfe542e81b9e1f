//! Networks of real nodes on loopback.
//!
//! Every wait is for a condition, bounded by [`WAIT`]; nothing sleeps for a fixed time.

use std::{future::Future, time::Duration};

use alloy_primitives::Bytes;
use bcos_sdk::crypto::NodeKey;
use prometheus::Registry;
use tokio::sync::mpsc;

use super::*;

/// Bound on every wait: generous, for two shared cores.
const WAIT: Duration = Duration::from_secs(30);
/// Interval of condition polling.
const POLL: Duration = Duration::from_millis(20);

pub(super) struct TestNode {
    pub(super) key: NodeKey,
    pub(super) handle: NetworkHandle,
    pub(super) events: mpsc::Receiver<NetworkEvent>,
    pub(super) registry: Registry,
}

impl TestNode {
    async fn start(key: NodeKey, bootstrap: Vec<(NodeId, Multiaddr)>) -> Self {
        Self::start_with(key, loopback(), bootstrap, Limits::default(), Registry::new()).await
    }

    async fn start_with(
        key: NodeKey,
        listen: Multiaddr,
        bootstrap: Vec<(NodeId, Multiaddr)>,
        limits: Limits,
        registry: Registry,
    ) -> Self {
        let mut config = NetworkConfig::new(listen);
        config.bootstrap = bootstrap;
        config.limits = limits;
        Self::start_config(key, config, registry).await
    }

    pub(super) async fn start_config(key: NodeKey, config: NetworkConfig, registry: Registry) -> Self {
        let (handle, events) = Network::start(config, &key, &registry).await.expect("network starts");
        Self { key, handle, events, registry }
    }

    pub(super) fn id(&self) -> NodeId {
        self.key.node_id()
    }

    pub(super) fn addr(&self) -> Multiaddr {
        self.handle.listen_addrs().into_iter().next().expect("listening")
    }

    /// The next event matching `pick`, skipping others.
    pub(super) async fn next_event<T>(&mut self, mut pick: impl FnMut(NetworkEvent) -> Option<T>) -> T {
        let wait = async {
            loop {
                let event = self.events.recv().await.expect("network running");
                if let Some(found) = pick(event) {
                    return found;
                }
            }
        };
        tokio::time::timeout(WAIT, wait).await.expect("event within the wait")
    }

    /// The next consensus message, with its sender.
    pub(super) async fn next_consensus(&mut self) -> (NodeId, Bytes) {
        self.next_event(|event| match event {
            NetworkEvent::Consensus { from, bytes } => Some((from, bytes)),
            _ => None,
        })
        .await
    }

    pub(super) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        counter(&self.registry, name, labels)
    }
}

pub(super) fn loopback() -> Multiaddr {
    tcp_multiaddr("127.0.0.1:0".parse().expect("socket address"))
}

/// The sum of counter `name` over the series carrying all `labels`.
pub(crate) fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|metric| {
            labels.iter().all(|(key, value)| {
                metric.get_label().iter().any(|label| label.name() == *key && label.value() == *value)
            })
        })
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

/// Waits until `condition` holds.
pub(super) async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Retries `send` until the peer has taken a message: it may refuse one sent while the
/// connection was still settling.
async fn eventually<F, Fut>(mut send: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let wait = async {
        while !send().await {
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("sent within the wait");
}

/// Two nodes, `a` knowing `b`'s address and `b` dialing `a` from its bootstrap list.
async fn pair() -> (TestNode, TestNode) {
    let a = TestNode::start(NodeKey::generate(), Vec::new()).await;
    let b = TestNode::start(NodeKey::generate(), vec![(a.id(), a.addr())]).await;
    a.handle.set_peers(vec![(b.id(), Some(b.addr()))]).await.expect("peers set");
    until("a and b connected", || a.handle.is_connected(&b.id()) && b.handle.is_connected(&a.id())).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_connect_and_broadcast() {
    let (b_key, c_key) = (NodeKey::generate(), NodeKey::generate());
    let mut a = TestNode::start(NodeKey::generate(), Vec::new()).await;
    // The registry allows the later nodes on the earlier ones before they dial (so no dial is
    // refused); the local node is skipped.
    let registry = vec![(a.id(), Some(a.addr())), (b_key.node_id(), None), (c_key.node_id(), None)];
    a.handle.set_peers(registry.clone()).await.expect("peers set");
    let mut b = TestNode::start(b_key, vec![(a.id(), a.addr())]).await;
    b.handle.set_peers(registry).await.expect("peers set");
    let mut c = TestNode::start(c_key, vec![(a.id(), a.addr()), (b.id(), b.addr())]).await;
    until("a full mesh", || [&a, &b, &c].iter().all(|node| node.handle.connected_peers().len() == 2)).await;
    let mut expected = vec![b.id(), c.id()];
    expected.sort();
    assert_eq!(a.handle.connected_peers(), expected);
    for node in [&a, &b, &c] {
        assert_eq!(node.counter("bcos_network_refused_connections_total", &[]), 0, "all peers are allowed");
    }

    let message = Bytes::from_static(b"prepare view 1");
    a.handle.broadcast_consensus(message.clone()).expect("broadcast queued");
    assert_eq!(b.next_consensus().await, (a.id(), message.clone()));
    assert_eq!(c.next_consensus().await, (a.id(), message.clone()));

    // Point to point, and transaction gossip.
    c.handle.send_consensus(b.id(), Bytes::from_static(b"vote")).expect("queued");
    assert_eq!(b.next_consensus().await, (c.id(), Bytes::from_static(b"vote")));
    b.handle.gossip_txs(Bytes::from_static(b"raw txs")).expect("queued");
    for node in [&mut a, &mut c] {
        let got = node
            .next_event(|event| match event {
                NetworkEvent::Transactions { from, bytes } => Some((from, bytes)),
                _ => None,
            })
            .await;
        assert_eq!(got, (b.id(), Bytes::from_static(b"raw txs")));
    }
    assert!(a.counter("bcos_network_messages_total", &[("protocol", "consensus"), ("direction", "out")]) >= 2);
    assert_eq!(b.counter("bcos_network_bytes_total", &[("protocol", "txs"), ("direction", "out")]), 2 * 7);

    for node in [&a, &b, &c] {
        node.handle.shutdown().await;
    }
    assert!(a.handle.connected_peers().is_empty());
    assert!(matches!(a.handle.broadcast_consensus(message), Err(NetworkError::Shutdown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_beyond_the_stream_budget_all_arrive() {
    let (a, mut b) = pair().await;
    let burst = 8 * Limits::default().outbound_streams(Protocol::Consensus);
    for i in 0..burst {
        a.handle.send_consensus(b.id(), Bytes::from(i.to_be_bytes().to_vec())).expect("queued");
    }
    let mut got = Vec::with_capacity(burst);
    while got.len() < burst {
        let (from, bytes) = b.next_consensus().await;
        assert_eq!(from, a.id());
        got.push(usize::from_be_bytes(bytes.as_ref().try_into().expect("8 bytes")));
    }
    got.sort_unstable();
    assert_eq!(got, (0..burst).collect::<Vec<_>>(), "every message once");
    until("every message acknowledged", || {
        a.counter("bcos_network_messages_total", &[("protocol", "consensus"), ("direction", "out")]) == burst as u64
    })
    .await;
    assert_eq!(a.counter("bcos_network_send_failures_total", &[]), 0);
    assert_eq!(b.counter("bcos_network_dropped_messages_total", &[]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_request_gets_the_handlers_response() {
    let (a, mut b) = pair().await;
    let b_id = b.id();
    let server = tokio::spawn(async move {
        let (from, request, reply) = b
            .next_event(|event| match event {
                NetworkEvent::SyncRequest { from, bytes, reply } => Some((from, bytes, reply)),
                _ => None,
            })
            .await;
        let mut response = b"blocks for ".to_vec();
        response.extend_from_slice(&request);
        reply.send(Bytes::from(response)).expect("requester waiting");
        (from, b)
    });
    let response = a.handle.request_sync(b_id, Bytes::from_static(b"1..10")).await;
    let (from, b) = server.await.expect("server task");
    assert_eq!(response.expect("answered"), Bytes::from_static(b"blocks for 1..10"));
    assert_eq!(from, a.id());
    assert_eq!(b.counter("bcos_network_messages_total", &[("protocol", "sync"), ("direction", "out")]), 1);

    // Local refusals, before anything is sent.
    let stranger = NodeKey::generate().node_id();
    assert!(matches!(
        a.handle.request_sync(stranger, Bytes::new()).await,
        Err(NetworkError::NotConnected(id)) if id == stranger
    ));
    let big = Bytes::from(vec![0; limits::MAX_SYNC_REQUEST + 1]);
    let oversize = a.handle.request_sync(b.id(), big).await;
    assert!(matches!(oversize, Err(NetworkError::Oversize { protocol: Protocol::Sync, .. })), "{oversize:?}");

    // A handler that drops the reply leaves the requester without an answer, not hanging.
    let requester = a.handle.clone();
    let request = tokio::spawn(async move { requester.request_sync(b_id, Bytes::from_static(b"x")).await });
    let mut b = b;
    drop(
        b.next_event(|event| match event {
            NetworkEvent::SyncRequest { reply, .. } => Some(reply),
            _ => None,
        })
        .await,
    );
    let unanswered = request.await.expect("request task");
    assert!(matches!(unanswered, Err(NetworkError::NoResponse { .. })), "{unanswered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_outside_the_allowed_set_are_refused() {
    let mut a = TestNode::start(NodeKey::generate(), Vec::new()).await;
    let mut v = TestNode::start(NodeKey::generate(), vec![(a.id(), a.addr())]).await;
    a.handle.set_peers(vec![(v.id(), Some(v.addr()))]).await.expect("peers set");
    // The outsider allows and dials v; v does not allow it.
    let outsider = TestNode::start(NodeKey::generate(), vec![(v.id(), v.addr())]).await;
    until("v refuses the outsider", || {
        v.counter("bcos_network_refused_connections_total", &[("reason", "not_allowed")]) >= 1
    })
    .await;
    until("a and v connected", || v.handle.is_connected(&a.id())).await;
    // Whatever the outsider manages to send while its side believes it is connected.
    for _ in 0..20 {
        let _ = outsider.handle.send_consensus(v.id(), Bytes::from_static(b"intruder"));
        let _ = outsider.handle.gossip_txs(Bytes::from_static(b"intruder"));
        tokio::time::sleep(POLL).await;
    }
    // Only the allowed peer's message surfaces, and the outsider never appears.
    a.handle.send_consensus(v.id(), Bytes::from_static(b"member")).expect("queued");
    let outsider_id = outsider.id();
    let (from, bytes) = v
        .next_event(|event| match event {
            NetworkEvent::Consensus { from, bytes } => Some((from, bytes)),
            NetworkEvent::Transactions { from, .. } | NetworkEvent::PeerConnected(from) => {
                assert_ne!(from, outsider_id, "the outsider surfaced");
                None
            }
            _ => None,
        })
        .await;
    assert_eq!((from, bytes), (a.id(), Bytes::from_static(b"member")));
    assert!(!v.handle.is_connected(&outsider_id));
    assert_eq!(v.handle.connected_peers(), vec![a.id()]);
    while let Ok(event) = v.events.try_recv() {
        match event {
            NetworkEvent::Consensus { from, .. }
            | NetworkEvent::Transactions { from, .. }
            | NetworkEvent::PeerConnected(from) => assert_ne!(from, outsider_id, "the outsider surfaced"),
            _ => {}
        }
    }
    assert_eq!(v.counter("bcos_network_messages_total", &[("direction", "in")]), 1);

    // Taking a peer out of the allowed set disconnects it.
    v.handle.set_peers(Vec::new()).await.expect("peers set");
    // `a` stays allowed: it is on v's bootstrap whitelist.
    assert!(v.handle.is_connected(&a.id()));
    a.handle.set_peers(Vec::new()).await.expect("peers set");
    until("a drops v", || !a.handle.is_connected(&v.id())).await;
    let _ = a.next_event(|event| matches!(event, NetworkEvent::PeerDisconnected(_)).then_some(())).await;
    assert!(a.counter("bcos_network_refused_connections_total", &[("reason", "not_allowed")]) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_dropped_and_the_connection_keeps_working() {
    // The receiver takes consensus messages up to 64 KiB; the sender up to the protocol maximum.
    let mut limits = Limits::default();
    limits.consensus.max_request = 64 * 1024;
    let sender = TestNode::start(NodeKey::generate(), Vec::new()).await;
    let mut receiver = TestNode::start_with(
        NodeKey::generate(),
        loopback(),
        vec![(sender.id(), sender.addr())],
        limits,
        Registry::new(),
    )
    .await;
    sender.handle.set_peers(vec![(receiver.id(), Some(receiver.addr()))]).await.expect("peers set");
    until("connected", || sender.handle.is_connected(&receiver.id()) && receiver.handle.is_connected(&sender.id()))
        .await;

    let big = Bytes::from(vec![7u8; 100 * 1024]);
    sender.handle.send_consensus(receiver.id(), big).expect("within the sender's limit");
    until("the oversized frame is counted", || {
        receiver.counter("bcos_network_dropped_messages_total", &[("protocol", "consensus"), ("reason", "oversize")])
            == 1
    })
    .await;
    until("the sender learns it was not taken", || {
        sender.counter("bcos_network_send_failures_total", &[("protocol", "consensus")]) >= 1
    })
    .await;

    let small = Bytes::from_static(b"commit");
    sender.handle.send_consensus(receiver.id(), small.clone()).expect("queued");
    assert_eq!(receiver.next_consensus().await, (sender.id(), small), "the big one never surfaces");
    assert!(receiver.handle.is_connected(&sender.id()), "one bad frame does not cost the connection");
    assert_eq!(receiver.counter("bcos_network_refused_connections_total", &[]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_rate_limited_then_banned() {
    let mut limits = Limits::default();
    limits.consensus.rate = limits::RateLimit { messages_per_sec: 1, bytes_per_sec: 1024 * 1024 };
    let flooder = TestNode::start(NodeKey::generate(), Vec::new()).await;
    let mut receiver = TestNode::start_with(
        NodeKey::generate(),
        loopback(),
        vec![(flooder.id(), flooder.addr())],
        limits,
        Registry::new(),
    )
    .await;
    flooder.handle.set_peers(vec![(receiver.id(), Some(receiver.addr()))]).await.expect("peers set");
    until("connected", || receiver.handle.is_connected(&flooder.id()) && flooder.handle.is_connected(&receiver.id()))
        .await;

    for i in 0..(limits::MAX_VIOLATIONS * 3) {
        // Errors once the receiver has hung up are expected.
        let _ = flooder.handle.send_consensus(receiver.id(), Bytes::from(i.to_be_bytes().to_vec()));
    }
    until("the flood is rate-limited", || {
        receiver
            .counter("bcos_network_dropped_messages_total", &[("protocol", "consensus"), ("reason", "rate_limited")])
            >= 1
    })
    .await;
    assert!(receiver.next_consensus().await.0 == flooder.id(), "the burst allowance passes");
    until("the flooder is banned", || {
        receiver.counter("bcos_network_refused_connections_total", &[("reason", "banned")]) >= 1
    })
    .await;
    until("the flooder is disconnected", || !receiver.handle.is_connected(&flooder.id())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_redialed() {
    let (mut a, b) = pair().await;
    let (b_key, b_addr, b_registry) = (b.key.clone(), b.addr(), b.registry.clone());
    b.handle.shutdown().await;
    drop(b);
    let b_id = b_key.node_id();
    a.next_event(|event| matches!(event, NetworkEvent::PeerDisconnected(id) if id == b_id).then_some(())).await;
    assert!(matches!(
        a.handle.send_consensus(b_id, Bytes::from_static(b"lost")),
        Err(NetworkError::NotConnected(id)) if id == b_id
    ));

    // Same key, same port, same metrics registry; it allows `a` but does not dial it: `a`'s
    // backoff brings the connection back.
    let mut b = TestNode::start_with(b_key, b_addr.clone(), Vec::new(), Limits::default(), b_registry).await;
    assert_eq!(b.addr(), b_addr);
    b.handle.set_peers(vec![(a.id(), None)]).await.expect("peers set");
    a.next_event(|event| matches!(event, NetworkEvent::PeerConnected(id) if id == b_id).then_some(())).await;
    until("b sees a", || b.handle.is_connected(&a.id())).await;

    let hello = Bytes::from_static(b"welcome back");
    a.handle.send_consensus(b_id, hello.clone()).expect("queued");
    assert_eq!(b.next_consensus().await, (a.id(), hello));
    let reply = Bytes::from_static(b"thanks");
    let a_id = a.id();
    eventually(|| {
        let sent = b.handle.send_consensus(a_id, reply.clone()).is_ok();
        async move { sent }
    })
    .await;
    assert_eq!(a.next_consensus().await, (b_id, reply));
    assert_eq!(counter(&b.registry, "bcos_network_messages_total", &[("direction", "in")]), 1, "fresh metrics");
}
