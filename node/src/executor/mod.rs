//! Transaction execution with revm over the state store.
//!
//! [`Executor::execute_block`] runs ordered, already recovered transactions on top of the latest
//! committed state and returns everything the block commits to: receipts, gas, the logs bloom and
//! the sorted state write-set with its commitment. Nothing is written here; the caller persists
//! the result in one batch. [`Executor::call`] runs a read-only call for `eth_call` and
//! `eth_estimateGas`.
//!
//! The chain charges no fees (`disable_fee_charge`): a zero gas price is fine and an account
//! needs no balance to transact, while value transfers still need a balance.
//!
//! Before each transaction of a block, its sender's permission is checked against the state the
//! block has reached ([`permissions::check_transaction`]); a refused transaction goes to
//! [`ExecutedBlock::rejected`] like one with a wrong nonce, so every node decides alike.
//!
//! From the compatibility version that enables [`Feature::ContractRouting`], a transaction or
//! read-only call whose target is the alias of a contract in the versions registry runs against
//! the implementation its sender is routed to ([`versions`]): the EVM sees the implementation as
//! the target, while the transaction keeps the alias as its `to`.

mod audit;
mod db;
pub mod features;
pub mod governance;
#[cfg(test)]
mod governance_tests;
pub mod permissions;
pub mod registry;
pub mod revocation;
mod slots;
pub mod system;
#[cfg(test)]
mod tests;
pub mod versions;
#[cfg(test)]
mod versions_tests;

use std::collections::{BTreeMap, HashMap};

use alloy_consensus::{Transaction, TxReceipt};
use alloy_primitives::{Address, B256, Bloom, Bytes, TxKind, U256};
use bcos_sdk::types::{
    RecoveredTx, StateWrite, StoredLog, StoredReceipt, state_commitment,
    system::{CONTRACT_VERSIONS_ADDRESS, PERMISSIONS_ADDRESS},
};
use revm::{
    Context, DatabaseRef, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext,
    context::{
        BlockEnv, ContextTr, TxEnv,
        result::{EVMError, ExecutionResult, Output},
    },
    database::CacheDB,
    primitives::{KECCAK_EMPTY, hardfork::SpecId},
    state::EvmState,
};

pub use features::Feature;
pub use permissions::PermissionDenied;
pub use revocation::{read_revoked, revoked_count};
pub use system::{SystemContracts, read_compatibility_version, read_system_config};

use crate::storage::{AccountState, BlockReader, StateReader, StorageError, state_key};
use db::StoreDb;
use versions::Router;

/// The EVM rules this chain runs.
pub const SPEC: SpecId = SpecId::PRAGUE;

type NodeContext<'a> = revm::handler::MainnetContext<CacheDB<StoreDb<'a>>>;
type NodeEvm<'a> = revm::context::Evm<
    NodeContext<'a>,
    (),
    revm::handler::instructions::EthInstructions<revm::interpreter::interpreter::EthInterpreter, NodeContext<'a>>,
    SystemContracts,
    revm::handler::EthFrame,
>;

/// Whether the EVM checks transaction nonces: blocks do, read-only calls do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceCheck {
    Enforce,
    Skip,
}

/// A failure that stops a whole block (as opposed to one invalid transaction).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutionError {
    /// The state could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// revm reported an internal failure.
    #[error("evm: {0}")]
    Evm(String),
}

/// The block being built or re-executed.
#[derive(Debug, Clone, Copy)]
pub struct BlockInput {
    /// Height.
    pub number: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Gas limit in force.
    pub gas_limit: u64,
    /// Hash of the parent header (also the EVM's `prevrandao`).
    pub parent_hash: B256,
    /// State commitment of the parent.
    pub parent_state_root: B256,
}

/// What executing a block produced.
#[derive(Debug, Clone, Default)]
pub struct ExecutedBlock {
    /// Transactions included, in order.
    pub included: Vec<RecoveredTx>,
    /// One receipt per included transaction.
    pub receipts: Vec<StoredReceipt>,
    /// Sorted state write-set.
    pub state_writes: Vec<StateWrite>,
    /// The resulting state commitment.
    pub state_root: B256,
    /// Gas used by the block.
    pub gas_used: u64,
    /// Bloom over all logs.
    pub logs_bloom: Bloom,
    /// Transactions that cannot be executed (for example a value transfer without balance
    /// would still execute; a wrong nonce, or a sender without the permission, would not), with
    /// the reason. They take no part in the block and its commitments, and the pool drops them
    /// when the block commits.
    pub rejected: Vec<(B256, String)>,
}

