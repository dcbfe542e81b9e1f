//! Block sync: how a new, lagging or restarted node gets the blocks it missed.
//!
//! A peer serves committed blocks with their quorum certificates ([`serve`]). The syncing node
//! [`apply`]s them in order and trusts none of them: each certificate must carry a quorum of the
//! consensus node set in force at that height (read from this node's own state, under the
//! consensus mode in force there), and each block is re-executed and must reproduce its header
//! exactly before it is committed.

mod messages;

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::Bytes;
use bcos_consensus::{Proposal, QcError, Validators};
use bcos_sdk::config::ConsensusMode;

pub use messages::{DecodeError, MAX_BLOCKS_PER_RESPONSE, MAX_RESPONSE_BYTES, SyncRequest, SyncResponse, SyncedBlock};

use crate::{
    chain::{Chain, ChainError},
    consensus::proposals::{ProposalError, check},
    storage::{BlockReader, StorageError},
    txpool::TxPool,
};

/// Why synced blocks were not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The block does not follow this node's head.
    #[error("block {got} does not follow head {head}")]
    NotNext {
        /// Height received.
        got: u64,
        /// This node's head.
        head: u64,
    },
    /// The certificate does not prove the block.
    #[error("block {number}: {source}")]
    Certificate {
        /// Height.
        number: u64,
        /// Why.
        source: QcError,
    },
    /// The certificate names another height.
    #[error("block {number}: certificate is for height {qc_number}")]
    CertificateHeight {
        /// Height of the block.
        number: u64,
        /// Height the certificate signs.
        qc_number: u64,
    },
    /// Re-executing the block did not reproduce it.
    #[error("block {number}: {source}")]
    Block {
        /// Height.
        number: u64,
        /// Why.
        source: ProposalError,
    },
    /// The consensus node set stored on chain is empty.
    #[error("no consensus nodes in state")]
    NoValidators,
    /// The response did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// This node failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl SyncError {
    /// Whether the peer that served the blocks misbehaved.
    pub fn is_bad_peer(&self) -> bool {
        match self {
            Self::Certificate { .. } | Self::CertificateHeight { .. } | Self::Decode(_) => true,
            Self::Block { source, .. } => !matches!(source, ProposalError::Chain(_) | ProposalError::NotNext { .. }),
            Self::NotNext { .. } | Self::NoValidators | Self::Chain(_) => false,
        }
    }
}

impl From<StorageError> for SyncError {
    fn from(e: StorageError) -> Self {
        Self::Chain(e.into())
    }
}

/// Answers a sync request from this node's chain.
pub fn serve(chain: &Chain, request: &SyncRequest) -> Result<SyncResponse, SyncError> {
    match *request {
        SyncRequest::Status => {
            let head = chain.head()?;
            Ok(SyncResponse::Status { height: head.number, head_hash: head.hash(), genesis_hash: chain.genesis_hash() })
        }
        SyncRequest::Blocks { from, max } => {
            let store = chain.store();
            let count = u64::from(max.min(MAX_BLOCKS_PER_RESPONSE));
            let mut blocks = Vec::new();
            if count == 0 {
                return Ok(SyncResponse::Blocks(blocks));
            }
            let last = store.head_number().min(from.saturating_add(count - 1));
            let mut size = 0usize;
            for number in from.max(1)..=last {
                let (Some(header), Some(txs), Some(qc)) =
                    (store.header(number)?, store.transactions(number)?, store.quorum_certificate(number)?)
                else {
                    break;
                };
                let transactions: Vec<Bytes> = txs.iter().map(|tx| Bytes::from(tx.envelope.encoded_2718())).collect();
                size += transactions.iter().map(|tx| tx.len()).sum::<usize>() + 1024;
                if !blocks.is_empty() && size > MAX_RESPONSE_BYTES {
                    break;
                }
                blocks.push(SyncedBlock { proposal: Proposal { header, transactions }, qc });
            }
            Ok(SyncResponse::Blocks(blocks))
        }
    }
}

/// Verifies and commits blocks that follow this node's head, in order; returns how many were
/// committed. Stops at the first block that fails, keeping the ones before it.
pub fn apply(chain: &Chain, pool: &TxPool, blocks: Vec<SyncedBlock>) -> Result<usize, SyncError> {
    let mut applied = 0;
    for block in blocks {
        let number = block.proposal.header.number;
        let head = chain.head()?.number;
        if number != head + 1 {
            return Err(SyncError::NotNext { got: number, head });
        }
        if block.qc.number != number {
            return Err(SyncError::CertificateHeight { number, qc_number: block.qc.number });
        }
        let validators = Validators::new(chain.consensus_nodes()?).ok_or(SyncError::NoValidators)?;
        let quorum = match chain.system_config().consensus_mode {
            ConsensusMode::Pbft => validators.bft_quorum(),
            ConsensusMode::Raft => validators.majority(),
        };
        let qc = validators
            .verify_qc(block.qc, block.proposal.hash(), quorum)
            .map_err(|source| SyncError::Certificate { number, source })?
            .into_inner();
        let checked = check(chain, pool, block.proposal).map_err(|source| SyncError::Block { number, source })?;
        chain.commit(checked.proposal.header, checked.executed, qc, pool)?;
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests;
