//! The system contracts' precompile provider and what they share, and the system config
//! contract, run natively at [`SYSTEM_CONFIG_ADDRESS`].
//!
//! Every system contract is a handler taking a [`SystemCall`]: the provider builds one from the
//! EVM's call, and the governance contract builds one to carry out a proposal with itself as the
//! caller. Changes that need the committee accept only [`GOVERNANCE_ADDRESS`] as caller, and every
//! change is recorded in the governance audit log.
//!
//! System config storage layout (all in the contract's own EVM storage, so the state commitment
//! covers it and `eth_getStorageAt` shows it): for every key three slots, `current`, `next` and
//! `enable` (the height from which `next` is in force). A change made while executing block N
//! sets `next` with `enable = N + 1` (`setValueByKey`) or a later height the caller chose
//! (`setValueByKeyAt`), so every node applies it from the same block.

use alloy_primitives::{Address, Bytes, U256, keccak256};
use alloy_sol_types::{SolCall, SolError, SolEvent, SolInterface, SolValue};
pub use bcos_sdk::types::system::SYSTEM_CONTRACT_ADDRESSES;
use bcos_sdk::{
    config::{ConsensusMode, SystemConfig},
    types::system::{
        CERT_REVOCATION_ADDRESS, CONTRACT_VERSIONS_ADDRESS, GOVERNANCE_ADDRESS, ISystemConfig, NODE_REGISTRY_ADDRESS,
        PERMISSIONS_ADDRESS, SYSTEM_CONFIG_ADDRESS,
    },
};
use revm::{
    context::{Cfg, ContextTr, JournalTr},
    context_interface::Block,
    handler::{EthPrecompiles, PrecompileProvider},
    interpreter::{CallInputs, Gas, InstructionResult, InterpreterResult},
    primitives::{AddressSet, Log, hardfork::SpecId},
};

use super::{
    audit, features::Feature, governance::governance_call, permissions::permissions_call, registry::node_registry_call,
    revocation::revocation_call, slots, versions::versions_call,
};
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

/// The compatibility version in force for the block at `height`, read from committed state (the
/// parent's: a change made in a block is in force from a later one, so the whole block runs at
/// one version).
pub fn read_compatibility_version(state: &dyn StateReader, height: u64) -> Result<u32, StorageError> {
    let sload = |slot| state.storage(&SYSTEM_CONFIG_ADDRESS, &slot);
    Ok(effective(height, ConfigKey::CompatibilityVersion, sload)?.0.saturating_to())
}

/// The compatibility version in force for the current block, read through the journal.
pub(super) fn compatibility_version<CTX: ContextTr>(context: &mut CTX) -> Result<u32, String> {
    let height = block_number(context);
    let sload = |slot| slots::sload(context, SYSTEM_CONFIG_ADDRESS, slot);
    Ok(effective(height, ConfigKey::CompatibilityVersion, sload)?.0.saturating_to())
}

/// Storage of the system config contract at genesis.
pub fn genesis_storage(config: &SystemConfig) -> Vec<(U256, U256)> {
    ConfigKey::ALL.iter().map(|key| (key.slot("current"), key.genesis_value(config))).collect()
}

/// Runtime code placed at system contract addresses: never executed (the precompile answers
/// first), but it makes the accounts non-empty and lets Solidity's `extcodesize` checks pass.
pub const SYSTEM_CONTRACT_MARKER_CODE: &[u8] = &[0xfe];

/// One call of a system contract, as its handler needs it.
pub(super) struct SystemCall<'a> {
    /// Who calls: the transaction's sender or a contract, or the governance contract carrying
    /// out a proposal.
    pub(super) caller: Address,
    /// A static call may not change anything.
    pub(super) is_static: bool,
    /// The call runs in another account's context (DELEGATECALL, CALLCODE): refused.
    delegated: bool,
    /// The call carries value: refused, system contracts hold no balance.
    with_value: bool,
    /// Gas left to the call.
    pub(super) gas: Gas,
    /// ABI-encoded call data.
    pub(super) input: &'a [u8],
}

impl<'a> SystemCall<'a> {
    fn from_inputs(inputs: &CallInputs, input: &'a [u8]) -> Self {
        Self {
            caller: inputs.caller,
            is_static: inputs.is_static,
            delegated: inputs.target_address != inputs.bytecode_address,
            with_value: inputs.transfers_value(),
            gas: Gas::new_with_regular_gas_and_reservoir(inputs.gas_limit, inputs.reservoir),
            input,
        }
    }

