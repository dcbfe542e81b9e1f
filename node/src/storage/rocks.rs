//! RocksDB implementation of the storage traits.

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use alloy_primitives::{Address, B256, Bytes, U256};
use bcos_sdk::types::{BlockHeader, QuorumCertificate, StoredReceipt};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Options, SnapshotWithThreadMode,
    WriteBatch, WriteOptions,
};

use super::{
    AccountState, BlockReader, BlockWrite, ChainWriter, Result, StateReader, StorageError, StoredTx, TxLocation,
    codec::{self, state_key},
};

const CF_META: &str = "meta";
const CF_HEADERS: &str = "headers";
const CF_HASH_TO_NUMBER: &str = "hash_to_number";
const CF_BODIES: &str = "bodies";
const CF_RECEIPTS: &str = "receipts";
const CF_QCS: &str = "qcs";
const CF_TX_INDEX: &str = "tx_index";
const CF_STATE: &str = "state";
const CF_POOL: &str = "pool";
const COLUMN_FAMILIES: [&str; 9] =
    [CF_META, CF_HEADERS, CF_HASH_TO_NUMBER, CF_BODIES, CF_RECEIPTS, CF_QCS, CF_TX_INDEX, CF_STATE, CF_POOL];

const META_HEAD: &[u8] = b"head";
const META_CONSENSUS_STATE: &[u8] = b"consensus_state";
const BLOCK_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// Chain storage on RocksDB.
pub struct RocksStore {
    db: DB,
    head: AtomicU64,
    has_head: std::sync::atomic::AtomicBool,
    sync_writes: bool,
    /// Held from the head check to the head update of a commit, so two committers (consensus
    /// and block sync) cannot both write the block after one head.
    commit_lock: parking_lot::Mutex<()>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("head", &self.head.load(Ordering::Acquire)).finish_non_exhaustive()
    }
}

impl RocksStore {
    /// Opens (creating if needed) the database in `path`.
    pub fn open(path: &Path, sync_writes: bool) -> Result<Self> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_background_jobs(2);
        options.set_compression_type(DBCompressionType::Lz4);
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let descriptors = COLUMN_FAMILIES.iter().map(|name| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_bloom_filter(10.0, false);
            let mut cf_options = Options::default();
            cf_options.set_compression_type(DBCompressionType::Lz4);
            cf_options.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(*name, cf_options)
        });
        let db = DB::open_cf_descriptors(&options, path, descriptors)?;
        let store = Self {
            db,
            head: AtomicU64::new(0),
            has_head: std::sync::atomic::AtomicBool::new(false),
            sync_writes,
            commit_lock: parking_lot::Mutex::new(()),
        };
        if let Some(head) = store.db.get_cf(store.cf(CF_META), META_HEAD)? {
            store.head.store(codec::decode_u64(&head, CF_META)?, Ordering::Release);
            store.has_head.store(true, Ordering::Release);
        }
        Ok(store)
    }

    /// Whether a genesis block has been written.
    pub fn is_initialised(&self) -> bool {
        self.has_head.load(Ordering::Acquire)
    }

    /// A consistent view of the state at the current head, unaffected by later commits.
    pub fn state_snapshot(&self) -> StateSnapshot<'_> {
        StateSnapshot { store: self, snapshot: self.db.snapshot() }
    }

    fn cf(&self, name: &'static str) -> &rocksdb::ColumnFamily {
        // Every name used here is in COLUMN_FAMILIES, all of which `open` creates.
        self.db.cf_handle(name).unwrap_or_else(|| unreachable!("column family {name} is opened with the database"))
    }

    /// The database directory.
    pub fn path(&self) -> std::path::PathBuf {
        self.db.path().to_owned()
    }

    /// The consensus engine's durable state, as last saved.
    pub fn consensus_state(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_META), META_CONSENSUS_STATE)?)
    }

    /// Replaces the consensus engine's durable state. The engine relies on it to never vote
    /// twice, so it is written before any vote it covers is sent.
    pub fn save_consensus_state(&self, state: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), META_CONSENSUS_STATE, state);
        self.write(batch)
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync_writes);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    /// Decodes every record of one block in a per-transaction column family, in order.
    fn per_block<T>(&self, table: &'static str, number: u64, decode: impl Fn(&[u8]) -> Result<T>) -> Result<Vec<T>> {
        let prefix = number.to_be_bytes();
        let mut records = Vec::new();
        let iter =
            self.db.iterator_cf(self.cf(table), rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward));
        for entry in iter {
            let (key, value) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            records.push(decode(&value)?);
        }
        Ok(records)
    }

    fn get_decoded<T: alloy_rlp::Decodable>(&self, table: &'static str, key: &[u8]) -> Result<Option<T>> {
        match self.db.get_pinned_cf(self.cf(table), key)? {
            Some(bytes) => codec::decode(&bytes, table).map(Some),
            None => Ok(None),
        }
    }
}

