//! The node registry contract, run natively at [`NODE_REGISTRY_ADDRESS`].
//!
//! Storage layout (in the contract's own EVM storage, so the state commitment covers it): for
//! each role (`consensus`, `observer`) a count slot and one slot per node id, indexed from 0.
//! Removal moves the last entry into the freed index; order carries no meaning
//! ([`bcos_consensus::Validators`] sorts). Changes made in block N are read from block N's
//! state, so they are in force from block N+1 on every node.

use alloy_primitives::{B256, U256, keccak256};
use alloy_sol_types::{SolCall, SolEvent, SolValue};
use bcos_sdk::types::system::{INodeRegistry, NODE_REGISTRY_ADDRESS};
use revm::{
    context::{ContextTr, JournalTr},
    interpreter::{CallInputs, Gas, InterpreterResult},
    primitives::Log,
};

use super::system::{WRITE_GAS, decode_call, is_admin, ok, out_of_gas, revert};
use crate::storage::{StateReader, StorageError};

/// Most nodes one role may list; bounds what a corrupt count could make a node read.
pub const MAX_NODES: u64 = 1_000;

/// What a registered node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Votes on blocks.
    Consensus,
    /// Receives and verifies blocks, never votes.
    Observer,
}

impl NodeRole {
    fn name(self) -> &'static str {
        match self {
            Self::Consensus => "consensus",
            Self::Observer => "observer",
        }
    }

    /// The role's name with its indefinite article.
    fn article(self) -> &'static str {
        match self {
            Self::Consensus => "a consensus",
            Self::Observer => "an observer",
        }
    }

    fn count_slot(self) -> U256 {
        U256::from_be_bytes(keccak256(format!("bcos.nodes.{}.count", self.name())).0)
    }

    fn slot(self, index: u64) -> U256 {
        U256::from_be_bytes(keccak256(format!("bcos.nodes.{}.{index}", self.name())).0)
    }
}

/// Storage of the registry at genesis.
pub fn genesis_storage(consensus: &[B256], observers: &[B256]) -> Vec<(U256, U256)> {
    let mut slots = Vec::new();
    for (role, nodes) in [(NodeRole::Consensus, consensus), (NodeRole::Observer, observers)] {
        slots.push((role.count_slot(), U256::from(nodes.len())));
        slots.extend(nodes.iter().enumerate().map(|(i, id)| (role.slot(i as u64), U256::from_be_bytes(id.0))));
    }
    slots
}

/// The nodes of `role` in committed state.
pub fn read_nodes(state: &dyn StateReader, role: NodeRole) -> Result<Vec<B256>, StorageError> {
    let sload = |slot: U256| state.storage(&NODE_REGISTRY_ADDRESS, &slot);
    let count: u64 = sload(role.count_slot())?.saturating_to();
    if count > MAX_NODES {
        return Err(StorageError::Corrupt { table: "state", detail: format!("{count} {} nodes", role.name()) });
    }
    (0..count).map(|i| Ok(B256::from(sload(role.slot(i))?.to_be_bytes()))).collect()
}

/// The list of one role, read through the EVM journal.
fn journal_nodes<CTX: ContextTr>(context: &mut CTX, role: NodeRole) -> Result<Vec<B256>, String> {
    let mut sload = |slot: U256| -> Result<U256, String> {
        context.journal_mut().sload(NODE_REGISTRY_ADDRESS, slot).map(|load| load.data).map_err(|e| e.to_string())
    };
    let count: u64 = sload(role.count_slot())?.saturating_to();
    if count > MAX_NODES {
        return Err(format!("node registry: corrupt count of {} nodes", role.name()));
    }
    (0..count).map(|i| Ok(B256::from(sload(role.slot(i))?.to_be_bytes()))).collect()
}

