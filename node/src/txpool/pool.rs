//! The pool itself.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque, hash_map::Entry},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_consensus::Transaction;
use alloy_eips::eip2930::AccessList;
use alloy_primitives::{Address, B256, Bytes, U256};
use bcos_sdk::{
    config::TxPoolConfig,
    types::{RecoveredTx, system::PERMISSIONS_ADDRESS},
};
use parking_lot::Mutex;
use rayon::prelude::*;
use tokio::sync::{Notify, broadcast};

/// Client transactions buffered for gossip; a slower gossip task skips ahead.
const ADMITTED_CAPACITY: usize = 65_536;
/// Hashes of recently committed transactions remembered, so gossip arriving after a block does
/// not cost a signature recovery each.
const RECENT_COMMITS: usize = 100_000;

use super::{PoolError, PoolErrorKind};
use crate::{
    executor::permissions,
    metrics::PoolMetrics,
    storage::{ChainWriter, StateReader, StoredTx},
};

/// Pending transactions, ready for block production in arrival order.
pub struct TxPool {
    chain_id: u64,
    config: TxPoolConfig,
    block_gas_limit: AtomicU64,
    state: Arc<dyn StateReader>,
    journal: Arc<dyn ChainWriter>,
    /// Permission slots read from committed state since the last commit: most chains never
    /// enable permissions, and reading the switch once per block rather than per transaction
    /// keeps admission cheap. A value read just before a commit may outlive it by one block;
    /// execution checks permissions again, so that only delays a refusal.
    permission_slots: Mutex<HashMap<U256, U256>>,
    inner: Mutex<Inner>,
    ready_changed: Notify,
    /// Raw transactions admitted from clients, for gossip to peers.
    admitted: broadcast::Sender<Bytes>,
    metrics: PoolMetrics,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<B256, Pooled>,
    senders: HashMap<Address, SenderTxs>,
    /// Ready transactions by the order in which they became ready.
    ready: BTreeMap<u64, B256>,
    next_seq: u64,
    /// The last [`RECENT_COMMITS`] committed transaction hashes, oldest first, and as a set.
    recent_commits: VecDeque<B256>,
    recently_committed: HashSet<B256>,
}

impl Inner {
    /// Whether gossip of this hash can be dropped unseen: pooled, or committed lately.
    fn knows(&self, hash: &B256) -> bool {
        self.by_hash.contains_key(hash) || self.recently_committed.contains(hash)
    }

    fn remember_committed(&mut self, hashes: impl IntoIterator<Item = B256>) {
        for hash in hashes {
            if self.recently_committed.insert(hash) {
                self.recent_commits.push_back(hash);
            }
        }
        while self.recent_commits.len() > RECENT_COMMITS {
            if let Some(old) = self.recent_commits.pop_front() {
                self.recently_committed.remove(&old);
            }
        }
    }
}

/// Whether admitted transactions go to the pool journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Journal {
    /// A client's: it was told the transaction is accepted, so a restart must not lose it.
    Write,
    /// A peer's gossip: the node the client chose journalled it and offers it again until it
    /// commits, so writing it here too would only double the pool's disk traffic.
    Skip,
}

struct Pooled {
    tx: Arc<RecoveredTx>,
    ready_seq: Option<u64>,
    /// When peers were last offered it (admission counts: the client path gossips at once).
    offered_at: Instant,
}

struct SenderTxs {
    /// The sender's next nonce on chain.
    committed_nonce: u64,
    /// First nonce that is not ready (every nonce from `committed_nonce` below it is pooled).
    ready_until: u64,
    by_nonce: BTreeMap<u64, B256>,
}

impl std::fmt::Debug for TxPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxPool").field("len", &self.len()).finish_non_exhaustive()
    }
}

