//! Intruders against a running chain on a real libp2p network: four honest PBFT nodes run the
//! real driver, admit each other by certificate and know every intruder's node id (as if the
//! registry or their whitelist listed it), so only the certificate checks, the blacklist and the
//! consensus rules stand in the way. The chain must keep committing, refuse each intruder for
//! its own reason, and never count a vote from a node outside the registry.

use std::{
    collections::HashSet,
    time::{Duration, SystemTime},
};

use bcos_consensus::pbft::{CommitVote, PbftMessage, Prepare};
use bcos_sdk::{
    config::ConsensusMode,
    crypto::NodeKey,
    pki::{ChainCa, Member, Validity},
};
use prometheus::Registry;

use super::{
    driver::WireMessage,
    driver_tests::{ChainSpec, TestNode, commits_everywhere, start},
    switch::ConsensusMessage,
};
use crate::{
    network::{Network, NetworkConfig, NetworkHandle, NodeId, tcp_multiaddr, tests::counter},
    storage::BlockReader,
};

const DAY: Duration = Duration::from_secs(86_400);
const WAIT: Duration = Duration::from_secs(60);

/// An intruder's network: it trusts whatever it presents, and dials every honest node.
async fn intruder(key: &NodeKey, certificates: crate::network::Certificates, honest: &[TestNode]) -> NetworkHandle {
    let mut config = NetworkConfig::new(tcp_multiaddr(([127, 0, 0, 1], 0).into()));
    config.certificates = Some(certificates);
    let (network, mut events) = Network::start(config, key, &Registry::new()).await.expect("network");
    let peers = honest.iter().map(|n| (n.id, n.network.listen_addrs().first().cloned())).collect();
    network.set_peers(peers).await.expect("peers");
    // Keep the event queue drained, as a node would.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    network
}

/// How often `node` refused or dropped a peer for `reason`.
fn refusals(node: &TestNode, reason: &str) -> u64 {
    counter(&node.registry, "bcos_network_refused_connections_total", &[("reason", reason)])
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intruders_are_refused_and_an_unregistered_voter_is_ignored_while_the_chain_commits() {
    let [foreign, expired, thief, voter, blacklisted] = std::array::from_fn(|_| NodeKey::generate());
    let mut spec = ChainSpec::new(4, ConsensusMode::Pbft);
    spec.strangers = [&foreign, &expired, &thief, &voter, &blacklisted].iter().map(|k| k.node_id()).collect();
    spec.blacklisted_by_first = vec![blacklisted.node_id()];
    let chain = start(spec).await;
    let (nodes, pki) = (&chain.nodes, &chain.pki);

    // A certificate from another chain's CA.
    let other_validity = Validity::starting(SystemTime::now() - DAY, 2 * DAY);
    let other_ca = ChainCa::generate("another chain", other_validity).expect("CA");
    let other_member =
        other_ca.issue_member_ca(&Member { name: "Bank".into(), id: "bank".into() }, other_validity).expect("member");
    let foreign_chain = other_member.issue_node_chain(&foreign.node_id(), other_validity).expect("cert").verify_order();
    let _foreign = intruder(&foreign, pki.admission(foreign_chain), nodes).await;
    // An expired certificate from this chain's CA.
    let lapsed = Validity::starting(SystemTime::now() - 3 * DAY, DAY);
    let expired_chain = pki.member.issue_node_chain(&expired.node_id(), lapsed).expect("cert").verify_order();
    let _expired = intruder(&expired, pki.admission(expired_chain), nodes).await;
    // A valid certificate copied from an honest node: its key is not the thief's.
    let _thief = intruder(&thief, pki.admission(pki.chain(&nodes[1].id)), nodes).await;
    // A valid certificate, but node 0 has the node on its blacklist.
    let _blacklisted = intruder(&blacklisted, pki.admission(pki.chain(&blacklisted.node_id())), nodes).await;
    // A valid certificate and admitted (for sync), but not a consensus node: it votes anyway.
    let voter_network = intruder(&voter, pki.admission(pki.chain(&voter.node_id())), nodes).await;

    for (reason, at_least) in [("foreign_ca", 1), ("certificate_expired", 1), ("key_mismatch", 1)] {
        until(&format!("every honest node refusing for {reason}"), || {
            nodes.iter().all(|node| refusals(node, reason) >= at_least)
        })
        .await;
    }
    until("the voter admitted by every honest node", || nodes.iter().all(|n| n.network.is_connected(&voter.node_id())))
        .await;
    until("the blacklisted node admitted by the others", || {
        nodes[1..].iter().all(|n| n.network.is_connected(&blacklisted.node_id()))
    })
    .await;
    assert!(refusals(&nodes[0], "blacklisted") >= 1);
    assert!(!nodes[0].network.is_connected(&blacklisted.node_id()), "the blacklist holds");
    for node in nodes {
        for intruder in [&foreign, &expired, &thief] {
            assert!(!node.network.is_connected(&intruder.node_id()), "intruders are never admitted");
        }
    }

    // The voter signs prepares and commits for every height it hears of, and for the next few.
    let voting = tokio::spawn({
        let head = nodes[0].chain.clone();
        async move {
            loop {
                let height = head.store().head_number() + 1;
                for ahead in 0..3 {
                    let hash = alloy_primitives::B256::repeat_byte(0x5a);
                    for message in [
                        PbftMessage::Prepare(Prepare::new(&voter, height + ahead, 0, hash)),
                        PbftMessage::Commit(CommitVote::new(&voter, height + ahead, 0, hash)),
                    ] {
                        let _ = voter_network.broadcast_consensus(ConsensusMessage::Pbft(Box::new(message)).to_wire());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    commits_everywhere(nodes).await;
    voting.abort();

    let validators: HashSet<NodeId> = nodes.iter().map(|n| n.id).collect();
    let store = nodes[0].chain.store();
    for number in 1..=store.head_number() {
        let qc = store.quorum_certificate(number).expect("read").expect("every committed block has a certificate");
        assert!(qc.votes.iter().all(|vote| validators.contains(&vote.node_id)), "block {number}: only members vote");
    }
    let _ = chain.shutdown.send(true);
}
