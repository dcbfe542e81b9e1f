//! The chain: genesis, committing blocks, and telling everyone about them.
//!
//! [`Chain::commit`] is the single place a block becomes part of the chain: it writes the block in
//! one batch, updates the pool, refreshes the system config in force for the next block, and
//! publishes a [`CommittedBlock`] to subscribers (RPC subscriptions, gRPC streams).

use std::sync::Arc;

use alloy_consensus::{
    EMPTY_ROOT_HASH,
    proofs::{calculate_receipt_root, calculate_transaction_root},
};
use alloy_primitives::{Address, B256, Bloom, Bytes, U256, keccak256};
use bcos_sdk::{
    config::{Genesis, SystemConfig},
    crypto::NodeKey,
    pki::Serial,
    types::{
        BlockHeader, QuorumCertificate, StateWrite, StoredReceipt, Vote, state_commitment,
        system::{GOVERNANCE_ADDRESS, NODE_REGISTRY_ADDRESS, PERMISSIONS_ADDRESS, SYSTEM_CONFIG_ADDRESS},
    },
};
use parking_lot::RwLock;
use tokio::sync::broadcast;

use crate::{
    executor::{
        BlockInput, ExecutedBlock, ExecutionError, Executor, governance, permissions,
        registry::{self, NodeRole},
        system::{SYSTEM_CONTRACT_ADDRESSES, SYSTEM_CONTRACT_MARKER_CODE, genesis_storage, read_system_config},
    },
    metrics::ChainMetrics,
    storage::{AccountState, BlockReader, BlockWrite, ChainWriter, RocksStore, StorageError, StoredTx, state_key},
    txpool::TxPool,
};

/// Capacity of the committed-block channel; slower subscribers skip ahead.
const EVENT_CAPACITY: usize = 256;

/// A block as committed, shared with subscribers.
#[derive(Debug)]
pub struct CommittedBlock {
    /// The header.
    pub header: BlockHeader,
    /// Its hash.
    pub hash: B256,
    /// Transactions with senders.
    pub transactions: Vec<StoredTx>,
    /// Receipts.
    pub receipts: Vec<StoredReceipt>,
}

/// The chain runs under a compatibility version above the highest this build executes: its
/// blocks follow rules this build does not know, so the node applies none of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "from block {height} the chain runs under compatibility version {required}, but this build executes at most version {supported}: upgrade the node to a release that supports version {required}"
)]
pub struct Incompatible {
    /// The first block this node cannot apply.
    pub height: u64,
    /// The compatibility version in force there.
    pub required: u32,
    /// The highest version this build executes.
    pub supported: u32,
}

/// A failure to build or commit a block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Execution failed.
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    /// The chain needs a newer build.
    #[error(transparent)]
    Incompatible(#[from] Incompatible),
    /// The head header is missing: the database is damaged.
    #[error("head block {0} is missing from storage")]
    MissingHead(u64),
    /// Another block was committed since the block being executed was started: the result
    /// would not follow the head, so it was not produced. Not a failure of the node.
    #[error("block {number} was to follow head {parent}, but the head is now {head}")]
    HeadMoved {
        /// Number of the block being executed.
        number: u64,
        /// The head it was to follow.
        parent: u64,
        /// The head now.
        head: u64,
    },
}

/// The committed chain and the state of the node around it.
pub struct Chain {
    store: Arc<RocksStore>,
    executor: Executor,
    chain_id: u64,
    genesis_hash: B256,
    config: RwLock<SystemConfig>,
    /// The highest compatibility version this node executes.
    max_compatibility_version: u32,
    events: broadcast::Sender<Arc<CommittedBlock>>,
    metrics: ChainMetrics,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("chain_id", &self.chain_id).field("head", &self.store.head_number()).finish()
    }
}