/// Gas every transaction pays before execution (as Ethereum's Prague rules, without EIP-7623's
/// calldata floor, which the EVM applies itself).
pub fn intrinsic_gas(tx: &RecoveredTx) -> u64 {
    let envelope = tx.envelope();
    let input = envelope.input();
    let zero_bytes = input.iter().filter(|b| **b == 0).count() as u64;
    let nonzero_bytes = input.len() as u64 - zero_bytes;
    let mut gas = 21_000 + zero_bytes * 4 + nonzero_bytes * 16;
    if envelope.kind().is_create() {
        gas += 32_000 + (input.len() as u64).div_ceil(32) * 2;
    }
    if let Some(list) = envelope.access_list() {
        gas += access_list_gas(list);
    }
    gas
}

fn access_list_gas(list: &AccessList) -> u64 {
    list.iter().map(|item| 2_400 + item.storage_keys.len() as u64 * 1_900).sum()
}

impl TxPool {
    /// An empty pool for a chain; call [`TxPool::restore`] to reload the journal.
    pub fn new(
        chain_id: u64,
        config: TxPoolConfig,
        block_gas_limit: u64,
        state: Arc<dyn StateReader>,
        journal: Arc<dyn ChainWriter>,
        metrics: PoolMetrics,
    ) -> Self {
        Self {
            chain_id,
            config,
            block_gas_limit: AtomicU64::new(block_gas_limit),
            state,
            journal,
            permission_slots: Mutex::default(),
            inner: Mutex::new(Inner::default()),
            ready_changed: Notify::new(),
            admitted: broadcast::channel(ADMITTED_CAPACITY).0,
            metrics,
        }
    }

    /// Reloads journalled transactions after a restart; returns how many are pending again.
    pub fn restore(&self) -> Result<usize, PoolError> {
        let stored = self.journal.journal_pool_load().map_err(storage_error)?;
        let mut stale = Vec::new();
        let mut restored = 0;
        for tx in stored {
            let hash = tx.hash();
            match self.insert(Arc::new(tx.into_recovered())) {
                Ok(()) => restored += 1,
                Err(_) => stale.push(hash),
            }
        }
        if !stale.is_empty() {
            self.journal.journal_pool_remove(&stale).map_err(storage_error)?;
        }
        self.metrics.size.set(self.len() as i64);
        Ok(restored)
    }

    /// Admits one raw transaction: the path of `eth_sendRawTransaction`.
    pub fn submit(&self, raw: &[u8]) -> Result<B256, PoolError> {
        let result = self.check_stateless(raw).and_then(|tx| self.check_permission(tx)).and_then(|tx| {
            self.admit(vec![tx], Journal::Write).pop().unwrap_or_else(|| {
                Err(PoolError::new(None, PoolErrorKind::Storage("admission returned no result".into())))
            })
        });
        self.record(&result);
        if result.is_ok() {
            // Nobody listening (a single node) is fine.
            let _ = self.admitted.send(Bytes::copy_from_slice(raw));
        }
        result
    }

    /// Raw transactions clients submit from now on, for gossip. Transactions that arrive by
    /// gossip ([`TxPool::submit_many`]) are not repeated here, so gossip does not echo.
    pub fn subscribe_admitted(&self) -> broadcast::Receiver<Bytes> {
        self.admitted.subscribe()
    }