/// The outcome of a read-only call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// Whether it succeeded.
    pub success: bool,
    /// Return data, or revert data.
    pub output: Bytes,
    /// Gas used.
    pub gas_used: u64,
    /// `true` when the call ran out of gas or hit another halt (no revert data).
    pub halted: bool,
}

/// A read-only call request.
#[derive(Debug, Clone, Default)]
pub struct CallRequest {
    /// Caller; the zero address when absent.
    pub from: Option<Address>,
    /// Target; `None` simulates a contract creation.
    pub to: Option<Address>,
    /// Call data.
    pub data: Bytes,
    /// Value.
    pub value: U256,
    /// Gas; the block gas limit when absent.
    pub gas: Option<u64>,
}

/// Executes transactions against the state.
#[derive(Debug, Clone)]
pub struct Executor {
    chain_id: u64,
}

/// State changes of a block, merged across its transactions.
#[derive(Default)]
struct BlockChanges {
    accounts: HashMap<Address, Option<AccountState>>,
    storage: HashMap<(Address, U256), U256>,
    code: HashMap<B256, Bytes>,
}

impl BlockChanges {
    fn absorb(&mut self, state: &EvmState) {
        for (address, account) in state.iter().filter(|(_, a)| a.is_touched()) {
            let info = &account.info;
            let empty = info.nonce == 0
                && info.balance.is_zero()
                && (info.code_hash == KECCAK_EMPTY || info.code_hash == B256::ZERO);
            if account.is_selfdestructed() || empty {
                self.accounts.insert(*address, None);
                self.storage.retain(|(a, _), _| a != address);
                continue;
            }
            self.accounts.insert(
                *address,
                Some(AccountState { nonce: info.nonce, balance: info.balance, code_hash: info.code_hash }),
            );
            if let Some(code) = &info.code
                && info.code_hash != KECCAK_EMPTY
                && !code.is_empty()
            {
                self.code.entry(info.code_hash).or_insert_with(|| code.original_bytes());
            }
            for (slot, value) in account.changed_storage_slots() {
                self.storage.insert((*address, *slot), value.present_value);
            }
        }
    }

    /// The write-set: only keys whose final value differs from committed state, sorted by key.
    fn into_writes(self, state: &dyn StateReader) -> Result<Vec<StateWrite>, StorageError> {
        let mut writes = BTreeMap::new();
        for (address, account) in self.accounts {
            if state.account(&address)? != account {
                let value = account.map(|a| Bytes::from(alloy_rlp::encode(a))).unwrap_or_default();
                writes.insert(Bytes::copy_from_slice(&state_key::account(&address)), value);
            }
        }
        for ((address, slot), value) in self.storage {
            if state.storage(&address, &slot)? != value {
                let encoded =
                    if value.is_zero() { Bytes::new() } else { Bytes::from(value.to_be_bytes::<32>().to_vec()) };
                writes.insert(Bytes::copy_from_slice(&state_key::storage(&address, &slot)), encoded);
            }
        }
        for (hash, code) in self.code {
            if state.code(&hash)?.is_none() {
                writes.insert(Bytes::copy_from_slice(&state_key::code(&hash)), code);
            }
        }
        Ok(writes.into_iter().map(|(key, value)| StateWrite { key, value }).collect())
    }
}

fn tx_env(tx: &RecoveredTx) -> Result<TxEnv, String> {
    let envelope = tx.envelope();
    let mut builder = TxEnv::builder()
        .tx_type(Some(envelope.tx_type() as u8))
        .caller(tx.sender())
        .kind(envelope.kind())
        .value(envelope.value())
        .data(envelope.input().clone())
        .gas_limit(envelope.gas_limit())
        .gas_price(envelope.max_fee_per_gas())
        .gas_priority_fee(envelope.max_priority_fee_per_gas())
        .nonce(envelope.nonce())
        .chain_id(envelope.chain_id());
    if let Some(list) = envelope.access_list() {
        builder = builder.access_list(list.clone());
    }
    builder.build().map_err(|e| format!("{e:?}"))
}