/// The writes and header of block 0.
fn genesis_block(genesis: &Genesis) -> BlockWrite {
    let mut writes: Vec<StateWrite> = Vec::new();
    let mut put = |key: &[u8], value: Bytes| writes.push(StateWrite { key: Bytes::copy_from_slice(key), value });
    let marker_hash = keccak256(SYSTEM_CONTRACT_MARKER_CODE);
    let system_account = AccountState { nonce: 1, balance: U256::ZERO, code_hash: marker_hash };
    for address in SYSTEM_CONTRACT_ADDRESSES {
        put(&state_key::account(&address), Bytes::from(alloy_rlp::encode(system_account)));
    }
    put(&state_key::code(&marker_hash), Bytes::from_static(SYSTEM_CONTRACT_MARKER_CODE));
    let mut system_slots = genesis_storage(&genesis.system_config);
    system_slots.push((chain_slot("chain_id"), U256::from(genesis.chain_id)));
    let contracts = [
        (SYSTEM_CONFIG_ADDRESS, system_slots),
        (
            NODE_REGISTRY_ADDRESS,
            registry::genesis_storage(&genesis.consensus_nodes, &genesis.observer_nodes, &genesis.node_addresses),
        ),
        (PERMISSIONS_ADDRESS, permissions::genesis_storage(&genesis.permissions)),
        (GOVERNANCE_ADDRESS, governance::genesis_storage(&genesis.committee)),
    ];
    for (address, slots) in contracts {
        for (slot, value) in slots {
            if !value.is_zero() {
                put(&state_key::storage(&address, &slot), Bytes::from(value.to_be_bytes::<32>().to_vec()));
            }
        }
    }
    for (address, account) in &genesis.alloc {
        let code_hash =
            if account.code.is_empty() { alloy_primitives::KECCAK256_EMPTY } else { keccak256(&account.code) };
        let state = AccountState { nonce: account.nonce, balance: account.balance, code_hash };
        put(&state_key::account(address), Bytes::from(alloy_rlp::encode(state)));
        if !account.code.is_empty() {
            put(&state_key::code(&code_hash), account.code.clone());
        }
        for (slot, value) in &account.storage {
            if !value.is_zero() {
                put(
                    &state_key::storage(address, &U256::from_be_bytes(slot.0)),
                    Bytes::copy_from_slice(value.as_slice()),
                );
            }
        }
    }
    writes.sort();
    writes.dedup_by(|a, b| a.key == b.key);
    let header = BlockHeader {
        parent_hash: B256::ZERO,
        number: 0,
        timestamp_ms: genesis.timestamp_ms,
        proposer: B256::ZERO,
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        state_root: state_commitment(B256::ZERO, &writes),
        logs_bloom: Bloom::ZERO,
        gas_used: 0,
        gas_limit: genesis.system_config.block_gas_limit,
    };
    BlockWrite { hash: header.hash(), header, transactions: vec![], receipts: vec![], qc: None, state_writes: writes }
}

fn chain_slot(name: &str) -> U256 {
    U256::from_be_bytes(keccak256(format!("bcos.chain.{name}")).0)
}

impl Chain {
    /// Opens the chain in `store`, writing genesis if the store is new. Refuses a store that
    /// belongs to another chain, and a chain whose next block runs under a compatibility version
    /// above `max_compatibility_version` (the node would have to apply rules it does not know).
    pub fn open(
        store: Arc<RocksStore>,
        genesis: &Genesis,
        max_compatibility_version: u32,
        metrics: ChainMetrics,
    ) -> Result<Self, ChainError> {
        let block0 = genesis_block(genesis);
        if store.is_initialised() {
            let stored = store.header(0)?.ok_or(ChainError::MissingHead(0))?.hash();
            if stored != block0.hash {
                return Err(StorageError::GenesisMismatch { stored, expected: block0.hash }.into());
            }
        } else {
            store.commit_block(&block0)?;
        }
        let head = store.head_number();
        let config = read_system_config(store.as_ref(), head + 1)?;
        check_compatibility(head + 1, config.compatibility_version, max_compatibility_version)?;
        metrics.height.set(head as i64);
        metrics.compatibility_version.set(i64::from(config.compatibility_version));
        metrics.max_compatibility_version.set(i64::from(max_compatibility_version));
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Self {
            store,
            executor: Executor::new(genesis.chain_id),
            chain_id: genesis.chain_id,
            genesis_hash: block0.hash,
            config: RwLock::new(config),
            max_compatibility_version,
            events,
            metrics,
        })
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Hash of block 0, which identifies the chain.
    pub fn genesis_hash(&self) -> B256 {
        self.genesis_hash
    }

