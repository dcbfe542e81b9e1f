//! The contract versions registry, run natively at [`CONTRACT_VERSIONS_ADDRESS`] from
//! compatibility version 2 ([`Feature::ContractRouting`](super::features::Feature)): grey releases
//! of named contracts.
//!
//! The committee registers a name with its stable version (an implementation address), starts a
//! release of a candidate version for a share of the accounts, widens or narrows the share, and
//! promotes the candidate or rolls it back, each by a proposal. Each name has an alias address
//! ([`contract_alias`]); the executor runs a top-level call of an alias against the implementation
//! its sender is routed to ([`Router`]), and [`resolve`] and [`read_release`] give the APIs the
//! same answers from committed state. An account goes to the candidate when its
//! [`release_bucket`] is below the share, so widening keeps every account already routed.
//!
//! Storage layout (slots named as in [`super::slots`]):
//! - the aliases of the registered names as a list `versions.names`, bounded by [`MAX_NAMES`];
//!   names are never removed;
//! - per alias, from `keccak256("bcos.versions.contract." + alias)` on: the name (a byte string),
//!   the stable version's and the candidate's place in the history plus one (0: none), the share
//!   in basis points, and the history's length;
//! - history entry `i` of an alias from `keccak256("bcos.versions.version." + alias + i as 32
//!   bytes)` on: implementation, version (a byte string); at most [`MAX_VERSIONS`] per name.
//!
//! The first registration gives the account the system contract marker code: state drops the
//! storage of an account without code, nonce and balance as an empty account's, and Solidity
//! callers check `extcodesize`. Every change goes to the governance audit log.

use std::collections::HashMap;

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolEvent, SolValue};
use bcos_sdk::types::system::{
    BASIS_POINTS, CONTRACT_VERSIONS_ADDRESS, IContractVersions, contract_alias, release_bucket,
};
use revm::{
    bytecode::Bytecode,
    context::{ContextTr, JournalTr},
    interpreter::{Gas, InterpreterResult},
    primitives::Log,
};
use serde::Serialize;

use super::{
    audit,
    slots::{self, SlotList, bounded},
    system::{
        SYSTEM_CONTRACT_MARKER_CODE, SystemCall, begin_change, decode_call, governance_only, handler, ok, revert,
    },
};
use crate::storage::{StateReader, StorageError};

const NAME: &str = "contract versions";

/// Most names the registry holds; bounds what the executor loads once per block.
pub const MAX_NAMES: u64 = 100;

/// Most versions one name keeps in its history.
pub const MAX_VERSIONS: u64 = 32;

/// Longest name.
pub const MAX_NAME_BYTES: usize = 64;

/// Longest version.
pub const MAX_VERSION_BYTES: usize = 32;

const NAMES: SlotList = SlotList { address: CONTRACT_VERSIONS_ADDRESS, name: "versions.names", max: MAX_NAMES };

/// The fields of a registered name, in slot order.
#[derive(Debug, Clone, Copy)]
enum Field {
    Name = 0,
    Stable = 1,
    Candidate = 2,
    Share = 3,
    Count = 4,
}

/// The fields of a history entry, in slot order.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Implementation = 0,
    Version = 1,
}

fn field_slot(alias: Address, field: Field) -> U256 {
    slots::keyed("versions.contract.", alias.as_slice()).wrapping_add(U256::from(field as u64))
}

fn entry_slot(alias: Address, index: u64, entry: Entry) -> U256 {
    let mut key = alias.to_vec();
    key.extend_from_slice(&U256::from(index).to_be_bytes::<32>());
    slots::keyed("versions.version.", &key).wrapping_add(U256::from(entry as u64))
}

/// Checks a name or a version: 1 to `max` bytes of letters, digits, '.', '_', '+' and '-', so
/// both read plainly in logs, events and answers.
fn check_label(what: &str, text: &str, max: usize) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-');
    if text.is_empty() || text.len() > max || !text.chars().all(allowed) {
        let shown = bounded(text, 80);
        return Err(format!("{what} {shown:?} must be 1 to {max} bytes of letters, digits, '.', '_', '+' and '-'"));
    }
    Ok(())
}