fn receipt_from(result: &ExecutionResult, tx_type: u8, cumulative_gas_used: u64) -> StoredReceipt {
    let (success, revert_output, contract_address) = match result {
        ExecutionResult::Success { output: Output::Create(_, address), .. } => {
            (true, Bytes::new(), address.unwrap_or_default())
        }
        ExecutionResult::Success { .. } => (true, Bytes::new(), Address::ZERO),
        ExecutionResult::Revert { output, .. } => (false, output.clone(), Address::ZERO),
        ExecutionResult::Halt { .. } => (false, Bytes::new(), Address::ZERO),
    };
    StoredReceipt {
        tx_type,
        success,
        gas_used: result.tx_gas_used(),
        cumulative_gas_used,
        contract_address,
        revert_output,
        logs: result
            .logs()
            .iter()
            .map(|log| StoredLog { address: log.address, topics: log.topics().to_vec(), data: log.data.data.clone() })
            .collect(),
    }
}

impl Executor {
    /// An executor for a chain.
    pub fn new(chain_id: u64) -> Self {
        Self { chain_id }
    }

    fn block_env(input: &BlockInput) -> BlockEnv {
        BlockEnv {
            number: U256::from(input.number),
            timestamp: U256::from(input.timestamp_ms / 1000),
            gas_limit: input.gas_limit,
            basefee: 0,
            prevrandao: Some(input.parent_hash),
            ..Default::default()
        }
    }

