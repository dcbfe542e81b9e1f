//! The node registry contract, run natively at [`NODE_REGISTRY_ADDRESS`].
//!
//! Storage layout (in the contract's own EVM storage, so the state commitment covers it): for
//! each role (`consensus`, `observer`) a count slot and one slot per node id, indexed from 0.
//! Removal moves the last entry into the freed index; order carries no meaning
//! ([`bcos_consensus::Validators`] sorts). A node's peer-to-peer address (`host:port`, see
//! [`parse_node_address`]) is a byte string at `keccak256("bcos.nodes.address." + node id)`
//! (see [`super::slots`]); empty is none, and removing the node zeroes it. Changes made in block N
//! are read from block N's state, so they are in force from block N+1 on every node: the
//! consensus driver then has the network admit every registered node and dial those with an
//! address ([`read_addresses`]).
//!
//! Authority: the governance contract (a committee proposal) makes every change; an account
//! with the chain operator role admits nodes that do not vote (adds new nodes as observers and
//! removes observers). A node's address is set by whoever may add the node in its current role.
//! Every change goes to the governance audit log.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolEvent, SolValue};
use bcos_sdk::{
    config::parse_node_address,
    types::system::{GOVERNANCE_ADDRESS, INodeRegistry, NODE_REGISTRY_ADDRESS, Role},
};
use revm::{
    context::{ContextTr, JournalTr},
    interpreter::InterpreterResult,
    primitives::Log,
};

use super::{
    audit,
    permissions::has_role,
    slots::{self, SlotList},
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

/// The slot of a node's peer-to-peer address.
fn address_slot(node: &B256) -> U256 {
    slots::keyed("nodes.address.", node.as_slice())
}

/// Storage of the registry at genesis: the nodes of each role, and the addresses of those that
/// have one (the genesis file checked them).
pub fn genesis_storage<'a>(
    consensus: &[B256],
    observers: &[B256],
    addresses: impl IntoIterator<Item = (&'a B256, &'a String)>,
) -> Vec<(U256, U256)> {
    let mut storage = NodeRole::Consensus.list().genesis(&to_values(consensus));
    storage.extend(NodeRole::Observer.list().genesis(&to_values(observers)));
    for (node, address) in addresses {
        storage.extend(slots::blob_slots(address_slot(node), address.as_bytes()));
    }
    storage
}

/// The nodes of `role` in committed state.
pub fn read_nodes(state: &dyn StateReader, role: NodeRole) -> Result<Vec<B256>, StorageError> {
    Ok(to_ids(role.list().read_committed(state)?))
}

/// The peer-to-peer address of each of `nodes` in committed state, `None` for a node without
/// one. What is stored passed [`parse_node_address`] when it was set; it is returned as stored.
pub fn read_addresses(state: &dyn StateReader, nodes: &[B256]) -> Result<Vec<Option<String>>, StorageError> {
    nodes
        .iter()
        .map(|node| {
            let bytes = slots::read_committed_blob(state, NODE_REGISTRY_ADDRESS, address_slot(node))?;
            if bytes.is_empty() {
                return Ok(None);
            }
            String::from_utf8(bytes).map(Some).map_err(|_| StorageError::Corrupt {
                table: "state",
                detail: format!("the registry address of node {node} is not UTF-8"),
            })
        })
        .collect()
}

/// A node's address through the EVM journal; empty when it has none.
fn journal_address<CTX: ContextTr>(context: &mut CTX, node: &B256) -> Result<String, String> {
    let bytes = slots::read_blob(context, NODE_REGISTRY_ADDRESS, address_slot(node))?;
    // Only checked text is ever stored, so a lossy conversion never changes a stored address.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Replaces a node's address (empty: none).
fn write_address<CTX: ContextTr>(context: &mut CTX, node: &B256, address: &str) -> Result<(), String> {
    let slot = address_slot(node);
    slots::clear_blob(context, NODE_REGISTRY_ADDRESS, slot)?;
    if address.is_empty() {
        Ok(())
    } else {
        slots::write_blob(context, NODE_REGISTRY_ADDRESS, slot, address.as_bytes())
    }
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
        Call::nodeAddress(read) => {
            let address = journal_address(context, &read.nodeId)?;
            return Ok(ok(call.gas, INodeRegistry::nodeAddressCall::abi_encode_returns(&address)));
        }
        Call::setNodeAddress(set) => return set_address(context, call, set.nodeId, &set.p2pAddress),
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
    let current = current_role(&consensus, &observers, &node);
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
    if role.is_none() {
        // A removed node is no longer dialed, and comes back without its old address.
        write_address(context, &node, "")?;
    }
    let new_role = role.map_or("removed", NodeRole::name);
    let details = format!("node {node}: {} -> {new_role}", current.map_or("unregistered", NodeRole::name));
    audit::append(context, call.caller, action, &details)?;
    let event = INodeRegistry::NodeChanged { nodeId: node, role: new_role.to_owned() };
    context.journal_mut().log(Log { address: NODE_REGISTRY_ADDRESS, data: event.encode_log_data() });
    Ok(ok(call.gas, 0i32.abi_encode()))
}

/// The role `node` holds, if it is registered.
fn current_role(consensus: &[B256], observers: &[B256], node: &B256) -> Option<NodeRole> {
    if consensus.contains(node) {
        Some(NodeRole::Consensus)
    } else if observers.contains(node) {
        Some(NodeRole::Observer)
    } else {
        None
    }
}

/// `setNodeAddress`: sets or (with an empty address) clears a registered node's address.
fn set_address<CTX: ContextTr>(
    context: &mut CTX,
    mut call: SystemCall<'_>,
    node: B256,
    address: &str,
) -> Result<InterpreterResult, String> {
    if let Err(refused) = begin_change(&mut call, NAME) {
        return Ok(refused);
    }
    let consensus = journal_nodes(context, NodeRole::Consensus)?;
    let observers = journal_nodes(context, NodeRole::Observer)?;
    let Some(role) = current_role(&consensus, &observers, &node) else {
        return Ok(revert(call.gas, format!("{NAME}: {node} is not registered")));
    };
    // The same authority as adding the node in the role it holds: the committee for a consensus
    // node, also a chain operator for an observer.
    if let Err(reason) = authorise(context, call.caller, Some(role), Some(role))? {
        return Ok(revert(call.gas, reason));
    }
    if !address.is_empty()
        && let Err(reason) = parse_node_address(address)
    {
        let shown = slots::bounded(address, 80);
        return Ok(revert(call.gas, format!("{NAME}: address {shown:?} of {node}: {reason}")));
    }
    let old = journal_address(context, &node)?;
    if old == address {
        let reason = if old.is_empty() {
            format!("{NAME}: {node} has no address to clear")
        } else {
            format!("{NAME}: {node} already has address {address}")
        };
        return Ok(revert(call.gas, reason));
    }
    write_address(context, &node, address)?;
    let shown = |address: &str| if address.is_empty() { "none".to_owned() } else { address.to_owned() };
    let details = format!("node {node}: address {} -> {}", shown(&old), shown(address));
    audit::append(context, call.caller, "setNodeAddress", &details)?;
    let event = INodeRegistry::NodeAddressChanged { nodeId: node, p2pAddress: address.to_owned() };
    context.journal_mut().log(Log { address: NODE_REGISTRY_ADDRESS, data: event.encode_log_data() });
    Ok(ok(call.gas, 0i32.abi_encode()))
}