/// Checks a contract name as the registry accepts it.
pub fn check_name(name: &str) -> Result<(), String> {
    check_label("name", name, MAX_NAME_BYTES)
}

fn check_version(version: &str) -> Result<(), String> {
    check_label("version", version, MAX_VERSION_BYTES)
}

fn check_share(share: u16) -> Result<(), String> {
    if share > BASIS_POINTS {
        return Err(format!("a share of {share} basis points; at most {BASIS_POINTS}"));
    }
    Ok(())
}

/// One version of a named contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    /// The version's label.
    pub version: String,
    /// The contract that runs it.
    pub implementation: Address,
}

/// Where a named contract's release stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// The name.
    pub name: String,
    /// Its alias address.
    pub alias: Address,
    /// The version every account not routed to the candidate runs.
    pub stable: Version,
    /// The version being released, if any.
    pub candidate: Option<Version>,
    /// Share of accounts routed to the candidate, in basis points (0 without one).
    pub share_bp: u16,
    /// Every version registered, oldest first.
    pub history: Vec<Version>,
}

/// The version an account is routed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// The name.
    pub name: String,
    /// Its alias address.
    pub alias: Address,
    /// The contract the account's calls of the alias run.
    pub implementation: Address,
    /// That contract's version.
    pub version: String,
    /// Whether the account is routed to the candidate rather than the stable version.
    pub routed_to_candidate: bool,
}

/// A registered name's state, its places checked against its history.
struct Record {
    stable: u64,
    candidate: Option<u64>,
    share: u16,
    count: u64,
}

/// Where an account's call goes.
struct Route {
    index: u64,
    implementation: Address,
    candidate: bool,
}

/// Reads the registry's storage through `sload`: the journal inside a call, the block's state in
/// the executor, committed state for the APIs. `corrupt` reports what no change here writes.
struct Store<S, E> {
    sload: S,
    corrupt: fn(String) -> E,
}

fn corrupt_journal(detail: String) -> String {
    format!("corrupt storage of {CONTRACT_VERSIONS_ADDRESS}: {detail}")
}

fn corrupt_state(detail: String) -> StorageError {
    StorageError::Corrupt { table: "state", detail: format!("{detail} at {CONTRACT_VERSIONS_ADDRESS}") }
}

fn journal<CTX: ContextTr>(context: &mut CTX) -> Store<impl FnMut(U256) -> Result<U256, String>, String> {
    Store { sload: move |slot| slots::sload(context, CONTRACT_VERSIONS_ADDRESS, slot), corrupt: corrupt_journal }
}

fn committed(state: &dyn StateReader) -> Store<impl FnMut(U256) -> Result<U256, StorageError>, StorageError> {
    Store { sload: move |slot| state.storage(&CONTRACT_VERSIONS_ADDRESS, &slot), corrupt: corrupt_state }
}

impl<S: FnMut(U256) -> Result<U256, E>, E> Store<S, E> {
    fn slot(&mut self, slot: U256) -> Result<U256, E> {
        (self.sload)(slot)
    }

    fn text(&mut self, slot: U256) -> Result<String, E> {
        let bytes = slots::blob_with(slot, &mut self.sload, self.corrupt)?;
        String::from_utf8(bytes).map_err(|_| (self.corrupt)("a name or version that is not UTF-8".into()))
    }

    fn aliases(&mut self) -> Result<Vec<Address>, E> {
        Ok(NAMES.read_with(&mut self.sload, self.corrupt)?.into_iter().map(slots::to_address).collect())
    }

    fn name(&mut self, alias: Address) -> Result<String, E> {
        self.text(field_slot(alias, Field::Name))
    }

    fn record(&mut self, alias: Address) -> Result<Option<Record>, E> {
        let stable: u64 = self.slot(field_slot(alias, Field::Stable))?.saturating_to();
        if stable == 0 {
            return Ok(None);
        }
        let candidate: u64 = self.slot(field_slot(alias, Field::Candidate))?.saturating_to();
        let share: u16 = self.slot(field_slot(alias, Field::Share))?.saturating_to();
        let count: u64 = self.slot(field_slot(alias, Field::Count))?.saturating_to();
        if count > MAX_VERSIONS || stable > count || candidate > count || share > BASIS_POINTS {
            return Err((self.corrupt)(format!(
                "release of {alias}: stable {stable}, candidate {candidate}, share {share}, {count} versions"
            )));
        }
        Ok(Some(Record { stable: stable - 1, candidate: candidate.checked_sub(1), share, count }))
    }