    /// Admits many raw transactions, recovering their senders in parallel: the path of gossip.
    /// Transactions this pool holds or saw committed lately are refused as already known before
    /// their signature is recovered: peers offer each transaction more than once. Gossiped
    /// transactions are not journalled (see [`Journal::Skip`]).
    pub fn submit_many(&self, raws: &[&[u8]]) -> Vec<Result<B256, PoolError>> {
        // An EIP-2718 transaction's hash is the hash of its encoding.
        let hashes: Vec<B256> = raws.par_iter().map(alloy_primitives::keccak256).collect();
        let known: Vec<bool> = {
            let inner = self.inner.lock();
            hashes.iter().map(|hash| inner.knows(hash)).collect()
        };
        let checked: Vec<_> = raws
            .par_iter()
            .zip(&hashes)
            .zip(&known)
            .map(|((raw, hash), known)| {
                if *known {
                    Err(PoolError::new(Some(*hash), PoolErrorKind::AlreadyKnown))
                } else {
                    self.check_stateless(raw).and_then(|tx| self.check_permission(tx))
                }
            })
            .collect();
        let mut results = Vec::with_capacity(raws.len());
        let mut valid = Vec::new();
        let mut slots = Vec::new();
        for (i, check) in checked.into_iter().enumerate() {
            match check {
                Ok(tx) => {
                    slots.push(i);
                    valid.push(tx);
                    results.push(Ok(B256::ZERO));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        for (slot, result) in slots.into_iter().zip(self.admit(valid, Journal::Skip)) {
            results[slot] = result;
        }
        results.iter().for_each(|r| self.record(r));
        results
    }

    fn record(&self, result: &Result<B256, PoolError>) {
        match result {
            Ok(_) => self.metrics.admitted.inc(),
            Err(e) => self.metrics.rejected.with_label_values(&[e.kind.metric_label()]).inc(),
        }
    }

    fn check_stateless(&self, raw: &[u8]) -> Result<RecoveredTx, PoolError> {
        if raw.len() > self.config.max_tx_bytes {
            return Err(PoolError::new(
                None,
                PoolErrorKind::Oversized { size: raw.len(), limit: self.config.max_tx_bytes },
            ));
        }
        let tx = RecoveredTx::decode_and_recover(raw, self.chain_id).map_err(|e| PoolError::new(None, e))?;
        let limit = self.block_gas_limit.load(Ordering::Relaxed);
        if tx.gas_limit() > limit {
            return Err(PoolError::new(
                Some(tx.hash()),
                PoolErrorKind::ExceedsBlockGasLimit { gas: tx.gas_limit(), limit },
            ));
        }
        let intrinsic = intrinsic_gas(&tx);
        if tx.gas_limit() < intrinsic {
            return Err(PoolError::new(
                Some(tx.hash()),
                PoolErrorKind::IntrinsicGasTooLow { gas: tx.gas_limit(), intrinsic },
            ));
        }
        Ok(tx)
    }

    /// Whether the sender may send the transaction, by committed state.
    fn check_permission(&self, tx: RecoveredTx) -> Result<RecoveredTx, PoolError> {
        let permitted = permissions::check_transaction(tx.sender(), tx.envelope().kind(), |slot| {
            if let Some(value) = self.permission_slots.lock().get(&slot) {
                return Ok(*value);
            }
            let value = self.state.storage(&PERMISSIONS_ADDRESS, &slot)?;
            self.permission_slots.lock().insert(slot, value);
            Ok(value)
        });
        match permitted {
            Ok(Ok(())) => Ok(tx),
            Ok(Err(denied)) => Err(PoolError::new(Some(tx.hash()), denied)),
            Err(e) => Err(PoolError { hash: Some(tx.hash()), kind: storage_error(e).kind }),
        }
    }

    /// Stateful checks, journal, then insertion. The journal write happens between two short
    /// critical sections so that no lock is held during I/O.
    fn admit(&self, txs: Vec<RecoveredTx>, journal: Journal) -> Vec<Result<B256, PoolError>> {
        let mut results: Vec<Result<B256, PoolError>> = Vec::with_capacity(txs.len());
        let mut accepted = Vec::new();
        let mut in_batch = HashSet::new();
        {
            let mut inner = self.inner.lock();
            for tx in txs {
                if !in_batch.insert(tx.hash()) {
                    results.push(Err(PoolError::new(Some(tx.hash()), PoolErrorKind::AlreadyKnown)));
                    continue;
                }
                match self.check_stateful(&mut inner, &tx) {
                    Ok(()) => {
                        results.push(Ok(tx.hash()));
                        accepted.push(tx);
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
        }
        if accepted.is_empty() {
            return results;
        }
        let stored: Vec<StoredTx> = match journal {
            Journal::Write => accepted.iter().map(StoredTx::from_recovered).collect(),
            Journal::Skip => Vec::new(),
        };
        if !stored.is_empty()
            && let Err(e) = self.journal.journal_pool_insert(&stored)
        {
            let error = storage_error(e);
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(PoolError { hash: result.as_ref().ok().copied(), kind: error.kind.clone() });
            }
            return results;
        }
        let mut failed_inserts = Vec::new();
        let mut accepted = accepted.into_iter();
        for result in results.iter_mut().filter(|r| r.is_ok()) {
            let Some(tx) = accepted.next() else { break };
            let hash = tx.hash();
            if let Err(e) = self.insert(Arc::new(tx)) {
                failed_inserts.push(hash);
                *result = Err(e);
            }
        }
        // Raced with a commit or an identical submission: forget what the pool does not hold (an
        // identical submission that won keeps its journal entry, which is the same record).
        failed_inserts.retain(|hash| self.get(hash).is_none());
        if !failed_inserts.is_empty()
            && let Err(e) = self.journal.journal_pool_remove(&failed_inserts)
        {
            tracing::warn!(target: "txpool", error = %e, "cannot forget refused transactions in the journal");
        }
        self.metrics.size.set(self.len() as i64);
        self.ready_changed.notify_waiters();
        results
    }

    fn check_stateful(&self, inner: &mut Inner, tx: &RecoveredTx) -> Result<(), PoolError> {
        let hash = tx.hash();
        if inner.by_hash.contains_key(&hash) {
            return Err(PoolError::new(Some(hash), PoolErrorKind::AlreadyKnown));
        }
        let committed_nonce = match inner.senders.get(&tx.sender()) {
            Some(sender) => sender.committed_nonce,
            None => self.committed_nonce(&tx.sender()).map_err(|e| PoolError { hash: Some(hash), kind: e.kind })?,
        };
        let nonce = tx.nonce();
        if nonce < committed_nonce {
            return Err(PoolError::new(
                Some(hash),
                PoolErrorKind::NonceTooLow { expected: committed_nonce, got: nonce },
            ));
        }
        if nonce - committed_nonce > self.config.max_nonce_gap {
            return Err(PoolError::new(
                Some(hash),
                PoolErrorKind::NonceTooHigh {
                    expected: committed_nonce,
                    got: nonce,
                    max_gap: self.config.max_nonce_gap,
                },
            ));
        }
        let existing = inner.senders.get(&tx.sender()).and_then(|s| s.by_nonce.get(&nonce)).copied();
        match existing {
            Some(old) => {
                let old_fee = inner.by_hash.get(&old).map(|p| p.tx.envelope().max_fee_per_gas()).unwrap_or(0);
                let new_fee = tx.envelope().max_fee_per_gas();
                if new_fee == 0 || new_fee < old_fee.saturating_add(old_fee / 10).max(1) {
                    return Err(PoolError::new(Some(hash), PoolErrorKind::ReplacementUnderpriced));
                }
            }
            None => {
                if inner.by_hash.len() >= self.config.capacity {
                    return Err(PoolError::new(Some(hash), PoolErrorKind::PoolFull));
                }
                let pending = inner.senders.get(&tx.sender()).map_or(0, |s| s.by_nonce.len());
                if pending >= self.config.max_per_sender {
                    return Err(PoolError::new(Some(hash), PoolErrorKind::SenderLimit(self.config.max_per_sender)));
                }
            }
        }
        Ok(())
    }

    fn committed_nonce(&self, sender: &Address) -> Result<u64, PoolError> {
        self.state.account(sender).map(|a| a.map_or(0, |a| a.nonce)).map_err(storage_error)
    }

    /// Inserts a checked transaction, replacing one with the same nonce, and promotes what became
    /// ready.
    fn insert(&self, tx: Arc<RecoveredTx>) -> Result<(), PoolError> {
        let hash = tx.hash();
        let sender = tx.sender();
        let nonce = tx.nonce();
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if inner.by_hash.contains_key(&hash) {
            return Err(PoolError::new(Some(hash), PoolErrorKind::AlreadyKnown));
        }
        let entry = match inner.senders.entry(sender) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(vacant) => {
                let committed_nonce = self.committed_nonce(&sender)?;
                if nonce < committed_nonce {
                    return Err(PoolError::new(
                        Some(hash),
                        PoolErrorKind::NonceTooLow { expected: committed_nonce, got: nonce },
                    ));
                }
                vacant.insert(SenderTxs { committed_nonce, ready_until: committed_nonce, by_nonce: BTreeMap::new() })
            }
        };
        if nonce < entry.committed_nonce {
            return Err(PoolError::new(
                Some(hash),
                PoolErrorKind::NonceTooLow { expected: entry.committed_nonce, got: nonce },
            ));
        }
        let mut ready_seq = None;
        if let Some(old) = entry.by_nonce.insert(nonce, hash) {
            if let Some(replaced) = inner.by_hash.remove(&old) {
                ready_seq = replaced.ready_seq;
                if let Some(seq) = ready_seq {
                    inner.ready.insert(seq, hash);
                }
            }
        } else if inner.by_hash.len() >= self.config.capacity {
            entry.by_nonce.remove(&nonce);
            if entry.by_nonce.is_empty() {
                inner.senders.remove(&sender);
            }
            return Err(PoolError::new(Some(hash), PoolErrorKind::PoolFull));
        }
        inner.by_hash.insert(hash, Pooled { tx, ready_seq, offered_at: Instant::now() });
        promote(inner, &sender);
        Ok(())
    }

    /// Up to `max` ready transactions in the order they became ready, keeping them pooled until
    /// their block commits.
    pub fn ready_transactions(&self, max: usize) -> Vec<Arc<RecoveredTx>> {
        let inner = self.inner.lock();
        inner.ready.values().take(max).filter_map(|hash| inner.by_hash.get(hash).map(|p| p.tx.clone())).collect()
    }

    /// Up to `max` ready transactions, oldest ready first, that peers were last offered at least
    /// `age` ago, marked as offered now. Gossip is best effort (a peer may have been down or cut
    /// off, or the transaction restored from the journal after a restart), so the driver offers
    /// these again; peers that hold them answer "already known" at the cost of a hash.
    pub fn take_unconfirmed(&self, age: Duration, max: usize) -> Vec<Arc<RecoveredTx>> {
        let Some(cutoff) = Instant::now().checked_sub(age) else { return Vec::new() };
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let mut taken = Vec::new();
        for hash in inner.ready.values() {
            if taken.len() == max {
                break;
            }
            if let Some(pooled) = inner.by_hash.get_mut(hash)
                && pooled.offered_at <= cutoff
            {
                pooled.offered_at = Instant::now();
                taken.push(pooled.tx.clone());
            }
        }
        taken
    }

    /// Number of ready transactions.
    pub fn ready_len(&self) -> usize {
        self.inner.lock().ready.len()
    }

    /// Waits until the ready set changes.
    pub async fn ready_changed(&self) {
        self.ready_changed.notified().await
    }

    /// A pending transaction by hash.
    pub fn get(&self, hash: &B256) -> Option<Arc<RecoveredTx>> {
        self.inner.lock().by_hash.get(hash).map(|p| p.tx.clone())
    }

    /// Number of pending transactions, ready or queued.
    pub fn len(&self) -> usize {
        self.inner.lock().by_hash.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The nonce a sender's next transaction should use, counting ready pooled ones.
    pub fn pending_nonce(&self, sender: &Address) -> Result<u64, PoolError> {
        if let Some(entry) = self.inner.lock().senders.get(sender) {
            return Ok(entry.ready_until);
        }
        self.committed_nonce(sender)
    }

    /// Updates the pool after a block committed: drops its transactions and any other
    /// transaction whose nonce it used up, and picks up a new block gas limit.
    /// `included` lists each committed transaction's sender, nonce and hash.
    pub fn on_block_committed(&self, included: &[(Address, u64, B256)], block_gas_limit: u64) {
        self.block_gas_limit.store(block_gas_limit, Ordering::Relaxed);
        self.permission_slots.lock().clear();
        let mut next_nonces: HashMap<Address, u64> = HashMap::new();
        for (sender, nonce, _) in included {
            let next = next_nonces.entry(*sender).or_default();
            *next = (*next).max(nonce + 1);
        }
        let mut dropped = Vec::new();
        {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            inner.remember_committed(included.iter().map(|(_, _, hash)| *hash));
            for (sender, next_nonce) in next_nonces {
                let Some(entry) = inner.senders.get_mut(&sender) else { continue };
                entry.committed_nonce = entry.committed_nonce.max(next_nonce);
                entry.ready_until = entry.ready_until.max(entry.committed_nonce);
                let keep = entry.by_nonce.split_off(&entry.committed_nonce);
                let gone = std::mem::replace(&mut entry.by_nonce, keep);
                for hash in gone.into_values() {
                    if let Some(pooled) = inner.by_hash.remove(&hash) {
                        if let Some(seq) = pooled.ready_seq {
                            inner.ready.remove(&seq);
                        }
                        dropped.push(hash);
                    }
                }
                promote(inner, &sender);
            }
        }
        // Included transactions left the journal in the block's own write batch; only those
        // displaced by another transaction with the same nonce need removing here.
        let committed: HashSet<B256> = included.iter().map(|(_, _, hash)| *hash).collect();
        let displaced: Vec<B256> = dropped.into_iter().filter(|h| !committed.contains(h)).collect();
        if !displaced.is_empty()
            && let Err(e) = self.journal.journal_pool_remove(&displaced)
        {
            tracing::warn!(target: "txpool", error = %e, "cannot forget displaced transactions in the journal");
        }
        self.metrics.size.set(self.len() as i64);
    }

    /// Removes transactions block production found unexecutable; higher nonces of their senders
    /// wait (not ready) until the gap is filled again.
    pub fn remove_invalid(&self, hashes: &[B256]) {
        let mut removed = Vec::new();
        {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            for hash in hashes {
                let Some(pooled) = inner.by_hash.remove(hash) else { continue };
                let sender = pooled.tx.sender();
                let nonce = pooled.tx.nonce();
                if let Some(seq) = pooled.ready_seq {
                    inner.ready.remove(&seq);
                }
                if let Some(entry) = inner.senders.get_mut(&sender) {
                    entry.by_nonce.remove(&nonce);
                    if nonce < entry.ready_until {
                        entry.ready_until = nonce;
                        let later: Vec<B256> = entry.by_nonce.range(nonce..).map(|(_, h)| *h).collect();
                        for later_hash in later {
                            if let Some(seq) = inner.by_hash.get_mut(&later_hash).and_then(|p| p.ready_seq.take()) {
                                inner.ready.remove(&seq);
                            }
                        }
                    }
                    if entry.by_nonce.is_empty() {
                        inner.senders.remove(&sender);
                    }
                }
                removed.push(*hash);
            }
        }
        self.metrics.evicted.inc_by(removed.len() as u64);
        if let Err(e) = self.journal.journal_pool_remove(&removed) {
            tracing::warn!(target: "txpool", error = %e, "cannot forget invalid transactions in the journal");
        }
        self.metrics.size.set(self.len() as i64);
    }
}

/// Marks every contiguous nonce from `ready_until` as ready, in order.
fn promote(inner: &mut Inner, sender: &Address) {
    let Some(entry) = inner.senders.get_mut(sender) else { return };
    while let Some(hash) = entry.by_nonce.get(&entry.ready_until) {
        if let Some(pooled) = inner.by_hash.get_mut(hash)
            && pooled.ready_seq.is_none()
        {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            pooled.ready_seq = Some(seq);
            inner.ready.insert(seq, *hash);
        }
        entry.ready_until += 1;
    }
    if entry.by_nonce.is_empty() {
        inner.senders.remove(sender);
    }
}

fn storage_error(e: crate::storage::StorageError) -> PoolError {
    PoolError::new(None, PoolErrorKind::Storage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use alloy_consensus::TxEip1559;
    use alloy_primitives::TxKind;
    use bcos_sdk::crypto::AccountKey;
    use prometheus::Registry;

    use super::*;
    use crate::storage::RocksStore;

    const CHAIN_ID: u64 = 7;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<RocksStore>,
        pool: TxPool,
    }

    fn fixture(config: TxPoolConfig) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(RocksStore::open(dir.path(), false).expect("open"));
        let pool = reopen(&store, config);
        Fixture { _dir: dir, store, pool }
    }

    fn reopen(store: &Arc<RocksStore>, config: TxPoolConfig) -> TxPool {
        let metrics = PoolMetrics::register(&Registry::new());
        TxPool::new(CHAIN_ID, config, 30_000_000, store.clone(), store.clone(), metrics)
    }

    fn tx(key: &AccountKey, nonce: u64, max_fee: u128) -> Bytes {
        key.sign_transaction(TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: max_fee,
            to: TxKind::Call(Address::repeat_byte(9)),
            ..Default::default()
        })
    }

    fn ready_nonces(pool: &TxPool) -> Vec<(Address, u64)> {
        pool.ready_transactions(usize::MAX).iter().map(|t| (t.sender(), t.nonce())).collect()
    }

    fn kind(result: Result<B256, PoolError>) -> PoolErrorKind {
        result.expect_err("refused").kind
    }

    #[test]
    fn gaps_wait_and_fill_in_nonce_order() {
        let f = fixture(TxPoolConfig::default());
        let (a, b) = (AccountKey::generate(), AccountKey::generate());
        f.pool.submit(&tx(&a, 1, 0)).expect("queued");
        assert!(ready_nonces(&f.pool).is_empty(), "nonce 1 waits for 0");
        f.pool.submit(&tx(&b, 0, 0)).expect("ready");
        f.pool.submit(&tx(&a, 0, 0)).expect("fills the gap");
        assert_eq!(ready_nonces(&f.pool), vec![(b.address(), 0), (a.address(), 0), (a.address(), 1)]);
        assert_eq!(f.pool.pending_nonce(&a.address()).expect("nonce"), 2);
        assert_eq!(f.pool.len(), 3);
    }

    #[test]
    fn duplicates_replacements_and_limits_are_refused() {
        let config = TxPoolConfig { capacity: 3, max_per_sender: 2, max_nonce_gap: 10, ..Default::default() };
        let f = fixture(config);
        let a = AccountKey::generate();
        let first = tx(&a, 0, 100);
        f.pool.submit(&first).expect("admitted");
        assert_eq!(kind(f.pool.submit(&first)), PoolErrorKind::AlreadyKnown);
        assert_eq!(kind(f.pool.submit(&tx(&a, 0, 105))), PoolErrorKind::ReplacementUnderpriced);
        let replacement = f.pool.submit(&tx(&a, 0, 110)).expect("10% bump replaces");
        assert_eq!(f.pool.ready_transactions(10).iter().map(|t| t.hash()).collect::<Vec<_>>(), vec![replacement]);
        assert!(matches!(kind(f.pool.submit(&tx(&a, 11, 0))), PoolErrorKind::NonceTooHigh { .. }));
        f.pool.submit(&tx(&a, 1, 0)).expect("second of sender");
        assert_eq!(kind(f.pool.submit(&tx(&a, 2, 0))), PoolErrorKind::SenderLimit(2));
        f.pool.submit(&tx(&AccountKey::generate(), 0, 0)).expect("third in pool");
        assert_eq!(kind(f.pool.submit(&tx(&AccountKey::generate(), 0, 0))), PoolErrorKind::PoolFull);
        assert_eq!(f.pool.len(), 3);
    }

    #[test]
    fn commits_drop_included_and_displaced_transactions() {
        let f = fixture(TxPoolConfig::default());
        let a = AccountKey::generate();
        let hashes: Vec<B256> = (0..3).map(|n| f.pool.submit(&tx(&a, n, 0)).expect("admitted")).collect();
        // Nonces 0 and 1 committed (1 by another transaction than ours).
        f.pool.on_block_committed(&[(a.address(), 0, hashes[0]), (a.address(), 1, B256::repeat_byte(1))], 30_000_000);
        assert_eq!(ready_nonces(&f.pool), vec![(a.address(), 2)]);
        assert!(f.pool.get(&hashes[1]).is_none());
        let journal: Vec<B256> = f.store.journal_pool_load().expect("journal").iter().map(StoredTx::hash).collect();
        assert!(!journal.contains(&hashes[1]), "displaced transaction left the journal");
    }

    #[test]
    fn invalid_transactions_unready_their_successors() {
        let f = fixture(TxPoolConfig::default());
        let a = AccountKey::generate();
        let hashes: Vec<B256> = (0..3).map(|n| f.pool.submit(&tx(&a, n, 0)).expect("admitted")).collect();
        f.pool.remove_invalid(&hashes[1..2]);
        assert_eq!(ready_nonces(&f.pool), vec![(a.address(), 0)]);
        assert_eq!(f.pool.len(), 2);
        f.pool.submit(&tx(&a, 1, 7)).expect("gap refilled");
        assert_eq!(ready_nonces(&f.pool), vec![(a.address(), 0), (a.address(), 1), (a.address(), 2)]);
    }

    #[test]
    fn the_journal_restores_pending_transactions_after_a_restart() {
        let f = fixture(TxPoolConfig::default());
        let a = AccountKey::generate();
        for nonce in [0, 1, 5] {
            f.pool.submit(&tx(&a, nonce, 0)).expect("admitted");
        }
        let restarted = reopen(&f.store, TxPoolConfig::default());
        assert_eq!(restarted.restore().expect("restore"), 3);
        assert_eq!(ready_nonces(&restarted), vec![(a.address(), 0), (a.address(), 1)]);
        assert_eq!(restarted.len(), 3);
    }

    #[test]
    fn only_client_transactions_are_journalled() {
        let f = fixture(TxPoolConfig::default());
        let (client, peer) = (AccountKey::generate(), AccountKey::generate());
        f.pool.submit(&tx(&client, 0, 0)).expect("admitted");
        assert!(f.pool.submit_many(&[&tx(&peer, 0, 0)])[0].is_ok());
        assert_eq!(f.pool.len(), 2);
        let restarted = reopen(&f.store, TxPoolConfig::default());
        assert_eq!(restarted.restore().expect("restore"), 1);
        assert_eq!(ready_nonces(&restarted), vec![(client.address(), 0)], "the peer's origin keeps its own");
    }

    #[test]
    fn gossip_batches_are_checked_one_by_one() {
        let f = fixture(TxPoolConfig::default());
        let a = AccountKey::generate();
        let good = tx(&a, 0, 0);
        let results = f.pool.submit_many(&[&good, &[0xde, 0xad], &good]);
        assert!(results[0].is_ok());
        assert!(matches!(results[1].as_ref().map_err(|e| &e.kind), Err(PoolErrorKind::Invalid(_))));
        assert_eq!(results[2].as_ref().map_err(|e| e.kind.clone()), Err(PoolErrorKind::AlreadyKnown));
    }

    #[test]
    fn waiting_ready_transactions_are_offered_again_once_per_interval() {
        let f = fixture(TxPoolConfig::default());
        let a = AccountKey::generate();
        let ready = f.pool.submit(&tx(&a, 0, 0)).expect("admitted");
        f.pool.submit(&tx(&a, 2, 0)).expect("admitted, waits for nonce 1");
        let hour = Duration::from_secs(3600);
        assert!(f.pool.take_unconfirmed(hour, 10).is_empty(), "just offered on admission");
        let hashes = |txs: Vec<Arc<RecoveredTx>>| txs.iter().map(|tx| tx.hash()).collect::<Vec<_>>();
        assert_eq!(hashes(f.pool.take_unconfirmed(Duration::ZERO, 10)), vec![ready], "only ready ones");
        assert!(f.pool.take_unconfirmed(hour, 10).is_empty(), "offered again just now");
    }

    #[test]
    fn gossip_of_pooled_or_committed_transactions_is_known_without_recovery() {
        let f = fixture(TxPoolConfig::default());
        let a = AccountKey::generate();
        let first = tx(&a, 0, 0);
        let hash = f.pool.submit(&first).expect("admitted");
        let kind = |results: Vec<Result<B256, PoolError>>| results[0].as_ref().map_err(|e| e.kind.clone()).err();
        assert_eq!(kind(f.pool.submit_many(&[&first])), Some(PoolErrorKind::AlreadyKnown));

        f.pool.on_block_committed(&[(a.address(), 0, hash)], 30_000_000);
        assert_eq!(f.pool.len(), 0);
        assert_eq!(kind(f.pool.submit_many(&[&first])), Some(PoolErrorKind::AlreadyKnown), "committed lately");
    }
}