    /// The call the governance contract makes to carry out a proposal.
    pub(super) fn from_governance(gas_limit: u64, input: &'a [u8]) -> Self {
        Self {
            caller: GOVERNANCE_ADDRESS,
            is_static: false,
            delegated: false,
            with_value: false,
            gas: Gas::new(gas_limit),
            input,
        }
    }
}

/// A system contract: `Err` is reserved for database failures, which abort the block; everything
/// a caller can get wrong is a revert with a reason.
pub(super) type Handler<CTX> = fn(&mut CTX, SystemCall<'_>) -> Result<InterpreterResult, String>;

/// The system contract at `address`, if there is one.
pub(super) fn handler<CTX: ContextTr>(address: Address) -> Option<Handler<CTX>> {
    match address {
        SYSTEM_CONFIG_ADDRESS => Some(system_config_call::<CTX>),
        NODE_REGISTRY_ADDRESS => Some(node_registry_call::<CTX>),
        PERMISSIONS_ADDRESS => Some(permissions_call::<CTX>),
        GOVERNANCE_ADDRESS => Some(governance_call::<CTX>),
        CERT_REVOCATION_ADDRESS => Some(revocation_call::<CTX>),
        CONTRACT_VERSIONS_ADDRESS => Some(versions_call::<CTX>),
        _ => None,
    }
}

/// The name of the system contract at `address`, for audit entries and reasons.
pub(super) fn contract_name(address: Address) -> &'static str {
    match address {
        SYSTEM_CONFIG_ADDRESS => "system config",
        NODE_REGISTRY_ADDRESS => "node registry",
        PERMISSIONS_ADDRESS => "permissions",
        GOVERNANCE_ADDRESS => "governance",
        CERT_REVOCATION_ADDRESS => "certificate revocation",
        CONTRACT_VERSIONS_ADDRESS => "contract versions",
        _ => "not a system contract",
    }
}

/// Ethereum's precompiles plus this chain's system contracts.
#[derive(Debug)]
pub struct SystemContracts {
    eth: EthPrecompiles,
    warm: AddressSet,
    initialised: bool,
    /// Whether the contract versions registry exists ([`Feature::ContractRouting`]). Without it
    /// its address is an ordinary (empty, cold) account, as on nodes that never had it.
    routing: bool,
}

impl SystemContracts {
    /// The precompile set for a hard fork, on a chain at `compatibility_version`.
    pub fn new(spec: SpecId, compatibility_version: u32) -> Self {
        let eth = EthPrecompiles::new(spec);
        let routing = Feature::ContractRouting.enabled(compatibility_version);
        let warm = Self::warm_set(&eth, routing);
        Self { eth, warm, initialised: false, routing }
    }

    fn warm_set(eth: &EthPrecompiles, routing: bool) -> AddressSet {
        let mut warm = <EthPrecompiles as PrecompileProvider<revm::handler::MainnetContext<revm::database::EmptyDB>>>::warm_addresses(eth).clone();
        warm.extend(SYSTEM_CONTRACT_ADDRESSES);
        if routing {
            warm.insert(CONTRACT_VERSIONS_ADDRESS);
        }
        warm
    }
}

impl<CTX: ContextTr<Cfg: Cfg<Spec = SpecId>>> PrecompileProvider<CTX> for SystemContracts {
    type Output = InterpreterResult;

    fn set_spec(&mut self, spec: SpecId) -> bool {
        let changed = <EthPrecompiles as PrecompileProvider<CTX>>::set_spec(&mut self.eth, spec);
        // revm warms the precompile addresses only when this returns true: do so the first time.
        if changed || !self.initialised {
            self.warm = Self::warm_set(&self.eth, self.routing);
            self.initialised = true;
            return true;
        }
        false
    }