    fn version(&mut self, alias: Address, index: u64) -> Result<Version, E> {
        let implementation = slots::to_address(self.slot(entry_slot(alias, index, Entry::Implementation))?);
        Ok(Version { version: self.text(entry_slot(alias, index, Entry::Version))?, implementation })
    }

    fn history(&mut self, alias: Address, record: &Record) -> Result<Vec<Version>, E> {
        (0..record.count).map(|index| self.version(alias, index)).collect()
    }

    fn route(&mut self, name: &str, account: Address) -> Result<Option<Route>, E> {
        let alias = contract_alias(name);
        let Some(record) = self.record(alias)? else { return Ok(None) };
        let (index, candidate) = match record.candidate {
            Some(candidate) if release_bucket(account, name) < record.share => (candidate, true),
            _ => (record.stable, false),
        };
        let implementation = slots::to_address(self.slot(entry_slot(alias, index, Entry::Implementation))?);
        Ok(Some(Route { index, implementation, candidate }))
    }

    fn resolve(&mut self, name: &str, account: Address) -> Result<Option<Resolved>, E> {
        let Some(route) = self.route(name, account)? else { return Ok(None) };
        let alias = contract_alias(name);
        Ok(Some(Resolved {
            name: name.to_owned(),
            alias,
            implementation: route.implementation,
            version: self.text(entry_slot(alias, route.index, Entry::Version))?,
            routed_to_candidate: route.candidate,
        }))
    }

    fn release(&mut self, name: &str) -> Result<Option<Release>, E> {
        let alias = contract_alias(name);
        let Some(record) = self.record(alias)? else { return Ok(None) };
        let history = self.history(alias, &record)?;
        // `record` checked both places against the history's length.
        let pick = |index: u64| usize::try_from(index).ok().and_then(|index| history.get(index)).cloned();
        let Some(stable) = pick(record.stable) else {
            return Err((self.corrupt)(format!("release of {alias}: no stable version")));
        };
        let candidate = record.candidate.and_then(pick);
        Ok(Some(Release { name: name.to_owned(), alias, stable, candidate, share_bp: record.share, history }))
    }
}

/// The version `account` is routed to for `name` in committed state; `None` for a name not
/// registered.
pub fn resolve(state: &dyn StateReader, name: &str, account: Address) -> Result<Option<Resolved>, StorageError> {
    committed(state).resolve(name, account)
}

/// The release of `name` in committed state; `None` for a name not registered.
pub fn read_release(state: &dyn StateReader, name: &str) -> Result<Option<Release>, StorageError> {
    committed(state).release(name)
}

/// Routes top-level calls of aliases, over one block (or one read-only call) on a chain with the
/// registry: loads the aliases once, again after a transaction touched the registry.
#[derive(Debug, Default)]
pub(super) struct Router {
    aliases: Option<HashMap<Address, String>>,
}

impl Router {
    /// The implementation a call of `to` by `sender` runs, when `to` is the alias of a
    /// registered name; `sload` reads the registry's storage in the state the call runs on.
    pub(super) fn target(
        &mut self,
        to: Address,
        sender: Address,
        sload: impl FnMut(U256) -> Result<U256, StorageError>,
    ) -> Result<Option<Address>, StorageError> {
        let mut store = Store { sload, corrupt: corrupt_state };
        let aliases = match &mut self.aliases {
            Some(aliases) => aliases,
            None => {
                let mut aliases = HashMap::new();
                for alias in store.aliases()? {
                    aliases.insert(alias, store.name(alias)?);
                }
                self.aliases.insert(aliases)
            }
        };
        let Some(name) = aliases.get(&to) else { return Ok(None) };
        Ok(store.route(name, sender)?.map(|route| route.implementation))
    }

    /// Forgets the aliases, after a transaction that may have registered a name.
    pub(super) fn forget(&mut self) {
        self.aliases = None;
    }
}

