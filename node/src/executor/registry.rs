//! The node registry contract, run natively at [`NODE_REGISTRY_ADDRESS`].
//!
//! Storage layout (in the contract's own EVM storage, so the state commitment covers it): for
//! each role (`consensus`, `observer`) a count slot and one slot per node id, indexed from 0.
//! Removal moves the last entry into the freed index; order carries no meaning
//! ([`bcos_consensus::Validators`] sorts). Changes made in block N are read from block N's
//! state, so they are in force from block N+1 on every node.
//!
//! Authority: the governance contract (a committee proposal) makes every change; an account
//! with the chain operator role admits nodes that do not vote (adds new nodes as observers and
//! removes observers). Every change goes to the governance audit log.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent, SolValue};
use bcos_sdk::types::system::{GOVERNANCE_ADDRESS, INodeRegistry, NODE_REGISTRY_ADDRESS, Role};
use revm::{
    context::{ContextTr, JournalTr},
    interpreter::InterpreterResult,
    primitives::Log,
};

use super::{
    audit,
    permissions::has_role,
    slots::SlotList,
    system::{SystemCall, begin_change, decode_call, ok, revert},
};
use crate::storage::{StateReader, StorageError};

const NAME: &str = "node registry";

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

    fn list(self) -> SlotList {
        let name = match self {
            Self::Consensus => "nodes.consensus",
            Self::Observer => "nodes.observer",
        };
        SlotList { address: NODE_REGISTRY_ADDRESS, name, max: MAX_NODES }
    }
}

fn to_ids(values: Vec<U256>) -> Vec<B256> {
    values.into_iter().map(|value| B256::from(value.to_be_bytes())).collect()
}

fn to_values(ids: &[B256]) -> Vec<U256> {
    ids.iter().map(|id| U256::from_be_bytes(id.0)).collect()
}

/// Storage of the registry at genesis.
pub fn genesis_storage(consensus: &[B256], observers: &[B256]) -> Vec<(U256, U256)> {
    let mut slots = NodeRole::Consensus.list().genesis(&to_values(consensus));
    slots.extend(NodeRole::Observer.list().genesis(&to_values(observers)));
    slots
}

/// The nodes of `role` in committed state.
pub fn read_nodes(state: &dyn StateReader, role: NodeRole) -> Result<Vec<B256>, StorageError> {
    Ok(to_ids(role.list().read_committed(state)?))
}

/// The list of one role, read through the EVM journal.
fn journal_nodes<CTX: ContextTr>(context: &mut CTX, role: NodeRole) -> Result<Vec<B256>, String> {
    Ok(to_ids(role.list().read(context)?))
}

/// Rewrites the list of one role from `old` to `new`.
fn write_nodes<CTX: ContextTr>(context: &mut CTX, role: NodeRole, old: &[B256], new: &[B256]) -> Result<(), String> {
    role.list().write(context, &to_values(old), &to_values(new))
}

/// Whether `caller` may move a node from `from` to `to` (`None`: unregistered). The governance
/// contract may make every change; a chain operator only changes that leave the consensus nodes
/// alone: admitting a new node as an observer and removing an observer.
fn authorise<CTX: ContextTr>(
    context: &mut CTX,
    caller: Address,
    from: Option<NodeRole>,
    to: Option<NodeRole>,
) -> Result<Result<(), String>, String> {
    if caller == GOVERNANCE_ADDRESS {
        return Ok(Ok(()));
    }
    if !has_role(context, &caller, Role::ChainOperator)? {
        return Ok(Err(format!("{NAME}: {caller} is neither the governance contract nor a chain operator")));
    }
    let consensus = Some(NodeRole::Consensus);
    if from == consensus || to == consensus {
        return Ok(Err(format!(
            "{NAME}: changing the consensus nodes needs a committee proposal; chain operator {caller} may only add and remove observers"
        )));
    }
    Ok(Ok(()))
}

/// One call to the node registry.
pub(super) fn node_registry_call<CTX: ContextTr>(
    context: &mut CTX,
    mut call: SystemCall<'_>,
) -> Result<InterpreterResult, String> {
    let decoded: INodeRegistry::INodeRegistryCalls = match decode_call(&mut call, NAME) {
        Ok(decoded) => decoded,
        Err(refused) => return Ok(refused),
    };
    use INodeRegistry::INodeRegistryCalls as Call;
    let (node, role, action) = match decoded {
        Call::consensusNodes(_) => {
            let nodes = journal_nodes(context, NodeRole::Consensus)?;
            return Ok(ok(call.gas, INodeRegistry::consensusNodesCall::abi_encode_returns(&nodes)));
        }
        Call::observerNodes(_) => {
            let nodes = journal_nodes(context, NodeRole::Observer)?;
            return Ok(ok(call.gas, INodeRegistry::observerNodesCall::abi_encode_returns(&nodes)));
        }
        Call::addConsensusNode(add) => (add.nodeId, Some(NodeRole::Consensus), "addConsensusNode"),
        Call::addObserverNode(add) => (add.nodeId, Some(NodeRole::Observer), "addObserverNode"),
        Call::removeNode(remove) => (remove.nodeId, None, "removeNode"),
    };
    if let Err(refused) = begin_change(&mut call, NAME) {
        return Ok(refused);
    }
    if node.is_zero() {
        return Ok(revert(call.gas, format!("{NAME}: the zero node id")));
    }
    let consensus = journal_nodes(context, NodeRole::Consensus)?;
    let observers = journal_nodes(context, NodeRole::Observer)?;
    let list = |role| if role == NodeRole::Consensus { &consensus } else { &observers };
    let current = [NodeRole::Consensus, NodeRole::Observer].into_iter().find(|role| list(*role).contains(&node));
    if let Err(reason) = authorise(context, call.caller, current, role)? {
        return Ok(revert(call.gas, reason));
    }
    if current == role {
        let reason = match role {
            Some(role) => format!("{NAME}: {node} is already {} node", role.article()),
            None => format!("{NAME}: {node} is not registered"),
        };
        return Ok(revert(call.gas, reason));
    }
    if current == Some(NodeRole::Consensus) && consensus.len() == 1 {
        return Ok(revert(call.gas, format!("{NAME}: the last consensus node cannot leave")));
    }
    if let Some(to) = role
        && list(to).len() as u64 >= MAX_NODES
    {
        return Ok(revert(call.gas, format!("{NAME}: at most {MAX_NODES} {} nodes", to.name())));
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
    let new_role = role.map_or("removed", NodeRole::name);
    let details = format!("node {node}: {} -> {new_role}", current.map_or("unregistered", NodeRole::name));
    audit::append(context, call.caller, action, &details)?;
    let event = INodeRegistry::NodeChanged { nodeId: node, role: new_role.to_owned() };
    context.journal_mut().log(Log { address: NODE_REGISTRY_ADDRESS, data: event.encode_log_data() });
    Ok(ok(call.gas, 0i32.abi_encode()))
}