fn read_account(bytes: Option<impl AsRef<[u8]>>) -> Result<Option<AccountState>> {
    bytes.map(|b| codec::decode(b.as_ref(), CF_STATE)).transpose()
}

fn read_slot(bytes: Option<impl AsRef<[u8]>>) -> Result<U256> {
    match bytes {
        None => Ok(U256::ZERO),
        Some(b) if b.as_ref().len() <= 32 => Ok(U256::from_be_slice(b.as_ref())),
        Some(_) => Err(StorageError::Corrupt { table: CF_STATE, detail: "storage value over 32 bytes".into() }),
    }
}

impl StateReader for RocksStore {
    fn account(&self, address: &Address) -> Result<Option<AccountState>> {
        read_account(self.db.get_pinned_cf(self.cf(CF_STATE), state_key::account(address))?)
    }

    fn storage(&self, address: &Address, slot: &U256) -> Result<U256> {
        read_slot(self.db.get_pinned_cf(self.cf(CF_STATE), state_key::storage(address, slot))?)
    }

    fn code(&self, code_hash: &B256) -> Result<Option<Bytes>> {
        Ok(self.db.get_cf(self.cf(CF_STATE), state_key::code(code_hash))?.map(Bytes::from))
    }
}

/// The state as of one moment, read from a RocksDB snapshot.
pub struct StateSnapshot<'a> {
    store: &'a RocksStore,
    snapshot: SnapshotWithThreadMode<'a, DB>,
}

impl StateSnapshot<'_> {
    /// The head block number as of the snapshot (`None` before genesis).
    pub fn head_number(&self) -> Result<Option<u64>> {
        self.snapshot
            .get_cf(self.store.cf(CF_META), META_HEAD)?
            .map(|bytes| codec::decode_u64(&bytes, CF_META))
            .transpose()
    }
}

impl StateReader for StateSnapshot<'_> {
    fn account(&self, address: &Address) -> Result<Option<AccountState>> {
        read_account(self.snapshot.get_cf(self.store.cf(CF_STATE), state_key::account(address))?)
    }

    fn storage(&self, address: &Address, slot: &U256) -> Result<U256> {
        read_slot(self.snapshot.get_cf(self.store.cf(CF_STATE), state_key::storage(address, slot))?)
    }

    fn code(&self, code_hash: &B256) -> Result<Option<Bytes>> {
        Ok(self.snapshot.get_cf(self.store.cf(CF_STATE), state_key::code(code_hash))?.map(Bytes::from))
    }
}

