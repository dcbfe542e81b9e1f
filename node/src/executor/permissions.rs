//! Roles and permissions, run natively at [`PERMISSIONS_ADDRESS`], and the rule every
//! transaction is checked against.
//!
//! Storage layout: `bcos.permissions.enabled` (0 or 1), and per account a mask of its roles
//! (bits of [`Role::bit`]) at `keccak256("bcos.permissions.roles" + address)`.
//!
//! The rule ([`check_transaction`]): while permissions are enabled, a contract creation needs
//! [`Role::Deployer`] and any other transaction [`Role::Transactor`], except calls of the system
//! contracts, which check their own authority (so committee members and chain operators govern
//! without being transactors). The pool applies it on admission against committed state, and
//! the executor again before each transaction against the state the block has reached, since a
//! role may be revoked in between; there a refusal puts the transaction in
//! [`super::ExecutedBlock::rejected`], which every node computes alike.

use alloy_primitives::{Address, TxKind, U256};
use alloy_sol_types::{SolCall, SolEvent, SolValue};
use bcos_sdk::{
    config::Permissions,
    types::system::{IPermissions, PERMISSIONS_ADDRESS, Role, SYSTEM_CONTRACT_ADDRESSES},
};
use revm::{
    context::{ContextTr, JournalTr},
    interpreter::InterpreterResult,
    primitives::Log,
};

use super::{
    audit, slots,
    system::{SystemCall, begin_change, decode_call, governance_only, ok, revert},
};

const NAME: &str = "permissions";

fn enabled_slot() -> U256 {
    slots::named("permissions.enabled")
}

fn roles_slot(account: &Address) -> U256 {
    slots::keyed("permissions.roles", account.as_slice())
}

/// Storage of the permissions contract at genesis.
pub fn genesis_storage(permissions: &Permissions) -> Vec<(U256, U256)> {
    let mut slots = vec![(enabled_slot(), U256::from(u8::from(permissions.enabled)))];
    slots.extend(permissions.roles.iter().map(|(account, roles)| {
        (roles_slot(account), U256::from(roles.iter().fold(0u64, |mask, role| mask | role.bit())))
    }));
    slots
}

/// Why a transaction's sender may not send it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionDenied {
    /// A contract creation from an account without [`Role::Deployer`].
    #[error("permission denied: account {0} lacks the deployer role needed to deploy contracts")]
    NoDeploy(Address),
    /// Another transaction from an account without [`Role::Transactor`].
    #[error("permission denied: account {0} lacks the transactor role needed to send transactions")]
    NoTransact(Address),
}

/// Checks a transaction from `sender` of `kind` against the permissions contract's storage, read
/// with `sload` (from committed state in the pool, from the block's state in the executor).
/// The outer error is a failure to read.
pub fn check_transaction<E>(
    sender: Address,
    kind: TxKind,
    mut sload: impl FnMut(U256) -> Result<U256, E>,
) -> Result<Result<(), PermissionDenied>, E> {
    let (role, denied) = match kind {
        TxKind::Create => (Role::Deployer, PermissionDenied::NoDeploy(sender)),
        TxKind::Call(to) if SYSTEM_CONTRACT_ADDRESSES.contains(&to) => return Ok(Ok(())),
        TxKind::Call(_) => (Role::Transactor, PermissionDenied::NoTransact(sender)),
    };
    if sload(enabled_slot())?.is_zero() {
        return Ok(Ok(()));
    }
    let mask: u64 = sload(roles_slot(&sender))?.saturating_to();
    Ok(if mask & role.bit() != 0 { Ok(()) } else { Err(denied) })
}

fn roles_of<CTX: ContextTr>(context: &mut CTX, account: &Address) -> Result<u64, String> {
    Ok(slots::sload(context, PERMISSIONS_ADDRESS, roles_slot(account))?.saturating_to())
}

/// Whether `account` holds `role`.
pub(super) fn has_role<CTX: ContextTr>(context: &mut CTX, account: &Address, role: Role) -> Result<bool, String> {
    Ok(roles_of(context, account)? & role.bit() != 0)
}

