//! A byzantine consensus member on a real libp2p network: three honest nodes run the real driver
//! over RocksDB; the fourth is the test, holding a real chain (kept current from an honest node)
//! so the blocks it proposes are valid, and sending what an attacker would.

use std::{collections::HashSet, sync::Arc, time::Duration};

use alloy_primitives::{Address, B256};
use bcos_consensus::{
    Proposal, Validators,
    pbft::{CommitVote, PbftMessage, PrePrepare, Prepare},
};
use bcos_sdk::{config::ConsensusMode, crypto::NodeKey};

use super::{
    driver::WireMessage,
    driver_tests::{TestNode, commits_everywhere, start_chain_except},
    proposals::build,
    switch::ConsensusMessage,
};
use crate::{
    chain::Chain,
    network::{NetworkEvent, NodeId},
    storage::BlockReader,
    sync::{self, SyncRequest, SyncResponse},
    txpool::TxPool,
};

const ATTACKER: usize = 3;

fn wire(message: PbftMessage) -> alloy_primitives::Bytes {
    ConsensusMessage::Pbft(Box::new(message)).to_wire()
}

/// The attacker's chain and pool.
struct Attacker {
    id: NodeId,
    chain: Arc<Chain>,
    pool: Arc<TxPool>,
}

impl Attacker {
    /// Brings the chain up to an honest node's head, as block sync would.
    fn catch_up(&self, honest: &Chain) {
        loop {
            let from = self.chain.store().head_number() + 1;
            let Ok(SyncResponse::Blocks(blocks)) = sync::serve(honest, &SyncRequest::Blocks { from, max: 64 }) else {
                return;
            };
            if blocks.is_empty() {
                return;
            }
            sync::apply(&self.chain, &self.pool, blocks).expect("honest blocks apply");
        }
    }

    /// Two valid blocks for the next height: built from the same parent a few milliseconds
    /// apart, so their timestamps, and hashes, differ.
    async fn twin_blocks(&self) -> (Proposal, Proposal) {
        let first = build(&self.chain, &self.pool, self.id, 100).expect("builds").proposal;
        loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let second = build(&self.chain, &self.pool, self.id, 100).expect("builds").proposal;
            if second.hash() != first.hash() {
                return (first, second);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocating_member_sending_forged_votes_cannot_fork_the_honest_nodes() {
    let (nodes, shutdown, outside) = start_chain_except(4, 0, ConsensusMode::Pbft, Address::ZERO, Some(ATTACKER)).await;
    let (key, mut events) = outside.expect("the attacker's key and events");
    let attacker = &nodes[ATTACKER];
    let honest: Vec<&TestNode> = nodes.iter().enumerate().filter(|(i, _)| *i != ATTACKER).map(|(_, n)| n).collect();
    let validators = Validators::new(nodes.iter().map(|n| n.id).collect()).expect("validators");
    let stranger = NodeKey::generate();

    // Honest proposals the attacker hears of, to answer with forged votes.
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetworkEvent::Consensus { bytes, .. } = event
                && let Ok(ConsensusMessage::Pbft(message)) = ConsensusMessage::from_wire(&bytes)
                && let PbftMessage::PrePrepare(pre_prepare) = *message
            {
                let _ = heard_tx.send((pre_prepare.height, pre_prepare.view, pre_prepare.proposal.hash()));
            }
        }
    });

    let attack = {
        let attacker_node = Attacker { id: attacker.id, chain: attacker.chain.clone(), pool: attacker.pool.clone() };
        let honest0 = honest[0].chain.clone();
        let targets: Vec<_> = honest.iter().map(|n| n.id).collect();
        let network = attacker.network.clone();
        tokio::spawn(async move {
            let mut equivocated = HashSet::new();
            let mut forged = 0;
            loop {
                attacker_node.catch_up(&honest0);
                let height = attacker_node.chain.store().head_number() + 1;
                for view in 0..3 {
                    if validators.at(height + view) != attacker_node.id || !equivocated.insert((height, view)) {
                        continue;
                    }
                    // One block to the first honest node, its twin to the other two, and votes for
                    // each towards the nodes that got it: without the safety rules, two honest
                    // nodes plus the attacker would be a quorum for the twin while the first honest
                    // node could be pushed towards the other.
                    let (block, twin) = attacker_node.twin_blocks().await;
                    for (i, target) in targets.iter().enumerate() {
                        let proposal = if i == 0 { block.clone() } else { twin.clone() };
                        let hash = proposal.hash();
                        let messages = [
                            PbftMessage::PrePrepare(PrePrepare::new(&key, height, view, proposal)),
                            PbftMessage::Prepare(Prepare::new(&key, height, view, hash)),
                            PbftMessage::Commit(CommitVote::new(&key, height, view, hash)),
                        ];
                        for message in messages {
                            let _ = network.send_consensus(*target, wire(message));
                        }
                    }
                }
                // Votes for honest proposals signed with a key that is not the attacker's.
                while let Ok((height, view, hash)) = heard.try_recv() {
                    for message in [
                        PbftMessage::Prepare(Prepare::new(&stranger, height, view, hash)),
                        PbftMessage::Commit(CommitVote::new(&stranger, height, view, hash)),
                        PbftMessage::Commit(CommitVote::new(&key, height, view, B256::repeat_byte(0xbd))),
                    ] {
                        let _ = network.broadcast_consensus(wire(message));
                        forged += 1;
                    }
                }
                if equivocated.len() >= 2 && forged >= 6 {
                    return (equivocated.len(), forged);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // The honest three are a quorum of four: they keep committing, on one chain.
    let honest_nodes: Vec<TestNode> =
        nodes.into_iter().enumerate().filter(|(i, _)| *i != ATTACKER).map(|(_, n)| n).collect();
    while !attack.is_finished() {
        commits_everywhere(&honest_nodes).await;
    }
    let (equivocations, forged) = attack.await.expect("attack ran");
    assert!(equivocations >= 2 && forged >= 6, "the attack was carried out");
    commits_everywhere(&honest_nodes).await;
    let _ = shutdown.send(true);
}
