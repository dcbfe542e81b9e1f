//! Quorum certificates: the signed votes that commit a block.

use alloy_primitives::{B256, Bytes, keccak256};
use alloy_rlp::{RlpDecodable, RlpEncodable};

/// One node's signature over a block hash in a consensus round.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct Vote {
    /// The voter's node id (Ed25519 public key).
    pub node_id: B256,
    /// Ed25519 signature over [`QuorumCertificate::signing_message`].
    pub signature: Bytes,
}

/// The votes that committed a block. Any node can check it against the consensus node set in
/// force at the block's height, so synced blocks need not be trusted.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct QuorumCertificate {
    /// Hash of the committed header.
    pub block_hash: B256,
    /// Height of the committed block.
    pub number: u64,
    /// Consensus round (PBFT view or Raft term) in which the block was committed.
    pub round: u64,
    /// Votes, one per distinct node.
    pub votes: Vec<Vote>,
}

/// Domain separator so a vote can never be replayed as a signature over anything else.
const VOTE_DOMAIN: &[u8] = b"bcos/commit-vote/v1";

impl QuorumCertificate {
    /// The message each voter signs: a hash binding domain, block hash, height and round.
    pub fn signing_message(block_hash: B256, number: u64, round: u64) -> B256 {
        let mut preimage = Vec::with_capacity(VOTE_DOMAIN.len() + 48);
        preimage.extend_from_slice(VOTE_DOMAIN);
        preimage.extend_from_slice(block_hash.as_slice());
        preimage.extend_from_slice(&number.to_be_bytes());
        preimage.extend_from_slice(&round.to_be_bytes());
        keccak256(preimage)
    }
}