/// One call to the permissions contract.
pub(super) fn permissions_call<CTX: ContextTr>(
    context: &mut CTX,
    mut call: SystemCall<'_>,
) -> Result<InterpreterResult, String> {
    let decoded: IPermissions::IPermissionsCalls = match decode_call(&mut call, NAME) {
        Ok(decoded) => decoded,
        Err(refused) => return Ok(refused),
    };
    let parse = |name: &str| name.parse::<Role>().map_err(|e| format!("{NAME}: {e}"));
    use IPermissions::IPermissionsCalls as Call;
    let (account, role, grant) = match decoded {
        Call::permissionsEnabled(_) => {
            let enabled = !slots::sload(context, PERMISSIONS_ADDRESS, enabled_slot())?.is_zero();
            return Ok(ok(call.gas, enabled.abi_encode()));
        }
        Call::hasRole(query) => {
            let role = match parse(&query.role) {
                Ok(role) => role,
                Err(reason) => return Ok(revert(call.gas, reason)),
            };
            return Ok(ok(call.gas, has_role(context, &query.account, role)?.abi_encode()));
        }
        Call::rolesOf(query) => {
            let names: Vec<String> =
                Role::from_mask(roles_of(context, &query.account)?).iter().map(|r| r.as_str().to_owned()).collect();
            return Ok(ok(call.gas, IPermissions::rolesOfCall::abi_encode_returns(&names)));
        }
        Call::setPermissionsEnabled(switch) => return set_enabled(context, call, switch.enabled),
        Call::grantRole(change) => (change.account, change.role, true),
        Call::revokeRole(change) => (change.account, change.role, false),
    };
    if let Err(refused) = begin_change(&mut call, NAME).and_then(|()| governance_only(&call, NAME)) {
        return Ok(refused);
    }
    let role = match parse(&role) {
        Ok(role) => role,
        Err(reason) => return Ok(revert(call.gas, reason)),
    };
    let mask = roles_of(context, &account)?;
    let held = mask & role.bit() != 0;
    if held == grant {
        let state = if grant { "already holds" } else { "does not hold" };
        return Ok(revert(call.gas, format!("{NAME}: {account} {state} the {role} role")));
    }
    let new_mask = if grant { mask | role.bit() } else { mask & !role.bit() };
    slots::sstore(context, PERMISSIONS_ADDRESS, roles_slot(&account), U256::from(new_mask))?;
    let (action, details) = if grant {
        ("grantRole", format!("{role} to {account}"))
    } else {
        ("revokeRole", format!("{role} from {account}"))
    };
    audit::append(context, call.caller, action, &details)?;
    let data = if grant {
        IPermissions::RoleGranted { account, role: role.as_str().to_owned() }.encode_log_data()
    } else {
        IPermissions::RoleRevoked { account, role: role.as_str().to_owned() }.encode_log_data()
    };
    context.journal_mut().log(Log { address: PERMISSIONS_ADDRESS, data });
    Ok(ok(call.gas, 0i32.abi_encode()))
}

fn set_enabled<CTX: ContextTr>(
    context: &mut CTX,
    mut call: SystemCall<'_>,
    enabled: bool,
) -> Result<InterpreterResult, String> {
    if let Err(refused) = begin_change(&mut call, NAME).and_then(|()| governance_only(&call, NAME)) {
        return Ok(refused);
    }
    slots::sstore(context, PERMISSIONS_ADDRESS, enabled_slot(), U256::from(u8::from(enabled)))?;
    audit::append(context, call.caller, "setPermissionsEnabled", if enabled { "enabled" } else { "disabled" })?;
    let event = IPermissions::PermissionsEnabled { enabled };
    context.journal_mut().log(Log { address: PERMISSIONS_ADDRESS, data: event.encode_log_data() });
    Ok(ok(call.gas, 0i32.abi_encode()))
}
