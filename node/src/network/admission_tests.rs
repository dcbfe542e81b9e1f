//! Certificate admission between real nodes on loopback: who gets connected, who is refused (and
//! counted under which reason), and who is dropped while connected.

use std::time::{Duration, SystemTime};

use bcos_sdk::{
    crypto::NodeKey,
    pki::{ChainCa, Member, MemberCa, RevocationList, Validity},
};
use prometheus::Registry;

use super::{
    tests::{TestNode, loopback, until},
    *,
};
use crate::version::{NodeVersion, ProtocolRange};

const DAY: Duration = Duration::from_secs(86_400);
const REFUSED: &str = "bcos_network_refused_connections_total";

/// A chain CA with one member CA.
struct Pki {
    ca: ChainCa,
    member: MemberCa,
}

impl Pki {
    fn new(chain: &str) -> Self {
        let validity = Validity::starting(SystemTime::now() - DAY, 3650 * DAY);
        let ca = ChainCa::generate(chain, validity).expect("chain CA");
        let member = ca.issue_member_ca(&Member { name: "Bank".into(), id: "bank".into() }, validity).expect("member");
        Self { ca, member }
    }

    /// `[member CA, node]` for `node`.
    fn chain(&self, node: &NodeId, validity: Validity) -> Vec<Vec<u8>> {
        let cert = self.member.issue_node(node, validity).expect("node certificate");
        vec![self.member.cert().der().to_vec(), cert.der().to_vec()]
    }
}

fn year() -> Validity {
    Validity::starting(SystemTime::now() - DAY, 365 * DAY)
}

/// The network configuration of a node that trusts `trusted`'s CA and presents `chain`.
fn config(
    trusted: &Pki,
    chain: Vec<Vec<u8>>,
    revoked: RevocationList,
    bootstrap: Vec<(NodeId, Multiaddr)>,
) -> NetworkConfig {
    let mut config = NetworkConfig::new(loopback());
    config.bootstrap = bootstrap;
    config.certificates = Some(Certificates { ca: trusted.ca.cert().der().to_vec(), chain, revoked });
    config
}

/// Starts a node that trusts `trusted`'s CA and presents `chain`.
async fn start(
    key: NodeKey,
    trusted: &Pki,
    chain: Vec<Vec<u8>>,
    revoked: RevocationList,
    bootstrap: Vec<(NodeId, Multiaddr)>,
) -> TestNode {
    TestNode::start_config(key, config(trusted, chain, revoked, bootstrap), Registry::new()).await
}

/// An honest node `a` of `pki` that allows `others` (the registry's word) but has not dialed them.
async fn honest(pki: &Pki, others: &[NodeId]) -> (TestNode, RevocationList) {
    let key = NodeKey::generate();
    let revoked = RevocationList::default();
    let node = start(key.clone(), pki, pki.chain(&key.node_id(), year()), revoked.clone(), Vec::new()).await;
    node.handle.set_peers(others.iter().map(|id| (*id, None)).collect()).await.expect("peers set");
    (node, revoked)
}

/// Starts a node of `pki` with a valid certificate that runs the release `version` and dials
/// `bootstrap`.
async fn start_release(key: NodeKey, pki: &Pki, bootstrap: Vec<(NodeId, Multiaddr)>, version: NodeVersion) -> TestNode {
    let chain = pki.chain(&key.node_id(), year());
    let config = NetworkConfig { version, ..config(pki, chain, RevocationList::default(), bootstrap) };
    TestNode::start_config(key, config, Registry::new()).await
}

