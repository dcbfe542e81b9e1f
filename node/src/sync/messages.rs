//! Sync wire messages: one kind byte, then RLP. Decoding is bounded and rejects trailing bytes.

use alloy_primitives::B256;
use alloy_rlp::{Decodable, Encodable, RlpDecodable, RlpEncodable};
use bcos_consensus::Proposal;
use bcos_sdk::types::QuorumCertificate;

/// Most blocks one response carries.
pub const MAX_BLOCKS_PER_RESPONSE: u32 = 64;
/// Rough budget of one response, below the network's sync response limit.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

const KIND_STATUS: u8 = 0;
const KIND_BLOCKS: u8 = 1;

/// A sync message that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Empty input.
    #[error("empty sync message")]
    Empty,
    /// Unknown kind byte.
    #[error("unknown sync message kind {0}")]
    UnknownKind(u8),
    /// The RLP body is malformed.
    #[error("malformed sync message: {0}")]
    Rlp(String),
    /// Bytes after the message.
    #[error("{0} trailing bytes after sync message")]
    Trailing(usize),
    /// More blocks than a response may carry.
    #[error("{0} blocks in one response, at most {MAX_BLOCKS_PER_RESPONSE}")]
    TooManyBlocks(usize),
}

/// What a syncing node asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRequest {
    /// The peer's head.
    Status,
    /// Up to `max` blocks from height `from`.
    Blocks {
        /// First height.
        from: u64,
        /// Most blocks wanted.
        max: u32,
    },
}

/// A committed block with the certificate that committed it.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct SyncedBlock {
    /// Header and transactions.
    pub proposal: Proposal,
    /// The quorum certificate.
    pub qc: QuorumCertificate,
}

/// What a peer answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    /// The peer's head and chain.
    Status {
        /// Head height.
        height: u64,
        /// Head hash.
        head_hash: B256,
        /// Genesis hash: peers of another chain are ignored.
        genesis_hash: B256,
    },
    /// Consecutive blocks.
    Blocks(Vec<SyncedBlock>),
}

#[derive(RlpEncodable, RlpDecodable)]
struct BlocksRequest {
    from: u64,
    max: u32,
}

#[derive(RlpEncodable, RlpDecodable)]
struct StatusResponse {
    height: u64,
    head_hash: B256,
    genesis_hash: B256,
}

fn framed(kind: u8, body: &impl Encodable) -> Vec<u8> {
    let mut out = vec![kind];
    body.encode(&mut out);
    out
}

fn body<T: Decodable>(mut bytes: &[u8]) -> Result<T, DecodeError> {
    let value = T::decode(&mut bytes).map_err(|e| DecodeError::Rlp(e.to_string()))?;
    if !bytes.is_empty() {
        return Err(DecodeError::Trailing(bytes.len()));
    }
    Ok(value)
}

fn split(bytes: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    bytes.split_first().map(|(kind, rest)| (*kind, rest)).ok_or(DecodeError::Empty)
}

impl SyncRequest {
    /// Wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Self::Status => vec![KIND_STATUS],
            Self::Blocks { from, max } => framed(KIND_BLOCKS, &BlocksRequest { from, max }),
        }
    }

    /// Decodes a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match split(bytes)? {
            (KIND_STATUS, []) => Ok(Self::Status),
            (KIND_STATUS, rest) => Err(DecodeError::Trailing(rest.len())),
            (KIND_BLOCKS, rest) => body::<BlocksRequest>(rest).map(|r| Self::Blocks { from: r.from, max: r.max }),
            (kind, _) => Err(DecodeError::UnknownKind(kind)),
        }
    }
}

impl SyncResponse {
    /// Wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Status { height, head_hash, genesis_hash } => framed(
                KIND_STATUS,
                &StatusResponse { height: *height, head_hash: *head_hash, genesis_hash: *genesis_hash },
            ),
            Self::Blocks(blocks) => framed(KIND_BLOCKS, blocks),
        }
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match split(bytes)? {
            (KIND_STATUS, rest) => body::<StatusResponse>(rest).map(|s| Self::Status {
                height: s.height,
                head_hash: s.head_hash,
                genesis_hash: s.genesis_hash,
            }),
            (KIND_BLOCKS, rest) => {
                let blocks: Vec<SyncedBlock> = body(rest)?;
                if blocks.len() > MAX_BLOCKS_PER_RESPONSE as usize {
                    return Err(DecodeError::TooManyBlocks(blocks.len()));
                }
                Ok(Self::Blocks(blocks))
            }
            (kind, _) => Err(DecodeError::UnknownKind(kind)),
        }
    }
}
