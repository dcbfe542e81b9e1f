//! Persistent chain storage: blocks, receipts, indexes, flat state and the pool journal.
//!
//! Readers and the writer are separate traits ([`BlockReader`], [`StateReader`], [`ChainWriter`]);
//! the executor only ever sees a [`StateReader`]. [`RocksStore`] implements them on RocksDB with one
//! column family per kind of record, and writes each block (header, body, receipts, certificate,
//! indexes, state changes, pool removals, new head) in one atomic `WriteBatch`: after a crash the
//! database holds either the whole block or none of it.

mod codec;
mod rocks;

use alloy_primitives::{Address, B256, Bytes, U256};

pub use codec::state_key;
pub use codec::{AccountState, StoredTx};
pub use rocks::{RocksStore, StateSnapshot};

use bcos_sdk::types::{BlockHeader, QuorumCertificate, StateWrite, StoredReceipt};

/// A storage failure. Not-found is not an error: readers return `None`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// RocksDB reported an I/O or internal error.
    #[error("storage I/O: {0}")]
    Io(#[from] rocksdb::Error),
    /// A stored record does not decode: the database is damaged or from another version.
    #[error("corrupt record in {table}: {detail}")]
    Corrupt {
        /// Column family.
        table: &'static str,
        /// What did not decode.
        detail: String,
    },
    /// The data directory belongs to a different chain.
    #[error("data directory holds chain with genesis {stored}, but genesis file gives {expected}")]
    GenesisMismatch {
        /// Genesis hash in the database.
        stored: B256,
        /// Genesis hash from the genesis file.
        expected: B256,
    },
    /// A block does not extend the stored head.
    #[error("block {number} does not extend head {head}")]
    NotNext {
        /// Number of the refused block.
        number: u64,
        /// Current head.
        head: u64,
    },
}

/// Storage result.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Where a committed transaction lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// Block number.
    pub block_number: u64,
    /// Position in the block.
    pub index: u32,
}

impl TxLocation {
    /// The 12-byte key of per-transaction records: block number then index, big-endian, so a
    /// block's records are contiguous and ordered.
    pub fn key(&self) -> [u8; 12] {
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&self.block_number.to_be_bytes());
        key[8..].copy_from_slice(&self.index.to_be_bytes());
        key
    }

    /// Parses a key made by [`TxLocation::key`].
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let number: [u8; 8] = key.get(..8)?.try_into().ok()?;
        let index: [u8; 4] = key.get(8..12)?.try_into().ok()?;
        (key.len() == 12).then(|| Self { block_number: u64::from_be_bytes(number), index: u32::from_be_bytes(index) })
    }
}

/// Read access to the latest state.
pub trait StateReader: Send + Sync {
    /// An account, if it exists.
    fn account(&self, address: &Address) -> Result<Option<AccountState>>;
    /// A storage slot (zero when unset).
    fn storage(&self, address: &Address, slot: &U256) -> Result<U256>;
    /// Contract code by its hash.
    fn code(&self, code_hash: &B256) -> Result<Option<Bytes>>;
}

/// Read access to committed blocks.
pub trait BlockReader: Send + Sync {
    /// Height of the latest committed block.
    fn head_number(&self) -> u64;
    /// Header by height.
    fn header(&self, number: u64) -> Result<Option<BlockHeader>>;
    /// Height of the block with this hash.
    fn block_number(&self, hash: &B256) -> Result<Option<u64>>;
    /// Transactions of a block, with their senders.
    fn transactions(&self, number: u64) -> Result<Option<Vec<StoredTx>>>;
    /// Receipts of a block.
    fn receipts(&self, number: u64) -> Result<Option<Vec<StoredReceipt>>>;
    /// One committed transaction.
    fn transaction_at(&self, location: TxLocation) -> Result<Option<StoredTx>>;
    /// One receipt.
    fn receipt_at(&self, location: TxLocation) -> Result<Option<StoredReceipt>>;
    /// Quorum certificate of a block.
    fn quorum_certificate(&self, number: u64) -> Result<Option<QuorumCertificate>>;
    /// Where a transaction was committed.
    fn transaction_location(&self, hash: &B256) -> Result<Option<TxLocation>>;
}

/// Everything one committed block changes, written atomically.
#[derive(Debug, Clone)]
pub struct BlockWrite {
    /// The header.
    pub header: BlockHeader,
    /// Hash of the header.
    pub hash: B256,
    /// Transactions with senders, in order.
    pub transactions: Vec<StoredTx>,
    /// Receipts, in order.
    pub receipts: Vec<StoredReceipt>,
    /// The certificate that committed it.
    pub qc: Option<QuorumCertificate>,
    /// Sorted state write-set, as committed to by the header.
    pub state_writes: Vec<StateWrite>,
}

/// Durable writes: blocks and the transaction pool journal.
pub trait ChainWriter: Send + Sync {
    /// Writes a block atomically and makes it the head; also drops its transactions from the
    /// pool journal.
    fn commit_block(&self, block: &BlockWrite) -> Result<()>;
    /// Records admitted transactions so they survive a restart.
    fn journal_pool_insert(&self, txs: &[StoredTx]) -> Result<()>;
    /// Forgets pool transactions that will never be included.
    fn journal_pool_remove(&self, hashes: &[B256]) -> Result<()>;
    /// Every transaction in the pool journal.
    fn journal_pool_load(&self) -> Result<Vec<StoredTx>>;
}