/// Rewrites the list of one role from `old` to `new` (slots past the new end are cleared).
fn write_nodes<CTX: ContextTr>(context: &mut CTX, role: NodeRole, old: &[B256], new: &[B256]) -> Result<(), String> {
    let journal = context.journal_mut();
    let mut sstore =
        |slot, value| journal.sstore(NODE_REGISTRY_ADDRESS, slot, value).map(drop).map_err(|e| e.to_string());
    for (i, id) in new.iter().enumerate() {
        if old.get(i) != Some(id) {
            sstore(role.slot(i as u64), U256::from_be_bytes(id.0))?;
        }
    }
    for i in new.len()..old.len() {
        sstore(role.slot(i as u64), U256::ZERO)?;
    }
    sstore(role.count_slot(), U256::from(new.len()))
}

/// One call to the node registry. `Err` is reserved for database failures, which abort the
/// block; everything a caller can get wrong is a revert with a reason.
pub(super) fn node_registry_call<CTX: ContextTr>(
    context: &mut CTX,
    inputs: &CallInputs,
    input: &[u8],
) -> Result<InterpreterResult, String> {
    let mut gas = Gas::new_with_regular_gas_and_reservoir(inputs.gas_limit, inputs.reservoir);
    let call: INodeRegistry::INodeRegistryCalls =
        match decode_call(inputs, input, NODE_REGISTRY_ADDRESS, "node registry", &mut gas) {
            Ok(call) => call,
            Err(refused) => return Ok(refused),
        };
    use INodeRegistry::INodeRegistryCalls as Call;
    let (node, role) = match call {
        Call::consensusNodes(_) => {
            let nodes = journal_nodes(context, NodeRole::Consensus)?;
            return Ok(ok(gas, INodeRegistry::consensusNodesCall::abi_encode_returns(&nodes)));
        }
        Call::observerNodes(_) => {
            let nodes = journal_nodes(context, NodeRole::Observer)?;
            return Ok(ok(gas, INodeRegistry::observerNodesCall::abi_encode_returns(&nodes)));
        }
        Call::addConsensusNode(call) => (call.nodeId, Some(NodeRole::Consensus)),
        Call::addObserverNode(call) => (call.nodeId, Some(NodeRole::Observer)),
        Call::removeNode(call) => (call.nodeId, None),
    };
    if inputs.is_static {
        return Ok(revert(gas, "node registry: cannot change the registry in a static call".into()));
    }
    if !gas.record_regular_cost(WRITE_GAS) {
        return Ok(out_of_gas(gas));
    }
    if !is_admin(context, &inputs.caller)? {
        return Ok(revert(gas, format!("node registry: {} is not a chain administrator", inputs.caller)));
    }
    if node.is_zero() {
        return Ok(revert(gas, "node registry: the zero node id".into()));
    }
    let consensus = journal_nodes(context, NodeRole::Consensus)?;
    let observers = journal_nodes(context, NodeRole::Observer)?;
    let list = |role| if role == NodeRole::Consensus { &consensus } else { &observers };
    let current = [NodeRole::Consensus, NodeRole::Observer].into_iter().find(|role| list(*role).contains(&node));
    if current == role {
        let reason = match role {
            Some(role) => format!("node registry: {node} is already {} node", role.article()),
            None => format!("node registry: {node} is not registered"),
        };
        return Ok(revert(gas, reason));
    }
    if current == Some(NodeRole::Consensus) && consensus.len() == 1 {
        return Ok(revert(gas, "node registry: the last consensus node cannot leave".into()));
    }
    if let Some(to) = role
        && list(to).len() as u64 >= MAX_NODES
    {
        return Ok(revert(gas, format!("node registry: at most {MAX_NODES} {} nodes", to.name())));
    }
    if let Some(from) = current {
        let old = list(from).clone();
        let mut new = old.clone();
        new.swap_remove(old.iter().position(|id| *id == node).unwrap_or_default());
        write_nodes(context, from, &old, &new)?;
    }
    if let Some(to) = role {
        let old = list(to).clone();
        let mut new = old.clone();
        new.push(node);
        write_nodes(context, to, &old, &new)?;
    }
    let event = INodeRegistry::NodeChanged { nodeId: node, role: role.map_or("removed", NodeRole::name).to_owned() };
    context.journal_mut().log(Log { address: NODE_REGISTRY_ADDRESS, data: event.encode_log_data() });
    Ok(ok(gas, 0i32.abi_encode()))
}
