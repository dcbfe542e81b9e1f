//! The system config contract, run natively at [`SYSTEM_CONFIG_ADDRESS`].
//!
//! Storage layout (all in the contract's own EVM storage, so the state commitment covers it and
//! `eth_getStorageAt` shows it): for every key three slots, `current`, `next` and `enable` (the
//! height from which `next` is in force); and one slot per administrator. A change made while
//! executing block N sets `next` with `enable = N + 1` (`setValueByKey`) or a later height the
//! caller chose (`setValueByKeyAt`), so every node applies it from the same block.

use alloy_primitives::{Address, Bytes, U256, keccak256};
use alloy_sol_types::{SolCall, SolError, SolEvent, SolInterface, SolValue};
use bcos_sdk::{
    config::{ConsensusMode, SystemConfig},
    types::system::{ISystemConfig, NODE_REGISTRY_ADDRESS, SYSTEM_CONFIG_ADDRESS},
};
use revm::{
    context::{Cfg, ContextTr, JournalTr},
    context_interface::Block,
    handler::{EthPrecompiles, PrecompileProvider},
    interpreter::{CallInputs, Gas, InstructionResult, InterpreterResult},
    primitives::{AddressSet, Log, hardfork::SpecId},
};

use super::registry::node_registry_call;
use crate::storage::{StateReader, StorageError};

/// The configuration keys, as named in `setValueByKey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKey {
    /// `block_interval_ms`
    BlockIntervalMs,
    /// `max_txs_per_block`
    MaxTxsPerBlock,
    /// `block_gas_limit`
    BlockGasLimit,
    /// `consensus_mode`
    ConsensusMode,
    /// `compatibility_version`
    CompatibilityVersion,
    /// `consensus_timeout_ms`
    ConsensusTimeoutMs,
}

impl ConfigKey {
    const ALL: [Self; 6] = [
        Self::BlockIntervalMs,
        Self::MaxTxsPerBlock,
        Self::BlockGasLimit,
        Self::ConsensusMode,
        Self::CompatibilityVersion,
        Self::ConsensusTimeoutMs,
    ];

    /// The key's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::BlockIntervalMs => "block_interval_ms",
            Self::MaxTxsPerBlock => "max_txs_per_block",
            Self::BlockGasLimit => "block_gas_limit",
            Self::ConsensusMode => "consensus_mode",
            Self::CompatibilityVersion => "compatibility_version",
            Self::ConsensusTimeoutMs => "consensus_timeout_ms",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn slot(self, part: &str) -> U256 {
        U256::from_be_bytes(keccak256(format!("bcos.config.{}.{part}", self.name())).0)
    }

    /// Parses and range-checks a value given as text.
    fn parse(self, text: &str) -> Result<U256, String> {
        let number = |range: std::ops::RangeInclusive<u64>| -> Result<U256, String> {
            let value: u64 = text.parse().map_err(|_| format!("{}: {text:?} is not a whole number", self.name()))?;
            if range.contains(&value) {
                Ok(U256::from(value))
            } else {
                Err(format!("{}: must be between {} and {}", self.name(), range.start(), range.end()))
            }
        };
        match self {
            Self::BlockIntervalMs => number(SystemConfig::BLOCK_INTERVAL_MS),
            Self::MaxTxsPerBlock => number(SystemConfig::MAX_TXS_PER_BLOCK),
            Self::BlockGasLimit => number(SystemConfig::BLOCK_GAS_LIMIT),
            Self::CompatibilityVersion => number(1..=u64::from(u32::MAX)),
            Self::ConsensusTimeoutMs => number(SystemConfig::CONSENSUS_TIMEOUT_MS),
            Self::ConsensusMode => text
                .parse::<ConsensusMode>()
                .map(|mode| U256::from(mode.code()))
                .map_err(|e| format!("{}: {e}", self.name())),
        }
    }

    fn format(self, value: U256) -> String {
        match self {
            Self::ConsensusMode => {
                ConsensusMode::from_code(value.saturating_to()).map_or_else(|| value.to_string(), |m| m.to_string())
            }
            _ => value.to_string(),
        }
    }

    fn genesis_value(self, config: &SystemConfig) -> U256 {
        match self {
            Self::BlockIntervalMs => U256::from(config.block_interval_ms),
            Self::MaxTxsPerBlock => U256::from(config.max_txs_per_block),
            Self::BlockGasLimit => U256::from(config.block_gas_limit),
            Self::ConsensusMode => U256::from(config.consensus_mode.code()),
            Self::CompatibilityVersion => U256::from(config.compatibility_version),
            Self::ConsensusTimeoutMs => U256::from(config.consensus_timeout_ms),
        }
    }
}

