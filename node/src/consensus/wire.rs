//! The wire form of each engine's messages.

use alloy_primitives::Bytes;
use bcos_consensus::{pbft::PbftMessage, raft::RaftMessage};

use super::driver::WireMessage;

impl WireMessage for PbftMessage {
    fn to_wire(&self) -> Bytes {
        Bytes::from(self.encode_to_vec())
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, String> {
        Self::decode_bounded(bytes).map_err(|e| e.to_string())
    }
}

impl WireMessage for RaftMessage {
    fn to_wire(&self) -> Bytes {
        Bytes::from(alloy_rlp::encode(self))
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, String> {
        Self::decode_exact(bytes).map_err(|e| e.to_string())
    }
}