    /// The store.
    pub fn store(&self) -> &Arc<RocksStore> {
        &self.store
    }

    /// The executor.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The system config in force for the next block.
    pub fn system_config(&self) -> SystemConfig {
        self.config.read().clone()
    }

    /// Why this node applies no more blocks: the compatibility version in force for the next
    /// block is above the highest it executes. `None` while it applies them.
    pub fn incompatibility(&self) -> Option<Incompatible> {
        let required = self.config.read().compatibility_version;
        check_compatibility(self.store.head_number() + 1, required, self.max_compatibility_version).err()
    }

    /// The consensus node set in force for the next block.
    pub fn consensus_nodes(&self) -> Result<Vec<B256>, ChainError> {
        Ok(registry::read_nodes(self.store.as_ref(), NodeRole::Consensus)?)
    }

    /// The certificate serials revoked on chain, in the order revoked.
    pub fn revoked_serials(&self) -> Result<Vec<Serial>, ChainError> {
        Ok(crate::executor::read_revoked(self.store.as_ref())?)
    }

    /// How many certificate serials are revoked on chain; the list only grows.
    pub fn revoked_count(&self) -> Result<u64, ChainError> {
        Ok(crate::executor::revoked_count(self.store.as_ref())?)
    }

    /// The observer nodes in force for the next block.
    pub fn observer_nodes(&self) -> Result<Vec<B256>, ChainError> {
        Ok(registry::read_nodes(self.store.as_ref(), NodeRole::Observer)?)
    }

    /// The peer-to-peer address the registry keeps for each of `nodes` (`None`: none).
    pub fn node_addresses(&self, nodes: &[B256]) -> Result<Vec<Option<String>>, ChainError> {
        Ok(registry::read_addresses(self.store.as_ref(), nodes)?)
    }

    /// The latest committed header.
    pub fn head(&self) -> Result<BlockHeader, ChainError> {
        let number = self.store.head_number();
        self.store.header(number)?.ok_or(ChainError::MissingHead(number))
    }