fn admin_slot(address: &Address) -> U256 {
    let mut preimage = b"bcos.admin.".to_vec();
    preimage.extend_from_slice(address.as_slice());
    U256::from_be_bytes(keccak256(preimage).0)
}

/// The value of a key in force at `height`, given a slot reader.
fn effective<E>(height: u64, key: ConfigKey, mut sload: impl FnMut(U256) -> Result<U256, E>) -> Result<(U256, u64), E> {
    let enable: u64 = sload(key.slot("enable"))?.saturating_to();
    if enable != 0 && height >= enable {
        Ok((sload(key.slot("next"))?, enable))
    } else {
        Ok((sload(key.slot("current"))?, 0))
    }
}

/// The most recently set value of a key and the height it is in force from (0: since genesis).
fn latest<E>(key: ConfigKey, mut sload: impl FnMut(U256) -> Result<U256, E>) -> Result<(U256, u64), E> {
    let enable: u64 = sload(key.slot("enable"))?.saturating_to();
    if enable == 0 { Ok((sload(key.slot("current"))?, 0)) } else { Ok((sload(key.slot("next"))?, enable)) }
}

/// The system config in force for the block at `height`, read from committed state.
pub fn read_system_config(state: &dyn StateReader, height: u64) -> Result<SystemConfig, StorageError> {
    let value = |key| effective(height, key, |slot| state.storage(&SYSTEM_CONFIG_ADDRESS, &slot)).map(|(v, _)| v);
    let consensus_code: u64 = value(ConfigKey::ConsensusMode)?.saturating_to();
    Ok(SystemConfig {
        block_interval_ms: value(ConfigKey::BlockIntervalMs)?.saturating_to(),
        max_txs_per_block: value(ConfigKey::MaxTxsPerBlock)?.saturating_to(),
        block_gas_limit: value(ConfigKey::BlockGasLimit)?.saturating_to(),
        consensus_mode: ConsensusMode::from_code(consensus_code).ok_or_else(|| StorageError::Corrupt {
            table: "state",
            detail: format!("consensus mode code {consensus_code}"),
        })?,
        compatibility_version: value(ConfigKey::CompatibilityVersion)?.saturating_to(),
        consensus_timeout_ms: value(ConfigKey::ConsensusTimeoutMs)?.saturating_to(),
    })
}

/// Storage of the system config contract at genesis.
pub fn genesis_storage(config: &SystemConfig, admins: &[Address]) -> Vec<(U256, U256)> {
    let mut slots: Vec<(U256, U256)> =
        ConfigKey::ALL.iter().map(|key| (key.slot("current"), key.genesis_value(config))).collect();
    slots.extend(admins.iter().map(|admin| (admin_slot(admin), U256::from(1))));
    slots
}

/// Addresses of the system contracts.
pub const SYSTEM_CONTRACT_ADDRESSES: [Address; 2] = [SYSTEM_CONFIG_ADDRESS, NODE_REGISTRY_ADDRESS];

/// Runtime code placed at system contract addresses: never executed (the precompile answers
/// first), but it makes the accounts non-empty and lets Solidity's `extcodesize` checks pass.
pub const SYSTEM_CONTRACT_MARKER_CODE: &[u8] = &[0xfe];

/// Ethereum's precompiles plus this chain's system contracts.
#[derive(Debug)]
pub struct SystemContracts {
    eth: EthPrecompiles,
    warm: AddressSet,
    initialised: bool,
}

impl SystemContracts {
    /// The precompile set for a hard fork.
    pub fn new(spec: SpecId) -> Self {
        let eth = EthPrecompiles::new(spec);
        let warm = Self::warm_set(&eth);
        Self { eth, warm, initialised: false }
    }

    fn warm_set(eth: &EthPrecompiles) -> AddressSet {
        let mut warm = <EthPrecompiles as PrecompileProvider<revm::handler::MainnetContext<revm::database::EmptyDB>>>::warm_addresses(eth).clone();
        warm.extend(SYSTEM_CONTRACT_ADDRESSES);
        warm
    }
}

impl<CTX: ContextTr<Cfg: Cfg<Spec = SpecId>>> PrecompileProvider<CTX> for SystemContracts {
    type Output = InterpreterResult;

    fn set_spec(&mut self, spec: SpecId) -> bool {
        let changed = <EthPrecompiles as PrecompileProvider<CTX>>::set_spec(&mut self.eth, spec);
        // revm warms the precompile addresses only when this returns true: do so the first time.
        if changed || !self.initialised {
            self.warm = Self::warm_set(&self.eth);
            self.initialised = true;
            return true;
        }
        false
    }