    /// An EVM over `db` with this chain's rules: Prague, no fees, the system contracts of
    /// `compatibility_version`.
    fn evm<'a>(
        &self,
        db: StoreDb<'a>,
        input: &BlockInput,
        nonce: NonceCheck,
        compatibility_version: u32,
    ) -> NodeEvm<'a> {
        let chain_id = self.chain_id;
        Context::mainnet()
            .modify_cfg_chained(|cfg| {
                cfg.set_spec_and_mainnet_gas_params(SPEC);
                cfg.chain_id = chain_id;
                cfg.disable_fee_charge = true;
                cfg.disable_nonce_check = nonce == NonceCheck::Skip;
            })
            .with_block(Self::block_env(input))
            .with_db(CacheDB::new(db))
            .build_mainnet()
            .with_precompiles(SystemContracts::new(SPEC, compatibility_version))
    }

    /// Executes `txs` in order as block `input.number`, stopping before the first transaction
    /// that would exceed the block gas limit.
    pub fn execute_block(
        &self,
        state: &dyn StateReader,
        blocks: &dyn BlockReader,
        input: &BlockInput,
        txs: impl IntoIterator<Item = RecoveredTx>,
    ) -> Result<ExecutedBlock, ExecutionError> {
        let version = read_compatibility_version(state, input.number)?;
        let mut evm = self.evm(StoreDb { state, blocks }, input, NonceCheck::Enforce, version);
        let mut router = Feature::ContractRouting.enabled(version).then(Router::default);
        let mut block = ExecutedBlock::default();
        let mut changes = BlockChanges::default();
        // Permission slots read so far in this block; forgotten whenever a transaction changes
        // the permissions contract, so most blocks read the switch once, not once per transaction.
        let mut permission_slots: HashMap<U256, U256> = HashMap::new();
        for tx in txs {
            if block.gas_used.saturating_add(tx.gas_limit()) > input.gas_limit {
                break;
            }
            // The sender's role may have been revoked since the pool admitted the transaction,
            // even earlier in this block.
            let db = evm.ctx.db_ref();
            let permitted = permissions::check_transaction(tx.sender(), tx.envelope().kind(), |slot| {
                if let Some(value) = permission_slots.get(&slot) {
                    return Ok(*value);
                }
                let value: U256 = db.storage_ref(PERMISSIONS_ADDRESS, slot)?;
                permission_slots.insert(slot, value);
                Ok::<_, StorageError>(value)
            })?;
            if let Err(denied) = permitted {
                block.rejected.push((tx.hash(), denied.to_string()));
                continue;
            }
            let mut env = match tx_env(&tx) {
                Ok(env) => env,
                Err(reason) => {
                    block.rejected.push((tx.hash(), reason));
                    continue;
                }
            };
            if let (Some(router), TxKind::Call(to)) = (&mut router, env.kind) {
                let db = evm.ctx.db_ref();
                let sload = |slot| db.storage_ref(CONTRACT_VERSIONS_ADDRESS, slot);
                if let Some(implementation) = router.target(to, tx.sender(), sload)? {
                    env.kind = TxKind::Call(implementation);
                }
            }
            let outcome = match evm.transact(env) {
                Ok(outcome) => outcome,
                Err(EVMError::Transaction(invalid)) => {
                    block.rejected.push((tx.hash(), invalid.to_string()));
                    continue;
                }
                Err(EVMError::Database(e)) => return Err(e.into()),
                Err(other) => return Err(ExecutionError::Evm(other.to_string())),
            };
            block.gas_used += outcome.result.tx_gas_used();
            let receipt = receipt_from(&outcome.result, tx.envelope().tx_type() as u8, block.gas_used);
            block.logs_bloom.accrue_bloom(&receipt.to_envelope().bloom());
            changes.absorb(&outcome.state);
            let touched = |address| outcome.state.get(&address).is_some_and(|account| account.is_touched());
            if touched(PERMISSIONS_ADDRESS) {
                permission_slots.clear();
            }
            if let Some(router) = &mut router
                && touched(CONTRACT_VERSIONS_ADDRESS)
            {
                router.forget();
            }
            evm.commit(outcome.state);
            block.receipts.push(receipt);
            block.included.push(tx);
        }
        block.state_writes = changes.into_writes(state)?;
        block.state_root = state_commitment(input.parent_state_root, &block.state_writes);
        Ok(block)
    }

    /// Runs a call on top of `state` without committing anything.
    pub fn call(
        &self,
        state: &dyn StateReader,
        blocks: &dyn BlockReader,
        input: &BlockInput,
        request: &CallRequest,
    ) -> Result<CallOutcome, CallError> {
        let chain_id = self.chain_id;
        let version = read_compatibility_version(state, input.number).map_err(ExecutionError::from)?;
        let mut evm = self.evm(StoreDb { state, blocks }, input, NonceCheck::Skip, version);
        let caller = request.from.unwrap_or_default();
        let mut to = request.to;
        if let Some(target) = to
            && Feature::ContractRouting.enabled(version)
        {
            let db = evm.ctx.db_ref();
            let sload = |slot| db.storage_ref(CONTRACT_VERSIONS_ADDRESS, slot);
            let routed = Router::default().target(target, caller, sload).map_err(ExecutionError::from)?;
            to = Some(routed.unwrap_or(target));
        }
        let env = TxEnv::builder()
            .caller(caller)
            .kind(to.map_or(TxKind::Create, TxKind::Call))
            .value(request.value)
            .data(request.data.clone())
            .gas_limit(request.gas.unwrap_or(input.gas_limit).min(input.gas_limit))
            .gas_price(0)
            .chain_id(Some(chain_id))
            .build()
            .map_err(|e| CallError::Invalid(format!("{e:?}")))?;
        match evm.transact(env) {
            Ok(outcome) => {
                let gas_used = outcome.result.tx_gas_used();
                Ok(match outcome.result {
                    ExecutionResult::Success { output, .. } => {
                        CallOutcome { success: true, output: output.into_data(), gas_used, halted: false }
                    }
                    ExecutionResult::Revert { output, .. } => {
                        CallOutcome { success: false, output, gas_used, halted: false }
                    }
                    ExecutionResult::Halt { .. } => {
                        CallOutcome { success: false, output: Bytes::new(), gas_used, halted: true }
                    }
                })
            }
            Err(EVMError::Transaction(invalid)) => Err(CallError::Invalid(invalid.to_string())),
            Err(EVMError::Database(e)) => Err(CallError::Execution(e.into())),
            Err(other) => Err(CallError::Execution(ExecutionError::Evm(other.to_string()))),
        }
    }
}

pub use bcos_sdk::governance::decode_revert;

/// Why a call could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The request itself is invalid (for example gas below the intrinsic cost).
    #[error("invalid call: {0}")]
    Invalid(String),
    /// The node failed.
    #[error(transparent)]
    Execution(#[from] ExecutionError),
}