/// A node of a release reporting `software` and speaking the protocol versions `min..=max`.
fn release(software: &str, min: u32, max: u32) -> NodeVersion {
    NodeVersion::this_build().reporting(software).expect("valid version").speaking(ProtocolRange { min, max })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_valid_chains_are_admitted_and_exchange_messages() {
    let pki = Pki::new("chain");
    let b_key = NodeKey::generate();
    let (mut a, _) = honest(&pki, &[b_key.node_id()]).await;
    let b_chain = pki.chain(&b_key.node_id(), year());
    let b = start(b_key, &pki, b_chain, RevocationList::default(), vec![(a.id(), a.addr())]).await;
    let b_id = b.id();
    a.next_event(|event| matches!(event, NetworkEvent::PeerConnected(id) if id == b_id).then_some(())).await;
    until("b admitted a", || b.handle.is_connected(&a.id())).await;
    b.handle.send_consensus(a.id(), Bytes::from_static(b"vote")).expect("sent");
    assert_eq!(a.next_consensus().await, (b.id(), Bytes::from_static(b"vote")));
    assert_eq!(a.counter(REFUSED, &[]), 0);
}

/// Node `a` running `a_release`, and node `b` running `b_release` that dials it.
async fn releases(a_release: NodeVersion, b_release: NodeVersion) -> (TestNode, TestNode) {
    let pki = Pki::new("chain");
    let b_key = NodeKey::generate();
    let a = start_release(NodeKey::generate(), &pki, Vec::new(), a_release).await;
    a.handle.set_peers(vec![(b_key.node_id(), None)]).await.expect("peers set");
    let b = start_release(b_key, &pki, vec![(a.id(), a.addr())], b_release).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_consecutive_releases_are_admitted_and_know_each_others_versions() {
    // Release N speaks protocol 1; release N+1 speaks 1 and 2.
    let (a, b) = releases(release("1.0.0", 1, 1), release("1.1.0", 1, 2)).await;
    until("both admitted", || a.handle.is_connected(&b.id()) && b.handle.is_connected(&a.id())).await;
    let stated = |software: &str| Some(PeerVersion { software: Some(software.to_owned()), protocol: 1 });
    assert_eq!(a.handle.peers(), vec![(b.id(), stated("1.1.0"))]);
    assert_eq!(b.handle.peers(), vec![(a.id(), stated("1.0.0"))]);
    assert_eq!(a.counter(REFUSED, &[]) + b.counter(REFUSED, &[]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sharing_no_protocol_version_is_refused_on_both_sides() {
    // A release two steps ahead that dropped protocol 1.
    let (a, c) = releases(release("1.0.0", 1, 1), release("1.2.0", 2, 3)).await;
    let label = [("reason", "incompatible_protocol")];
    until("both refuse", || a.counter(REFUSED, &label) > 0 && c.counter(REFUSED, &label) > 0).await;
    assert!(a.handle.peers().is_empty() && c.handle.peers().is_empty(), "never admitted");
}

/// Starts a node presenting `chain` (trusting `trusts`) that dials `a`, and waits until `a`
/// counted one refusal with `reason`; the node is never admitted.
async fn refused_by(a: &TestNode, key: NodeKey, trusts: &Pki, chain: Vec<Vec<u8>>, reason: &str) {
    let before = a.counter(REFUSED, &[("reason", reason)]);
    let intruder = start(key, trusts, chain, RevocationList::default(), vec![(a.id(), a.addr())]).await;
    until(&format!("a refusal for {reason}"), || a.counter(REFUSED, &[("reason", reason)]) > before).await;
    assert!(!a.handle.is_connected(&intruder.id()), "{reason}: never admitted");
    intruder.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_expired_and_mismatched_certificates_are_refused() {
    let pki = Pki::new("chain");
    let foreign = Pki::new("another chain");
    let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
    let ids: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
    // Every intruder is in the registry: only its certificate stands in the way.
    let (a, _) = honest(&pki, &ids).await;

    // A chain from another CA (the intruder trusts that CA, so it sends it willingly).
    refused_by(&a, keys[0].clone(), &foreign, foreign.chain(&ids[0], year()), "foreign_ca").await;
    // An expired certificate from the right CA.
    let expired = Validity::starting(SystemTime::now() - 3 * DAY, DAY);
    refused_by(&a, keys[1].clone(), &pki, pki.chain(&ids[1], expired), "certificate_expired").await;
    // A valid certificate of another node (copied from it): the key proved in Noise differs.
    let stolen = pki.chain(&ids[3], year());
    refused_by(&a, keys[2].clone(), &pki, stolen, "key_mismatch").await;
    assert!(a.handle.connected_peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_certificates_is_dropped_after_the_timeout() {
    let pki = Pki::new("chain");
    let b_key = NodeKey::generate();
    let (a, _) = honest(&pki, &[b_key.node_id()]).await;
    let mut config = NetworkConfig::new(loopback());
    config.bootstrap = vec![(a.id(), a.addr())];
    let b = TestNode::start_config(b_key, config, Registry::new()).await;
    until("b's connection refused for no certificate", || a.counter(REFUSED, &[("reason", "no_certificate")]) > 0)
        .await;
    assert!(!a.handle.is_connected(&b.id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_peer_is_dropped_at_once_and_refused_when_it_returns() {
    let pki = Pki::new("chain");
    let b_key = NodeKey::generate();
    let (mut a, revoked) = honest(&pki, &[b_key.node_id()]).await;
    let cert = pki.member.issue_node(&b_key.node_id(), year()).expect("node certificate");
    let chain = vec![pki.member.cert().der().to_vec(), cert.der().to_vec()];
    let b = start(b_key, &pki, chain, RevocationList::default(), vec![(a.id(), a.addr())]).await;
    let b_id = b.id();
    a.next_event(|event| matches!(event, NetworkEvent::PeerConnected(id) if id == b_id).then_some(())).await;

    assert!(revoked.replace([cert.serial().clone()]));
    a.handle.recheck_certificates().await.expect("rechecked");
    a.next_event(|event| matches!(event, NetworkEvent::PeerDisconnected(id) if id == b_id).then_some(())).await;
    assert!(a.counter(REFUSED, &[("reason", "certificate_revoked")]) >= 1);
    // b keeps redialing; every attempt is refused for the same reason.
    until("b refused again", || a.counter(REFUSED, &[("reason", "certificate_revoked")]) >= 2).await;
    assert!(!a.handle.is_connected(&b_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_is_dropped_when_its_certificate_expires() {
    let pki = Pki::new("chain");
    let b_key = NodeKey::generate();
    let (mut a, _) = honest(&pki, &[b_key.node_id()]).await;
    // Valid for a few more seconds: admitted now, dropped at expiry without any prompt.
    let not_before = SystemTime::now() - DAY;
    let expiring = Validity::starting(not_before, DAY + Duration::from_secs(4));
    let chain = pki.chain(&b_key.node_id(), expiring);
    let b = start(b_key, &pki, chain, RevocationList::default(), vec![(a.id(), a.addr())]).await;
    let b_id = b.id();
    a.next_event(|event| matches!(event, NetworkEvent::PeerConnected(id) if id == b_id).then_some(())).await;
    a.next_event(|event| matches!(event, NetworkEvent::PeerDisconnected(id) if id == b_id).then_some(())).await;
    assert!(SystemTime::now() > not_before + DAY + Duration::from_secs(4), "not dropped before the expiry");
    assert!(a.counter(REFUSED, &[("reason", "certificate_expired")]) >= 1);
}