    fn run(&mut self, context: &mut CTX, inputs: &CallInputs) -> Result<Option<InterpreterResult>, String> {
        let call = match inputs.bytecode_address {
            SYSTEM_CONFIG_ADDRESS => system_config_call,
            NODE_REGISTRY_ADDRESS => node_registry_call,
            _ => return <EthPrecompiles as PrecompileProvider<CTX>>::run(&mut self.eth, context, inputs),
        };
        let input = inputs.input.bytes(context);
        call(context, inputs, &input).map(Some)
    }

    fn warm_addresses(&self) -> &AddressSet {
        &self.warm
    }

    fn contains(&self, address: &Address) -> bool {
        self.warm.contains(address)
    }
}

/// Gas of a call that only reads, and extra gas of one that writes.
pub(super) const READ_GAS: u64 = 5_000;
pub(super) const WRITE_GAS: u64 = 60_000;

/// A system contract call that ran out of gas.
pub(super) fn out_of_gas(mut gas: Gas) -> InterpreterResult {
    gas.spend_all();
    InterpreterResult::new(InstructionResult::PrecompileOOG, Bytes::new(), gas)
}

/// A system contract call refused with a Solidity `Error(string)` reason.
pub(super) fn revert(gas: Gas, reason: String) -> InterpreterResult {
    InterpreterResult::new(InstructionResult::Revert, alloy_sol_types::Revert::from(reason).abi_encode().into(), gas)
}

/// A successful system contract call.
pub(super) fn ok(gas: Gas, output: Vec<u8>) -> InterpreterResult {
    InterpreterResult::new(InstructionResult::Return, output.into(), gas)
}

/// What every system contract call starts with: the read charge, and refusals of a delegatecall,
/// of value, and of an unknown function (`name` prefixes the reasons).
pub(super) fn decode_call<C: SolInterface>(
    inputs: &CallInputs,
    input: &[u8],
    address: Address,
    name: &str,
    gas: &mut Gas,
) -> Result<C, InterpreterResult> {
    if !gas.record_regular_cost(READ_GAS) {
        return Err(out_of_gas(*gas));
    }
    if inputs.target_address != address {
        return Err(revert(*gas, format!("{name}: delegatecall is not allowed")));
    }
    if inputs.transfers_value() {
        return Err(revert(*gas, format!("{name}: not payable")));
    }
    C::abi_decode(input).map_err(|_| revert(*gas, format!("{name}: unknown function or malformed arguments")))
}

/// Whether `account` is one of the chain's administrators.
pub(super) fn is_admin<CTX: ContextTr>(context: &mut CTX, account: &Address) -> Result<bool, String> {
    let journal = context.journal_mut();
    // The journal reads storage only of accounts it loaded: the callee of another system
    // contract's call is not this one.
    journal.load_account(SYSTEM_CONFIG_ADDRESS).map_err(|e| e.to_string())?;
    let load = journal.sload(SYSTEM_CONFIG_ADDRESS, admin_slot(account)).map_err(|e| e.to_string())?;
    Ok(!load.data.is_zero())
}