    fn run(&mut self, context: &mut CTX, inputs: &CallInputs) -> Result<Option<InterpreterResult>, String> {
        let exists = self.routing || inputs.bytecode_address != CONTRACT_VERSIONS_ADDRESS;
        let Some(call) = handler::<CTX>(inputs.bytecode_address).filter(|_| exists) else {
            return <EthPrecompiles as PrecompileProvider<CTX>>::run(&mut self.eth, context, inputs);
        };
        let input = inputs.input.bytes(context);
        call(context, SystemCall::from_inputs(inputs, &input)).map(Some)
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
pub(super) fn decode_call<C: SolInterface>(call: &mut SystemCall<'_>, name: &str) -> Result<C, InterpreterResult> {
    if !call.gas.record_regular_cost(READ_GAS) {
        return Err(out_of_gas(call.gas));
    }
    if call.delegated {
        return Err(revert(call.gas, format!("{name}: delegatecall is not allowed")));
    }
    if call.with_value {
        return Err(revert(call.gas, format!("{name}: not payable")));
    }
    C::abi_decode(call.input).map_err(|_| revert(call.gas, format!("{name}: unknown function or malformed arguments")))
}

/// What every change starts with: refusal in a static call, and the write charge.
pub(super) fn begin_change(call: &mut SystemCall<'_>, name: &str) -> Result<(), InterpreterResult> {
    if call.is_static {
        return Err(revert(call.gas, format!("{name}: cannot change anything in a static call")));
    }
    if !call.gas.record_regular_cost(WRITE_GAS) {
        return Err(out_of_gas(call.gas));
    }
    Ok(())
}

/// The refusal of a change only the committee may make, unless the governance contract calls.
pub(super) fn governance_only(call: &SystemCall<'_>, name: &str) -> Result<(), InterpreterResult> {
    if call.caller == GOVERNANCE_ADDRESS {
        return Ok(());
    }
    Err(revert(
        call.gas,
        format!("{name}: {} is not the governance contract; this change needs a committee proposal", call.caller),
    ))
}

/// The current block's number.
pub(super) fn block_number<CTX: ContextTr>(context: &CTX) -> u64 {
    context.block().number().saturating_to()
}

/// One call to the system config contract.
fn system_config_call<CTX: ContextTr>(
    context: &mut CTX,
    mut call: SystemCall<'_>,
) -> Result<InterpreterResult, String> {
    const NAME: &str = "system config";
    let decoded: ISystemConfig::ISystemConfigCalls = match decode_call(&mut call, NAME) {
        Ok(decoded) => decoded,
        Err(refused) => return Ok(refused),
    };
    let height = block_number(context);
    let mut sload = |slot: U256| slots::sload(context, SYSTEM_CONFIG_ADDRESS, slot);
    use ISystemConfig::ISystemConfigCalls as Call;
    let output = match decoded {
        Call::getValueByKey(get) => {
            let Some(key) = ConfigKey::from_name(&get.key) else {
                return Ok(revert(call.gas, format!("{NAME}: unknown key {:?}", get.key)));
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
            return set_value(context, call, height, change);
        }
        Call::setValueByKeyAt(set) => {
            let Ok(enable) = u64::try_from(set.enableNumber) else {
                return Ok(revert(call.gas, format!("{NAME}: enableNumber is not a block number")));
            };
            let change = Change { key: &set.key, value: &set.value, enable };
            return set_value(context, call, height, change);
        }
    };
    Ok(ok(call.gas, output))
}

/// A requested configuration change.
struct Change<'a> {
    key: &'a str,
    value: &'a str,
    /// First block the value is in force in.
    enable: u64,
}

/// Records `change` as the key's next value, in force from `change.enable`, replacing a change
/// still pending for the key.
fn set_value<CTX: ContextTr>(
    context: &mut CTX,
    mut call: SystemCall<'_>,
    height: u64,
    change: Change<'_>,
) -> Result<InterpreterResult, String> {
    const NAME: &str = "system config";
    if let Err(refused) = begin_change(&mut call, NAME).and_then(|()| governance_only(&call, NAME)) {
        return Ok(refused);
    }
    let refuse = |reason: String| Ok(revert(call.gas, format!("{NAME}: {reason}")));
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
    let (in_force, _) = effective(height, key, |slot| slots::sload(context, SYSTEM_CONFIG_ADDRESS, slot))?;
    if key == ConfigKey::CompatibilityVersion && value < in_force {
        return refuse(format!("compatibility_version cannot go down from {in_force}"));
    }
    for (slot, value) in
        [(key.slot("current"), in_force), (key.slot("next"), value), (key.slot("enable"), U256::from(change.enable))]
    {
        slots::sstore(context, SYSTEM_CONFIG_ADDRESS, slot, value)?;
    }
    let formatted = key.format(value);
    let details = format!("{} = {formatted} from block {}", change.key, change.enable);
    audit::append(context, call.caller, "setConfig", &details)?;
    let event = ISystemConfig::ConfigChanged {
        key: change.key.to_owned(),
        value: formatted,
        enableNumber: U256::from(change.enable),
    };
    context.journal_mut().log(Log { address: SYSTEM_CONFIG_ADDRESS, data: event.encode_log_data() });
    Ok(ok(call.gas, 0i32.abi_encode()))
}
