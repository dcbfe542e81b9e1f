//! Block headers, blocks and the state commitment.

use alloy_consensus::TxEnvelope;
use alloy_primitives::{B256, Bloom, Bytes, keccak256};
use alloy_rlp::{Encodable, RlpDecodable, RlpEncodable};

use super::QuorumCertificate;

/// A block header. Its hash (Keccak-256 of its RLP) is what consensus votes on; the quorum
/// certificate is kept beside the header, not inside it, since it signs the hash.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct BlockHeader {
    /// Hash of the parent header; zero for genesis.
    pub parent_hash: B256,
    /// Height; genesis is 0.
    pub number: u64,
    /// Milliseconds since the Unix epoch, as the proposer saw it.
    pub timestamp_ms: u64,
    /// Node id (Ed25519 public key) of the node that proposed the block.
    pub proposer: B256,
    /// Ordered trie root of the EIP-2718 transactions, as in Ethereum.
    pub transactions_root: B256,
    /// Ordered trie root of the EIP-2718 receipts, as in Ethereum.
    pub receipts_root: B256,
    /// State commitment: see [`state_commitment`].
    pub state_root: B256,
    /// Bloom filter over every log's address and topics.
    pub logs_bloom: Bloom,
    /// Gas used by all transactions.
    pub gas_used: u64,
    /// Gas limit in force for this block (system config).
    pub gas_limit: u64,
}

impl BlockHeader {
    /// The header hash: Keccak-256 of its RLP encoding.
    pub fn hash(&self) -> B256 {
        let mut buf = Vec::with_capacity(self.length());
        self.encode(&mut buf);
        keccak256(&buf)
    }

    /// Seconds since the Unix epoch, as Ethereum tools expect.
    pub fn timestamp_secs(&self) -> u64 {
        self.timestamp_ms / 1000
    }
}

/// A block: header, ordered transactions, and (once committed) its quorum certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// Transactions in execution order.
    pub transactions: Vec<TxEnvelope>,
    /// Signatures of the nodes that committed the block; `None` only for genesis.
    pub qc: Option<QuorumCertificate>,
}

/// One entry of a block's state write-set: a state key and its new value (`None` deletes it).
///
/// Keys and values are the state store's own encodings, so the commitment is over exactly what is
/// written to disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, RlpEncodable, RlpDecodable)]
pub struct StateWrite {
    /// State key.
    pub key: Bytes,
    /// New value; empty means deleted.
    pub value: Bytes,
}

/// The state commitment of a block: `keccak256(parent_commitment ‖ keccak256(rlp(writes)))`, with
/// `writes` sorted by key. Chaining to the parent makes it commit to the whole history of state,
/// while costing one hash over the block's own writes instead of a trie update per key.
pub fn state_commitment(parent_commitment: B256, sorted_writes: &[StateWrite]) -> B256 {
    debug_assert!(sorted_writes.windows(2).all(|w| w[0].key < w[1].key), "writes must be sorted and unique");
    let mut encoded = Vec::new();
    alloy_rlp::encode_list(sorted_writes, &mut encoded);
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(parent_commitment.as_slice());
    preimage[32..].copy_from_slice(keccak256(&encoded).as_slice());
    keccak256(preimage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_rlp::Decodable;

    fn header() -> BlockHeader {
        BlockHeader {
            parent_hash: B256::repeat_byte(1),
            number: 7,
            timestamp_ms: 1_700_000_000_123,
            proposer: B256::repeat_byte(2),
            transactions_root: B256::repeat_byte(3),
            receipts_root: B256::repeat_byte(4),
            state_root: B256::repeat_byte(5),
            logs_bloom: Bloom::default(),
            gas_used: 21_000,
            gas_limit: 30_000_000,
        }
    }

    #[test]
    fn header_round_trips_and_hash_covers_every_field() {
        let h = header();
        let encoded = alloy_rlp::encode(&h);
        assert_eq!(BlockHeader::decode(&mut encoded.as_slice()).expect("decodes"), h);
        let mut other = h.clone();
        other.gas_used += 1;
        assert_ne!(other.hash(), h.hash());
        assert_eq!(h.timestamp_secs(), 1_700_000_000);
    }

    #[test]
    fn commitment_depends_on_parent_and_writes() {
        let writes = vec![
            StateWrite { key: Bytes::from_static(b"a1"), value: Bytes::from_static(b"x") },
            StateWrite { key: Bytes::from_static(b"a2"), value: Bytes::new() },
        ];
        let c1 = state_commitment(B256::ZERO, &writes);
        assert_ne!(c1, state_commitment(B256::repeat_byte(9), &writes));
        assert_ne!(c1, state_commitment(B256::ZERO, &writes[..1]));
        assert_eq!(c1, state_commitment(B256::ZERO, &writes));
    }
}
