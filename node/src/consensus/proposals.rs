//! Turning the pool into proposals, and checking other nodes' proposals, on top of the chain.
//!
//! The leader [`build`]s a block: it executes ready transactions and proposes the resulting
//! header with the transactions. A replica [`check`]s a proposal by re-executing exactly those
//! transactions on its own head and comparing every header field. Both keep the execution result
//! so the block can be committed without executing it again.

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{B256, Bytes, keccak256};
use bcos_consensus::Proposal;
use bcos_sdk::types::{BlockHeader, RecoveredTx};
use rayon::prelude::*;

use crate::{
    chain::{Chain, ChainError, now_ms},
    executor::{BlockInput, ExecutedBlock},
    txpool::TxPool,
};

/// How far ahead of this node's clock a proposal's timestamp may be.
pub const MAX_CLOCK_DRIFT_MS: u64 = 60_000;

/// A proposal this node executed, ready to be committed.
#[derive(Debug)]
pub struct ExecutedProposal {
    /// The proposal as sent to peers.
    pub proposal: Proposal,
    /// What executing it produced.
    pub executed: ExecutedBlock,
}

/// Why a proposal is not acceptable. Every variant means the proposer is faulty (or this node is
/// behind, for [`ProposalError::NotNext`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    /// The block does not extend this node's head.
    #[error("proposal for height {number} on parent {parent} does not extend head {head}")]
    NotNext {
        /// Proposed height.
        number: u64,
        /// Proposed parent.
        parent: B256,
        /// This node's head height.
        head: u64,
    },
    /// The header breaks a rule that needs no execution.
    #[error("invalid header: {0}")]
    Header(String),
    /// A transaction does not decode or verify.
    #[error("invalid transaction {index}: {reason}")]
    Transaction {
        /// Position in the block.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Executing the transactions gave another header.
    #[error("execution disagrees with the proposed header")]
    Mismatch,
    /// The node itself failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// Executes up to `max` ready transactions as the next block, proposed by `proposer`.
pub fn build(chain: &Chain, pool: &TxPool, proposer: B256, max: usize) -> Result<ExecutedProposal, ChainError> {
    let txs = pool.ready_transactions(max);
    let input = chain.next_block_input(now_ms())?;
    let executed = chain.execute_next(&input, txs.iter().map(|tx| (**tx).clone()))?;
    let header = chain.seal_header(&input, &executed, proposer);
    let transactions = executed.included.iter().map(|tx| Bytes::from(tx.envelope().encoded_2718())).collect();
    Ok(ExecutedProposal { proposal: Proposal { header, transactions }, executed })
}

/// Re-executes a proposal on this node's head and accepts it only if every header field matches.
/// Transactions this node's pool already admitted are taken from it, so a sender is recovered
/// once per node; only transactions it has not seen are recovered here (in parallel).
pub fn check(chain: &Chain, pool: &TxPool, proposal: Proposal) -> Result<ExecutedProposal, ProposalError> {
    let head = chain.head()?;
    let header = &proposal.header;
    if header.number != head.number + 1 || header.parent_hash != head.hash() {
        return Err(ProposalError::NotNext { number: header.number, parent: header.parent_hash, head: head.number });
    }
    check_header_rules(chain, &head, header, proposal.transactions.len())?;
    let chain_id = chain.chain_id();
    let txs: Vec<RecoveredTx> = proposal
        .transactions
        .par_iter()
        .enumerate()
        .map(|(index, raw)| match pool.get(&keccak256(raw)) {
            Some(pooled) => Ok((*pooled).clone()),
            None => RecoveredTx::decode_and_recover(raw, chain_id)
                .map_err(|e| ProposalError::Transaction { index, reason: e.to_string() }),
        })
        .collect::<Result<_, _>>()?;
    let count = txs.len();
    let input = BlockInput {
        number: header.number,
        timestamp_ms: header.timestamp_ms,
        gas_limit: header.gas_limit,
        parent_hash: head.hash(),
        parent_state_root: head.state_root,
    };
    let executed = chain.execute_next(&input, txs)?;
    if executed.included.len() != count {
        let (hash, reason) = executed.rejected.first().cloned().unwrap_or_default();
        return Err(ProposalError::Transaction { index: executed.included.len(), reason: format!("{hash}: {reason}") });
    }
    if chain.seal_header(&input, &executed, header.proposer) != *header {
        return Err(ProposalError::Mismatch);
    }
    Ok(ExecutedProposal { proposal, executed })
}

fn check_header_rules(
    chain: &Chain,
    parent: &BlockHeader,
    header: &BlockHeader,
    txs: usize,
) -> Result<(), ProposalError> {
    let config = chain.system_config();
    if header.timestamp_ms < parent.timestamp_ms {
        return Err(ProposalError::Header("timestamp before the parent's".into()));
    }
    if header.timestamp_ms > now_ms().saturating_add(MAX_CLOCK_DRIFT_MS) {
        return Err(ProposalError::Header("timestamp too far in the future".into()));
    }
    if header.gas_limit != config.block_gas_limit {
        return Err(ProposalError::Header(format!(
            "gas limit {} differs from the system config's {}",
            header.gas_limit, config.block_gas_limit
        )));
    }
    if txs as u64 > config.max_txs_per_block {
        return Err(ProposalError::Header(format!("{txs} transactions, at most {}", config.max_txs_per_block)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloy_primitives::Address;
    use bcos_sdk::{
        config::{Committee, Genesis, SystemConfig},
        crypto::{AccountKey, NodeKey},
    };

    use super::*;
    use crate::{
        chain::sign_commit,
        test_utils::{TestNode, signed_transfer},
    };

    fn genesis() -> Genesis {
        Genesis {
            chain_id: 5,
            timestamp_ms: 0,
            system_config: SystemConfig::default(),
            consensus_nodes: vec![NodeKey::generate().node_id(), NodeKey::generate().node_id()],
            observer_nodes: Vec::new(),
            node_addresses: Default::default(),
            ca_cert: None,
            committee: Committee::single(Address::repeat_byte(0xad)),
            permissions: Default::default(),
            alloc: Default::default(),
        }
    }

    fn submit_transfers(pool: &TxPool, count: u64) {
        let key = AccountKey::generate();
        for nonce in 0..count {
            pool.submit(&signed_transfer(&key, 5, nonce, Address::repeat_byte(4))).expect("admitted");
        }
    }

    #[test]
    fn a_replica_accepts_exactly_what_the_leader_executed_and_both_commit_it() {
        let genesis = genesis();
        let (leader, replica) = (TestNode::new(&genesis), TestNode::new(&genesis));
        let key = NodeKey::generate();
        submit_transfers(&leader.pool, 3);
        let built = build(&leader.chain, &leader.pool, key.node_id(), 100).expect("built");
        assert_eq!(built.proposal.transactions.len(), 3);
        let checked = check(&replica.chain, &replica.pool, built.proposal.clone()).expect("valid on the replica");
        assert_eq!(checked.proposal.hash(), built.proposal.hash());

        let hash = built.proposal.hash();
        let qc = sign_commit(&key, hash, 1, 0);
        leader.chain.commit(built.proposal.header.clone(), built.executed, qc.clone(), &leader.pool).expect("leader");
        replica.chain.commit(checked.proposal.header.clone(), checked.executed, qc, &replica.pool).expect("replica");
        assert_eq!(leader.chain.head().expect("head"), replica.chain.head().expect("head"));
        assert!(leader.pool.is_empty());
    }

    #[test]
    fn tampered_and_misplaced_proposals_are_refused() {
        let genesis = genesis();
        let (leader, replica) = (TestNode::new(&genesis), TestNode::new(&genesis));
        submit_transfers(&leader.pool, 2);
        let built = build(&leader.chain, &leader.pool, B256::repeat_byte(1), 100).expect("built");

        let mut wrong_root = built.proposal.clone();
        wrong_root.header.state_root = B256::repeat_byte(9);
        assert!(matches!(check(&replica.chain, &replica.pool, wrong_root), Err(ProposalError::Mismatch)));

        let mut dropped_tx = built.proposal.clone();
        dropped_tx.transactions.pop();
        assert!(matches!(check(&replica.chain, &replica.pool, dropped_tx), Err(ProposalError::Mismatch)));

        let mut garbage = built.proposal.clone();
        garbage.transactions[0] = Bytes::from_static(b"\x02\xff");
        assert!(matches!(
            check(&replica.chain, &replica.pool, garbage),
            Err(ProposalError::Transaction { index: 0, .. })
        ));

        let mut skipped_height = built.proposal.clone();
        skipped_height.header.number = 2;
        assert!(matches!(check(&replica.chain, &replica.pool, skipped_height), Err(ProposalError::NotNext { .. })));

        let mut greedy = built.proposal.clone();
        greedy.header.gas_limit += 1;
        assert!(matches!(check(&replica.chain, &replica.pool, greedy), Err(ProposalError::Header(_))));

        let mut future = built.proposal;
        future.header.timestamp_ms = now_ms() + 10 * MAX_CLOCK_DRIFT_MS;
        assert!(matches!(check(&replica.chain, &replica.pool, future), Err(ProposalError::Header(_))));
    }
}