impl From<Version> for IContractVersions::Version {
    fn from(version: Version) -> Self {
        Self { version: version.version, implementation: version.implementation }
    }
}

impl From<Release> for IContractVersions::Release {
    fn from(release: Release) -> Self {
        let none = IContractVersions::Version { version: String::new(), implementation: Address::ZERO };
        Self {
            name: release.name,
            aliasAddress: release.alias,
            stable: release.stable.into(),
            candidate: release.candidate.map_or(none, Into::into),
            shareBp: release.share_bp,
            history: release.history.into_iter().map(Into::into).collect(),
        }
    }
}

/// A database failure (outer) or the reason a change is refused (inner).
type Checked<T> = Result<Result<T, String>, String>;

/// The registered name `name` and its state, or the reason it is none.
fn registered<CTX: ContextTr>(context: &mut CTX, name: &str) -> Checked<(Address, Record)> {
    if let Err(reason) = check_name(name) {
        return Ok(Err(reason));
    }
    let alias = contract_alias(name);
    Ok(journal(context).record(alias)?.map(|record| (alias, record)).ok_or_else(|| format!("no contract named {name}")))
}

/// The release in progress for a registered name: its candidate's place and version.
fn in_progress<CTX: ContextTr>(context: &mut CTX, name: &str) -> Checked<(Address, Record, u64, Version)> {
    let (alias, record) = match registered(context, name)? {
        Ok(found) => found,
        Err(reason) => return Ok(Err(reason)),
    };
    let Some(candidate) = record.candidate else {
        return Ok(Err(format!("no release of {name} is in progress")));
    };
    let version = journal(context).version(alias, candidate)?;
    Ok(Ok((alias, record, candidate, version)))
}

/// Refuses an implementation without code (nothing would run) and a system contract.
fn check_implementation<CTX: ContextTr>(context: &mut CTX, implementation: Address) -> Checked<()> {
    if handler::<CTX>(implementation).is_some() {
        return Ok(Err(format!("{implementation} is a system contract")));
    }
    let account = context.journal_mut().load_account_with_code(implementation).map_err(|e| e.to_string())?;
    if account.info.code.as_ref().is_none_or(Bytecode::is_empty) {
        return Ok(Err(format!("{implementation} holds no code")));
    }
    Ok(Ok(()))
}

fn sstore<CTX: ContextTr>(context: &mut CTX, slot: U256, value: U256) -> Result<(), String> {
    slots::sstore(context, CONTRACT_VERSIONS_ADDRESS, slot, value)
}

fn emit<CTX: ContextTr>(context: &mut CTX, event: impl SolEvent) {
    context.journal_mut().log(Log { address: CONTRACT_VERSIONS_ADDRESS, data: event.encode_log_data() });
}

fn register<CTX: ContextTr>(
    context: &mut CTX,
    actor: Address,
    name: &str,
    version: &str,
    implementation: Address,
) -> Checked<()> {
    if let Err(reason) = check_name(name).and_then(|()| check_version(version)) {
        return Ok(Err(reason));
    }
    let alias = contract_alias(name);
    if journal(context).record(alias)?.is_some() {
        return Ok(Err(format!("{name} is already registered")));
    }
    let old = NAMES.read(context)?;
    if old.len() as u64 >= MAX_NAMES {
        return Ok(Err(format!("at most {MAX_NAMES} names")));
    }
    if let Err(reason) = check_implementation(context, implementation)? {
        return Ok(Err(reason));
    }
    let journal = context.journal_mut();
    let account = journal.load_account_with_code(CONTRACT_VERSIONS_ADDRESS).map_err(|e| e.to_string())?;
    if account.info.code.as_ref().is_none_or(Bytecode::is_empty) {
        journal.set_code(CONTRACT_VERSIONS_ADDRESS, Bytecode::new_raw(Bytes::from_static(SYSTEM_CONTRACT_MARKER_CODE)));
    }
    let mut new = old.clone();
    new.push(slots::from_address(alias));
    NAMES.write(context, &old, &new)?;
    slots::write_blob(context, CONTRACT_VERSIONS_ADDRESS, field_slot(alias, Field::Name), name.as_bytes())?;
    sstore(context, entry_slot(alias, 0, Entry::Implementation), slots::from_address(implementation))?;
    slots::write_blob(context, CONTRACT_VERSIONS_ADDRESS, entry_slot(alias, 0, Entry::Version), version.as_bytes())?;
    sstore(context, field_slot(alias, Field::Count), U256::from(1))?;
    sstore(context, field_slot(alias, Field::Stable), U256::from(1))?;
    let details = format!("{name} {version} at {implementation}, alias {alias}");
    audit::append(context, actor, "registerContract", &details)?;
    emit(
        context,
        IContractVersions::ContractRegistered {
            name: name.to_owned(),
            aliasAddress: alias,
            version: version.to_owned(),
            implementation,
        },
    );
    Ok(Ok(()))
}