impl BlockReader for RocksStore {
    fn head_number(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    fn header(&self, number: u64) -> Result<Option<BlockHeader>> {
        self.get_decoded(CF_HEADERS, &number.to_be_bytes())
    }

    fn block_number(&self, hash: &B256) -> Result<Option<u64>> {
        match self.db.get_pinned_cf(self.cf(CF_HASH_TO_NUMBER), hash)? {
            Some(bytes) => codec::decode_u64(&bytes, CF_HASH_TO_NUMBER).map(Some),
            None => Ok(None),
        }
    }

    fn transactions(&self, number: u64) -> Result<Option<Vec<StoredTx>>> {
        if number > self.head_number() || !self.is_initialised() {
            return Ok(None);
        }
        self.per_block(CF_BODIES, number, |bytes| codec::decode_tx(bytes, CF_BODIES)).map(Some)
    }

    fn receipts(&self, number: u64) -> Result<Option<Vec<StoredReceipt>>> {
        if number > self.head_number() || !self.is_initialised() {
            return Ok(None);
        }
        self.per_block(CF_RECEIPTS, number, |bytes| codec::decode(bytes, CF_RECEIPTS)).map(Some)
    }

    fn transaction_at(&self, location: TxLocation) -> Result<Option<StoredTx>> {
        match self.db.get_pinned_cf(self.cf(CF_BODIES), location.key())? {
            Some(bytes) => codec::decode_tx(&bytes, CF_BODIES).map(Some),
            None => Ok(None),
        }
    }

    fn receipt_at(&self, location: TxLocation) -> Result<Option<StoredReceipt>> {
        self.get_decoded(CF_RECEIPTS, &location.key())
    }

    fn quorum_certificate(&self, number: u64) -> Result<Option<QuorumCertificate>> {
        self.get_decoded(CF_QCS, &number.to_be_bytes())
    }

    fn transaction_location(&self, hash: &B256) -> Result<Option<TxLocation>> {
        match self.db.get_pinned_cf(self.cf(CF_TX_INDEX), hash)? {
            Some(bytes) => TxLocation::from_key(&bytes)
                .map(Some)
                .ok_or_else(|| StorageError::Corrupt { table: CF_TX_INDEX, detail: "expected 12 bytes".into() }),
            None => Ok(None),
        }
    }
}

impl ChainWriter for RocksStore {
    fn commit_block(&self, block: &BlockWrite) -> Result<()> {
        let _committing = self.commit_lock.lock();
        let number = block.header.number;
        let initialised = self.is_initialised();
        let head = self.head_number();
        if (initialised && number != head + 1) || (!initialised && number != 0) {
            return Err(StorageError::NotNext { number, head });
        }
        let key = number.to_be_bytes();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_HEADERS), key, codec::encode(&block.header));
        batch.put_cf(self.cf(CF_HASH_TO_NUMBER), block.hash, key);
        if let Some(qc) = &block.qc {
            batch.put_cf(self.cf(CF_QCS), key, codec::encode(qc));
        }
        for (index, tx) in block.transactions.iter().enumerate() {
            let location = TxLocation { block_number: number, index: index as u32 }.key();
            let hash = tx.hash();
            batch.put_cf(self.cf(CF_BODIES), location, codec::encode_tx(tx));
            batch.put_cf(self.cf(CF_TX_INDEX), hash, location);
            batch.delete_cf(self.cf(CF_POOL), hash);
        }
        for (index, receipt) in block.receipts.iter().enumerate() {
            let location = TxLocation { block_number: number, index: index as u32 }.key();
            batch.put_cf(self.cf(CF_RECEIPTS), location, codec::encode(receipt));
        }
        let state = self.cf(CF_STATE);
        for write in &block.state_writes {
            if write.value.is_empty() {
                batch.delete_cf(state, &write.key);
            } else {
                batch.put_cf(state, &write.key, &write.value);
            }
        }
        batch.put_cf(self.cf(CF_META), META_HEAD, key);
        self.write(batch)?;
        self.head.store(number, Ordering::Release);
        self.has_head.store(true, Ordering::Release);
        Ok(())
    }

    fn journal_pool_insert(&self, txs: &[StoredTx]) -> Result<()> {
        let mut batch = WriteBatch::default();
        let pool = self.cf(CF_POOL);
        for tx in txs {
            batch.put_cf(pool, tx.hash(), codec::encode_tx(tx));
        }
        self.write(batch)
    }

    fn journal_pool_remove(&self, hashes: &[B256]) -> Result<()> {
        let mut batch = WriteBatch::default();
        let pool = self.cf(CF_POOL);
        for hash in hashes {
            batch.delete_cf(pool, hash);
        }
        self.write(batch)
    }

    fn journal_pool_load(&self) -> Result<Vec<StoredTx>> {
        self.db
            .iterator_cf(self.cf(CF_POOL), rocksdb::IteratorMode::Start)
            .map(|entry| {
                let (_, value) = entry?;
                codec::decode_tx(&value, CF_POOL)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Bloom;
    use bcos_sdk::types::StateWrite;

    fn block(number: u64, writes: Vec<StateWrite>) -> BlockWrite {
        let header = BlockHeader {
            parent_hash: B256::ZERO,
            number,
            timestamp_ms: number,
            proposer: B256::ZERO,
            transactions_root: B256::ZERO,
            receipts_root: B256::ZERO,
            state_root: B256::ZERO,
            logs_bloom: Bloom::default(),
            gas_used: 0,
            gas_limit: 1,
        };
        BlockWrite {
            hash: header.hash(),
            header,
            transactions: vec![],
            receipts: vec![],
            qc: None,
            state_writes: writes,
        }
    }

    #[test]
    fn blocks_and_state_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let address = Address::repeat_byte(7);
        let account = AccountState { nonce: 3, balance: U256::from(9), code_hash: B256::ZERO };
        {
            let store = RocksStore::open(dir.path(), false).expect("open");
            assert!(!store.is_initialised());
            store.commit_block(&block(0, vec![])).expect("genesis");
            let write = StateWrite {
                key: Bytes::copy_from_slice(&state_key::account(&address)),
                value: Bytes::from(codec::encode(&account)),
            };
            store.commit_block(&block(1, vec![write])).expect("block 1");
            assert!(matches!(store.commit_block(&block(5, vec![])), Err(StorageError::NotNext { number: 5, head: 1 })));
        }
        let store = RocksStore::open(dir.path(), false).expect("reopen");
        assert_eq!(store.head_number(), 1);
        assert_eq!(store.account(&address).expect("read"), Some(account));
        let hash = block(1, vec![]).hash;
        assert_eq!(store.block_number(&hash).expect("read"), Some(1));
        assert_eq!(store.header(1).expect("read").map(|h| h.number), Some(1));
    }

    #[test]
    fn corrupt_records_are_reported_not_panicked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksStore::open(dir.path(), false).expect("open");
        store.db.put_cf(store.cf(CF_HEADERS), 4u64.to_be_bytes(), b"\xff\x00garbage").expect("put");
        assert!(matches!(store.header(4), Err(StorageError::Corrupt { table: CF_HEADERS, .. })));
        store.db.put_cf(store.cf(CF_STATE), state_key::account(&Address::ZERO), b"\x01").expect("put");
        assert!(matches!(store.account(&Address::ZERO), Err(StorageError::Corrupt { .. })));
    }
}