    /// Subscribes to committed blocks.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommittedBlock>> {
        self.events.subscribe()
    }

    /// Execution context of the block after the head (for building it).
    pub fn next_block_input(&self, timestamp_ms: u64) -> Result<BlockInput, ChainError> {
        let head = self.head()?;
        Ok(BlockInput {
            number: head.number + 1,
            timestamp_ms: timestamp_ms.max(head.timestamp_ms),
            gas_limit: self.config.read().block_gas_limit,
            parent_hash: head.hash(),
            parent_state_root: head.state_root,
        })
    }

    /// Execution context for read-only calls: the block that would follow the head, so calls see
    /// the latest state under the rules (and system config) the next block will run with.
    /// A node that no longer knows those rules answers no calls.
    pub fn call_input(&self) -> Result<BlockInput, ChainError> {
        if let Some(incompatible) = self.incompatibility() {
            return Err(incompatible.into());
        }
        self.next_block_input(now_ms())
    }

    /// Builds the header for an executed block.
    pub fn seal_header(&self, input: &BlockInput, executed: &ExecutedBlock, proposer: B256) -> BlockHeader {
        let envelopes: Vec<_> = executed.included.iter().map(|tx| tx.envelope().clone()).collect();
        let receipts: Vec<_> = executed.receipts.iter().map(StoredReceipt::to_envelope).collect();
        BlockHeader {
            parent_hash: input.parent_hash,
            number: input.number,
            timestamp_ms: input.timestamp_ms,
            proposer,
            transactions_root: calculate_transaction_root(&envelopes),
            receipts_root: calculate_receipt_root(&receipts),
            state_root: executed.state_root,
            logs_bloom: executed.logs_bloom,
            gas_used: executed.gas_used,
            gas_limit: input.gas_limit,
        }
    }

    /// Commits an executed block with its certificate, then updates the pool and subscribers.
    pub fn commit(
        &self,
        header: BlockHeader,
        executed: ExecutedBlock,
        qc: QuorumCertificate,
        pool: &TxPool,
    ) -> Result<Arc<CommittedBlock>, ChainError> {
        let timer = self.metrics.commit_seconds.start_timer();
        let hash = header.hash();
        let transactions: Vec<StoredTx> = executed.included.iter().map(StoredTx::from_recovered).collect();
        let write = BlockWrite {
            header,
            hash,
            transactions,
            receipts: executed.receipts,
            qc: Some(qc),
            state_writes: executed.state_writes,
        };
        self.store.commit_block(&write).map_err(|e| match e {
            // Another task committed this height first.
            StorageError::NotNext { number, head } => {
                ChainError::HeadMoved { number, parent: number.saturating_sub(1), head }
            }
            e => ChainError::Storage(e),
        })?;
        let config = read_system_config(self.store.as_ref(), write.header.number + 1)?;
        let included: Vec<(Address, u64, B256)> =
            executed.included.iter().map(|tx| (tx.sender(), tx.nonce(), tx.hash())).collect();
        pool.on_block_committed(&included, config.block_gas_limit);
        let next = write.header.number + 1;
        self.metrics.compatibility_version.set(i64::from(config.compatibility_version));
        if let Err(incompatible) =
            check_compatibility(next, config.compatibility_version, self.max_compatibility_version)
        {
            self.metrics.incompatible.set(1);
            tracing::error!(
                target: "chain",
                height = next,
                required = incompatible.required,
                supported = incompatible.supported,
                "{incompatible}; this node applies no more blocks and takes no part in consensus"
            );
        }
        if !executed.rejected.is_empty() {
            for (hash, reason) in &executed.rejected {
                tracing::info!(target: "chain", %hash, %reason, "dropping unexecutable transaction");
            }
            let hashes: Vec<B256> = executed.rejected.iter().map(|(h, _)| *h).collect();
            pool.remove_invalid(&hashes);
        }
        *self.config.write() = config;
        timer.observe_duration();
        self.metrics.height.set(write.header.number as i64);
        self.metrics.committed_blocks.inc();
        self.metrics.committed_txs.inc_by(write.transactions.len() as u64);
        self.metrics.block_txs.observe(write.transactions.len() as f64);
        let committed = Arc::new(CommittedBlock {
            header: write.header,
            hash,
            transactions: write.transactions,
            receipts: write.receipts,
        });
        // No subscriber is fine: the send only fails when nobody listens.
        let _ = self.events.send(committed.clone());
        Ok(committed)
    }

    /// Executes transactions as the next block; refuses to when the block runs under a
    /// compatibility version above the highest this node executes. Every block a node builds,
    /// checks for consensus or applies by sync is executed here.
    pub fn execute_next(
        &self,
        input: &BlockInput,
        txs: impl IntoIterator<Item = bcos_sdk::types::RecoveredTx>,
    ) -> Result<ExecutedBlock, ChainError> {
        let timer = self.metrics.execution_seconds.start_timer();
        // Execute against one consistent state: a block committed meanwhile (by consensus or
        // sync on another task) must not show through half-way.
        let state = self.store.state_snapshot();
        let parent = input.number.saturating_sub(1);
        let head = state.head_number()?.unwrap_or_default();
        if head != parent {
            return Err(ChainError::HeadMoved { number: input.number, parent, head });
        }
        // From the snapshot rather than the config kept for the head: this is exactly the state
        // the block executes on, even while another task commits.
        let required = read_system_config(&state, input.number)?.compatibility_version;
        check_compatibility(input.number, required, self.max_compatibility_version)?;
        let executed = self.executor.execute_block(&state, self.store.as_ref(), input, txs)?;
        timer.observe_duration();
        Ok(executed)
    }
}

/// `Err` when block `height`, under compatibility version `required`, needs rules above
/// `supported`.
fn check_compatibility(height: u64, required: u32, supported: u32) -> Result<(), Incompatible> {
    if required > supported { Err(Incompatible { height, required, supported }) } else { Ok(()) }
}

/// Milliseconds since the Unix epoch by the local clock (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// Signs a single-voter quorum certificate: the commit vote of `key` on `header`.
pub fn sign_commit(key: &NodeKey, hash: B256, number: u64, round: u64) -> QuorumCertificate {
    let message = QuorumCertificate::signing_message(hash, number, round);
    QuorumCertificate {
        block_hash: hash,
        number,
        round,
        votes: vec![Vote { node_id: key.node_id(), signature: key.sign(&message) }],
    }
}

#[cfg(test)]
mod tests;