fn start_release<CTX: ContextTr>(
    context: &mut CTX,
    actor: Address,
    args: IContractVersions::startReleaseCall,
) -> Checked<()> {
    let IContractVersions::startReleaseCall { name, version, implementation, shareBp: share } = args;
    let (alias, record) = match registered(context, &name)? {
        Ok(found) => found,
        Err(reason) => return Ok(Err(reason)),
    };
    if let Some(candidate) = record.candidate {
        let current = journal(context).version(alias, candidate)?.version;
        return Ok(Err(format!("the release of {name} {current} is in progress; promote or roll it back first")));
    }
    if let Err(reason) = check_version(&version).and_then(|()| check_share(share)) {
        return Ok(Err(reason));
    }
    if let Err(reason) = check_implementation(context, implementation)? {
        return Ok(Err(reason));
    }
    let history = journal(context).history(alias, &record)?;
    let index = match history.iter().enumerate().find(|(_, known)| known.version == version) {
        Some((index, _)) if index as u64 == record.stable => {
            return Ok(Err(format!("{name} {version} is the stable version")));
        }
        Some((_, known)) if known.implementation != implementation => {
            return Ok(Err(format!("{name} {version} was registered with implementation {}", known.implementation)));
        }
        // A version released before comes back with its own implementation.
        Some((index, _)) => index as u64,
        None => {
            if record.count >= MAX_VERSIONS {
                return Ok(Err(format!("{name} has {MAX_VERSIONS} versions, the most one name keeps")));
            }
            let index = record.count;
            sstore(context, entry_slot(alias, index, Entry::Implementation), slots::from_address(implementation))?;
            let slot = entry_slot(alias, index, Entry::Version);
            slots::write_blob(context, CONTRACT_VERSIONS_ADDRESS, slot, version.as_bytes())?;
            sstore(context, field_slot(alias, Field::Count), U256::from(index + 1))?;
            index
        }
    };
    sstore(context, field_slot(alias, Field::Candidate), U256::from(index + 1))?;
    sstore(context, field_slot(alias, Field::Share), U256::from(share))?;
    let details = format!("{name} {version} at {implementation} for {share} basis points");
    audit::append(context, actor, "startRelease", &details)?;
    emit(context, IContractVersions::ReleaseStarted { name, version, implementation, shareBp: share });
    Ok(Ok(()))
}

fn set_share<CTX: ContextTr>(context: &mut CTX, actor: Address, name: &str, share: u16) -> Checked<()> {
    let (alias, record, _, candidate) = match in_progress(context, name)? {
        Ok(found) => found,
        Err(reason) => return Ok(Err(reason)),
    };
    if let Err(reason) = check_share(share) {
        return Ok(Err(reason));
    }
    if share == record.share {
        return Ok(Err(format!("{name} {} already has {share} basis points", candidate.version)));
    }
    sstore(context, field_slot(alias, Field::Share), U256::from(share))?;
    let details = format!("{name} {}: {} -> {share} basis points", candidate.version, record.share);
    audit::append(context, actor, "setShare", &details)?;
    emit(
        context,
        IContractVersions::ShareChanged {
            name: name.to_owned(),
            version: candidate.version,
            fromShareBp: record.share,
            toShareBp: share,
        },
    );
    Ok(Ok(()))
}

