//! Transactions, blocks, receipts and quorum certificates, with their canonical encodings.
//!
//! Storage and the network use the RLP encodings defined here; hashes are Keccak-256 over them,
//! so every node derives identical identifiers from identical content.

mod block;
mod qc;
mod receipt;
pub mod system;
pub mod tx;

pub use block::{Block, BlockHeader, StateWrite, state_commitment};
pub use qc::{QuorumCertificate, Vote};
pub use receipt::{StoredLog, StoredReceipt};
pub use tx::{RecoveredTx, TxError};
