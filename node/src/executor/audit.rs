//! The governance audit log, kept in the governance contract's storage.
//!
//! Every governance action appends one entry: proposals, votes, executions, failures,
//! rejections and expiries (by the governance contract), and every change a system contract
//! makes (configuration, nodes, roles, revocations, the committee), with the account that made
//! it: the governance contract for changes a proposal carried out, a chain operator for the
//! observer changes it may make itself. Entries are never removed.
//!
//! Layout: a count slot `bcos.governance.audit.count`; entry `i` from the slot
//! `keccak256("bcos.governance.audit." + i as 32 bytes)` on: block number, actor, then the action
//! and the details as byte strings (see [`super::slots`]).

use alloy_primitives::{Address, U256};
use bcos_sdk::types::system::{GOVERNANCE_ADDRESS, IGovernance};
use revm::context::ContextTr;

use super::{
    slots::{self, bounded},
    system::block_number,
};

/// Longest details text an entry keeps.
const MAX_DETAILS: usize = 1024;

/// Most entries one read returns.
pub(super) const MAX_PAGE: u64 = 100;

fn count_slot() -> U256 {
    slots::named("governance.audit.count")
}

fn entry_slot(index: u64, field: u64) -> U256 {
    slots::keyed("governance.audit.", &U256::from(index).to_be_bytes::<32>()).wrapping_add(U256::from(field))
}

/// Number of entries.
pub(super) fn len<CTX: ContextTr>(context: &mut CTX) -> Result<u64, String> {
    Ok(slots::sload(context, GOVERNANCE_ADDRESS, count_slot())?.saturating_to())
}

/// Appends an entry for the current block.
pub(super) fn append<CTX: ContextTr>(
    context: &mut CTX,
    actor: Address,
    action: &str,
    details: &str,
) -> Result<(), String> {
    let index = len(context)?;
    let block = block_number(context);
    slots::sstore(context, GOVERNANCE_ADDRESS, entry_slot(index, 0), U256::from(block))?;
    slots::sstore(context, GOVERNANCE_ADDRESS, entry_slot(index, 1), slots::from_address(actor))?;
    slots::write_blob(context, GOVERNANCE_ADDRESS, entry_slot(index, 2), action.as_bytes())?;
    slots::write_blob(context, GOVERNANCE_ADDRESS, entry_slot(index, 3), bounded(details, MAX_DETAILS).as_bytes())?;
    slots::sstore(context, GOVERNANCE_ADDRESS, count_slot(), U256::from(index + 1))
}

/// Up to `count` entries from `start` (fewer at the end of the log, and at most [`MAX_PAGE`]).
pub(super) fn read<CTX: ContextTr>(
    context: &mut CTX,
    start: u64,
    count: u64,
) -> Result<Vec<IGovernance::AuditEntry>, String> {
    let end = len(context)?.min(start.saturating_add(count.min(MAX_PAGE)));
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (start..end)
        .map(|index| {
            Ok(IGovernance::AuditEntry {
                blockNumber: slots::sload(context, GOVERNANCE_ADDRESS, entry_slot(index, 0))?.saturating_to(),
                actor: slots::to_address(slots::sload(context, GOVERNANCE_ADDRESS, entry_slot(index, 1))?),
                action: text(slots::read_blob(context, GOVERNANCE_ADDRESS, entry_slot(index, 2))?),
                details: text(slots::read_blob(context, GOVERNANCE_ADDRESS, entry_slot(index, 3))?),
            })
        })
        .collect()
}