/// Ends the release in progress: `promote` makes the candidate stable, otherwise it is dropped.
fn end_release<CTX: ContextTr>(context: &mut CTX, actor: Address, name: &str, promote: bool) -> Checked<()> {
    let (alias, _, index, candidate) = match in_progress(context, name)? {
        Ok(found) => found,
        Err(reason) => return Ok(Err(reason)),
    };
    if promote {
        sstore(context, field_slot(alias, Field::Stable), U256::from(index + 1))?;
    }
    sstore(context, field_slot(alias, Field::Candidate), U256::ZERO)?;
    sstore(context, field_slot(alias, Field::Share), U256::ZERO)?;
    let Version { version, implementation } = candidate;
    let (action, details) = if promote {
        ("promote", format!("{name} {version} at {implementation} is stable"))
    } else {
        ("rollback", format!("{name} {version} at {implementation} dropped"))
    };
    audit::append(context, actor, action, &details)?;
    let name = name.to_owned();
    if promote {
        emit(context, IContractVersions::ReleasePromoted { name, version, implementation });
    } else {
        emit(context, IContractVersions::ReleaseRolledBack { name, version, implementation });
    }
    Ok(Ok(()))
}

/// A change the committee asks for.
enum Change {
    Register(IContractVersions::registerCall),
    Start(IContractVersions::startReleaseCall),
    Share(IContractVersions::setShareCall),
    /// Promotes the candidate, or rolls it back.
    End {
        name: String,
        promote: bool,
    },
}

/// One call to the contract versions registry.
pub(super) fn versions_call<CTX: ContextTr>(
    context: &mut CTX,
    mut call: SystemCall<'_>,
) -> Result<InterpreterResult, String> {
    let decoded: IContractVersions::IContractVersionsCalls = match decode_call(&mut call, NAME) {
        Ok(decoded) => decoded,
        Err(refused) => return Ok(refused),
    };
    let refuse = |gas: Gas, reason: String| Ok(revert(gas, format!("{NAME}: {reason}")));
    use IContractVersions::IContractVersionsCalls as Call;
    let change = match decoded {
        Call::aliasOf(query) => return Ok(ok(call.gas, contract_alias(&query.name).abi_encode())),
        Call::names(_) => {
            let mut store = journal(context);
            let names = store.aliases()?.into_iter().map(|alias| store.name(alias)).collect::<Result<Vec<_>, _>>()?;
            return Ok(ok(call.gas, IContractVersions::namesCall::abi_encode_returns(&names)));
        }
        Call::resolve(query) => {
            if let Err(reason) = check_name(&query.name) {
                return refuse(call.gas, reason);
            }
            let Some(resolved) = journal(context).resolve(&query.name, query.account)? else {
                return refuse(call.gas, format!("no contract named {}", query.name));
            };
            let answer =
                IContractVersions::resolveReturn { implementation: resolved.implementation, version: resolved.version };
            return Ok(ok(call.gas, IContractVersions::resolveCall::abi_encode_returns(&answer)));
        }
        Call::versionsOf(query) => {
            if let Err(reason) = check_name(&query.name) {
                return refuse(call.gas, reason);
            }
            let Some(release) = journal(context).release(&query.name)? else {
                return refuse(call.gas, format!("no contract named {}", query.name));
            };
            let release = IContractVersions::Release::from(release);
            return Ok(ok(call.gas, IContractVersions::versionsOfCall::abi_encode_returns(&release)));
        }
        Call::register(args) => Change::Register(args),
        Call::startRelease(args) => Change::Start(args),
        Call::setShare(args) => Change::Share(args),
        Call::promote(args) => Change::End { name: args.name, promote: true },
        Call::rollback(args) => Change::End { name: args.name, promote: false },
    };
    if let Err(refused) = begin_change(&mut call, NAME).and_then(|()| governance_only(&call, NAME)) {
        return Ok(refused);
    }
    let actor = call.caller;
    let outcome = match change {
        Change::Register(args) => register(context, actor, &args.name, &args.version, args.implementation)?,
        Change::Start(args) => start_release(context, actor, args)?,
        Change::Share(args) => set_share(context, actor, &args.name, args.shareBp)?,
        Change::End { name, promote } => end_release(context, actor, &name, promote)?,
    };
    match outcome {
        Ok(()) => Ok(ok(call.gas, 0i32.abi_encode())),
        Err(reason) => refuse(call.gas, reason),
    }
}