/// One call to the system config contract. `Err` is reserved for database failures, which abort
/// the block; everything a caller can get wrong is a revert with a reason.
fn system_config_call<CTX: ContextTr>(
    context: &mut CTX,
    inputs: &CallInputs,
    input: &[u8],
) -> Result<InterpreterResult, String> {
    let mut gas = Gas::new_with_regular_gas_and_reservoir(inputs.gas_limit, inputs.reservoir);
    let call: ISystemConfig::ISystemConfigCalls =
        match decode_call(inputs, input, SYSTEM_CONFIG_ADDRESS, "system config", &mut gas) {
            Ok(call) => call,
            Err(refused) => return Ok(refused),
        };
    let height: u64 = context.block().number().saturating_to();
    let mut sload = |slot: U256| -> Result<U256, String> {
        context.journal_mut().sload(SYSTEM_CONFIG_ADDRESS, slot).map(|load| load.data).map_err(|e| e.to_string())
    };
    use ISystemConfig::ISystemConfigCalls as Call;
    let output = match call {
        Call::getValueByKey(get) => {
            let Some(key) = ConfigKey::from_name(&get.key) else {
                return Ok(revert(gas, format!("system config: unknown key {:?}", get.key)));
            };
            // The latest value set and the height it takes effect from, which may be ahead.
            let (value, enable) = latest(key, &mut sload)?;
            ISystemConfig::getValueByKeyCall::abi_encode_returns_tuple(&(key.format(value), U256::from(enable)))
        }
        Call::blockIntervalMs(_) => {
            effective(height, ConfigKey::BlockIntervalMs, &mut sload)?.0.saturating_to::<u64>().abi_encode()
        }
        Call::maxTxsPerBlock(_) => {
            effective(height, ConfigKey::MaxTxsPerBlock, &mut sload)?.0.saturating_to::<u64>().abi_encode()
        }
        Call::blockGasLimit(_) => {
            effective(height, ConfigKey::BlockGasLimit, &mut sload)?.0.saturating_to::<u64>().abi_encode()
        }
        Call::compatibilityVersion(_) => {
            effective(height, ConfigKey::CompatibilityVersion, &mut sload)?.0.saturating_to::<u32>().abi_encode()
        }
        Call::consensusTimeoutMs(_) => {
            effective(height, ConfigKey::ConsensusTimeoutMs, &mut sload)?.0.saturating_to::<u64>().abi_encode()
        }
        Call::consensusMode(_) => {
            let value = effective(height, ConfigKey::ConsensusMode, &mut sload)?.0;
            ConfigKey::ConsensusMode.format(value).abi_encode()
        }
        Call::setValueByKey(set) => {
            let change = Change { key: &set.key, value: &set.value, enable: height + 1 };
            match set_value(context, inputs, &mut gas, height, change)? {
                Ok(()) => 0i32.abi_encode(),
                Err(SetRefused::OutOfGas) => return Ok(out_of_gas(gas)),
                Err(SetRefused::Revert(reason)) => return Ok(revert(gas, reason)),
            }
        }
        Call::setValueByKeyAt(set) => {
            let Ok(enable) = u64::try_from(set.enableNumber) else {
                return Ok(revert(gas, "system config: enableNumber is not a block number".into()));
            };
            let change = Change { key: &set.key, value: &set.value, enable };
            match set_value(context, inputs, &mut gas, height, change)? {
                Ok(()) => 0i32.abi_encode(),
                Err(SetRefused::OutOfGas) => return Ok(out_of_gas(gas)),
                Err(SetRefused::Revert(reason)) => return Ok(revert(gas, reason)),
            }
        }
    };
    Ok(ok(gas, output))
}

/// A requested configuration change.
struct Change<'a> {
    key: &'a str,
    value: &'a str,
    /// First block the value is in force in.
    enable: u64,
}

/// Why a change was not made (database failures are the outer `Err`).
enum SetRefused {
    OutOfGas,
    Revert(String),
}

/// Records `change` as the key's next value, in force from `change.enable`, replacing a change
/// still pending for the key.
fn set_value<CTX: ContextTr>(
    context: &mut CTX,
    inputs: &CallInputs,
    gas: &mut Gas,
    height: u64,
    change: Change<'_>,
) -> Result<Result<(), SetRefused>, String> {
    let refuse = |reason: String| Ok(Err(SetRefused::Revert(format!("system config: {reason}"))));
    if inputs.is_static {
        return refuse("cannot change configuration in a static call".into());
    }
    if !gas.record_regular_cost(WRITE_GAS) {
        return Ok(Err(SetRefused::OutOfGas));
    }
    if !is_admin(context, &inputs.caller)? {
        return refuse(format!("{} is not a chain administrator", inputs.caller));
    }
    let mut sload = |slot: U256| -> Result<U256, String> {
        context.journal_mut().sload(SYSTEM_CONFIG_ADDRESS, slot).map(|load| load.data).map_err(|e| e.to_string())
    };
    let Some(key) = ConfigKey::from_name(change.key) else {
        return refuse(format!("unknown key {:?}", change.key));
    };
    let value = match key.parse(change.value) {
        Ok(value) => value,
        Err(reason) => return refuse(reason),
    };
    if change.enable <= height {
        return refuse(format!("enableNumber {} is not after the current block {height}", change.enable));
    }
    let (in_force, _) = effective(height, key, &mut sload)?;
    if key == ConfigKey::CompatibilityVersion && value < in_force {
        return refuse(format!("compatibility_version cannot go down from {in_force}"));
    }
    let journal = context.journal_mut();
    for (slot, value) in
        [(key.slot("current"), in_force), (key.slot("next"), value), (key.slot("enable"), U256::from(change.enable))]
    {
        journal.sstore(SYSTEM_CONFIG_ADDRESS, slot, value).map_err(|e| e.to_string())?;
    }
    let event = ISystemConfig::ConfigChanged {
        key: change.key.to_owned(),
        value: key.format(value),
        enableNumber: U256::from(change.enable),
    };
    journal.log(Log { address: SYSTEM_CONFIG_ADDRESS, data: event.encode_log_data() });
    Ok(Ok(()))
}
