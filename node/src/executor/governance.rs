//! The governance contract, run natively at [`GOVERNANCE_ADDRESS`]: the committee governs the
//! chain by threshold vote.
//!
//! A member proposes a call of a system contract; the proposer's approval counts at once, and
//! every further member votes once. When the approvals of current members reach the threshold,
//! the call runs in that same transaction with this contract as its caller (the authority the
//! other system contracts require for committee changes). A call that reverts leaves the
//! proposal `Failed` with the reason while the vote itself succeeds; a call that runs out of gas
//! fails the whole vote instead, so too little gas cannot spoil a proposal. Once enough members
//! rejected that the threshold is out of reach, the proposal is `Rejected`. Votes are taken up to
//! and including the proposal's `expiresAtBlock`; later ones revert. Pending proposals past their
//! last block are marked `Expired` by the next proposal or vote.
//!
//! Storage layout (slots named as in [`super::slots`]):
//! - the committee as a list `governance.members` (addresses) and `governance.threshold`;
//! - `governance.proposals.count`, the latest proposal id (ids count from 1);
//! - proposal `id` from the slot `keccak256("bcos.governance.proposal." + id as 32 bytes)` on:
//!   proposer, target, creation block, last voting block, status, then the call data and the
//!   failure reason as byte strings;
//! - each member's vote at `keccak256("bcos.governance.vote." + id as 32 bytes + member)`:
//!   1 approve, 2 reject;
//! - the ids of pending proposals as a list `governance.pending`, bounded by [`MAX_PENDING`];
//! - the audit log ([`super::audit`]).

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolEvent, SolInterface, SolValue};
use bcos_sdk::{
    config::Committee,
    types::system::{
        CERT_REVOCATION_ADDRESS, CONTRACT_VERSIONS_ADDRESS, GOVERNANCE_ADDRESS, ICertRevocation, IContractVersions,
        IGovernance, INodeRegistry, IPermissions, ISystemConfig, NODE_REGISTRY_ADDRESS, PERMISSIONS_ADDRESS, Role,
        SYSTEM_CONFIG_ADDRESS,
    },
};
use revm::{
    context::{ContextTr, JournalTr},
    interpreter::{Gas, InterpreterResult},
    primitives::Log,
};

use super::{
    audit, decode_revert,
    features::Feature,
    permissions::has_role,
    slots::{self, SlotList, bounded},
    system::{
        SystemCall, WRITE_GAS, begin_change, block_number, compatibility_version, contract_name, decode_call,
        governance_only, handler, ok, out_of_gas, revert,
    },
};

use IGovernance::ProposalStatus as Status;

const NAME: &str = "governance";

/// Most proposals pending at once; bounds the expiry sweep each proposal and vote makes.
pub const MAX_PENDING: u64 = 100;

/// Longest call data a proposal may carry (system contract calls are short).
const MAX_PROPOSAL_DATA: usize = 4096;

/// Longest failure reason a proposal keeps.
const MAX_RESULT: usize = 512;

const MEMBERS: SlotList =
    SlotList { address: GOVERNANCE_ADDRESS, name: "governance.members", max: Committee::MAX_MEMBERS as u64 };
const PENDING: SlotList = SlotList { address: GOVERNANCE_ADDRESS, name: "governance.pending", max: MAX_PENDING };

const APPROVE: u64 = 1;
const REJECT: u64 = 2;

/// The fields of a stored proposal, in slot order.
#[derive(Debug, Clone, Copy)]
enum Field {
    Proposer = 0,
    Target = 1,
    Created = 2,
    Expires = 3,
    Status = 4,
    Data = 5,
    Result = 6,
}

fn threshold_slot() -> U256 {
    slots::named("governance.threshold")
}

fn count_slot() -> U256 {
    slots::named("governance.proposals.count")
}

fn proposal_slot(id: u64, field: Field) -> U256 {
    slots::keyed("governance.proposal.", &U256::from(id).to_be_bytes::<32>()).wrapping_add(U256::from(field as u64))
}

fn vote_slot(id: u64, voter: &Address) -> U256 {
    let mut key = U256::from(id).to_be_bytes::<32>().to_vec();
    key.extend_from_slice(voter.as_slice());
    slots::keyed("governance.vote.", &key)
}

/// Storage of the governance contract at genesis.
pub fn genesis_storage(committee: &Committee) -> Vec<(U256, U256)> {
    let members: Vec<U256> = committee.members.iter().copied().map(slots::from_address).collect();
    let mut slots = MEMBERS.genesis(&members);
    slots.push((threshold_slot(), U256::from(committee.threshold)));
    slots
}

/// Why a governance call stopped early: a refusal answered to the caller (a revert, or out of
/// gas), or a database failure that aborts the block.
enum Stop {
    Refused(InterpreterResult),
    Failed(String),
}

impl From<String> for Stop {
    fn from(error: String) -> Self {
        Self::Failed(error)
    }
}

type Outcome<T> = Result<T, Stop>;

fn refuse<T>(gas: &Gas, reason: String) -> Outcome<T> {
    Err(Stop::Refused(revert(*gas, format!("{NAME}: {reason}"))))
}

fn charge(gas: &mut Gas, cost: u64) -> Outcome<()> {
    if gas.record_regular_cost(cost) { Ok(()) } else { Err(Stop::Refused(out_of_gas(*gas))) }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Executed => "executed",
        Status::Failed => "failed",
        Status::Rejected => "rejected",
        Status::Expired => "expired",
        _ => "in an unknown state",
    }
}

fn members<CTX: ContextTr>(context: &mut CTX) -> Result<Vec<Address>, String> {
    Ok(MEMBERS.read(context)?.into_iter().map(slots::to_address).collect())
}

fn threshold<CTX: ContextTr>(context: &mut CTX) -> Result<u64, String> {
    Ok(slots::sload(context, GOVERNANCE_ADDRESS, threshold_slot())?.saturating_to())
}

/// The function a proposal's call data names on `target`, if `target` is a system contract and
/// the data decodes as one of its calls.
fn call_signature(target: Address, data: &[u8]) -> Option<&'static str> {
    macro_rules! signature {
        ($calls:ty) => {
            <$calls>::abi_decode(data).ok().and_then(|call| <$calls>::signature_by_selector(call.selector()))
        };
    }
    match target {
        SYSTEM_CONFIG_ADDRESS => signature!(ISystemConfig::ISystemConfigCalls),
        NODE_REGISTRY_ADDRESS => signature!(INodeRegistry::INodeRegistryCalls),
        PERMISSIONS_ADDRESS => signature!(IPermissions::IPermissionsCalls),
        GOVERNANCE_ADDRESS => signature!(IGovernance::IGovernanceCalls),
        CERT_REVOCATION_ADDRESS => signature!(ICertRevocation::ICertRevocationCalls),
        CONTRACT_VERSIONS_ADDRESS => signature!(IContractVersions::IContractVersionsCalls),
        _ => None,
    }
}

/// A proposal as stored.
struct Stored {
    proposer: Address,
    target: Address,
    created: u64,
    expires: u64,
    status: Status,
}

/// Proposal `id`, if it exists.
fn load<CTX: ContextTr>(context: &mut CTX, id: u64) -> Result<Option<Stored>, String> {
    let count: u64 = slots::sload(context, GOVERNANCE_ADDRESS, count_slot())?.saturating_to();
    if id == 0 || id > count {
        return Ok(None);
    }
    let mut field = |field| slots::sload(context, GOVERNANCE_ADDRESS, proposal_slot(id, field));
    let proposer = slots::to_address(field(Field::Proposer)?);
    let target = slots::to_address(field(Field::Target)?);
    let created = field(Field::Created)?.saturating_to();
    let expires = field(Field::Expires)?.saturating_to();
    let code: u8 = field(Field::Status)?.saturating_to();
    let status = Status::try_from(code).map_err(|_| format!("corrupt status {code} of proposal {id}"))?;
    Ok(Some(Stored { proposer, target, created, expires, status }))
}

fn set_status<CTX: ContextTr>(context: &mut CTX, id: u64, status: Status) -> Result<(), String> {
    slots::sstore(context, GOVERNANCE_ADDRESS, proposal_slot(id, Field::Status), U256::from(u8::from(status)))
}

fn log<CTX: ContextTr>(context: &mut CTX, event: impl SolEvent) {
    context.journal_mut().log(Log { address: GOVERNANCE_ADDRESS, data: event.encode_log_data() });
}

/// Approvals and rejections of proposal `id` among `members`.
fn tally<CTX: ContextTr>(context: &mut CTX, id: u64, members: &[Address]) -> Result<(u64, u64), String> {
    let (mut approvals, mut rejections) = (0, 0);
    for member in members {
        match slots::sload(context, GOVERNANCE_ADDRESS, vote_slot(id, member))?.saturating_to::<u64>() {
            APPROVE => approvals += 1,
            REJECT => rejections += 1,
            _ => {}
        }
    }
    Ok((approvals, rejections))
}

fn remove_pending<CTX: ContextTr>(context: &mut CTX, id: u64) -> Result<(), String> {
    let old = PENDING.read(context)?;
    let new: Vec<U256> = old.iter().copied().filter(|pending| *pending != U256::from(id)).collect();
    PENDING.write(context, &old, &new)
}

/// Marks pending proposals whose last voting block is before `height` as expired.
fn sweep_expired<CTX: ContextTr>(context: &mut CTX, gas: &mut Gas, height: u64) -> Outcome<()> {
    let old = PENDING.read(context)?;
    let mut kept = Vec::with_capacity(old.len());
    for value in &old {
        let id: u64 = value.saturating_to();
        let expires: u64 =
            slots::sload(context, GOVERNANCE_ADDRESS, proposal_slot(id, Field::Expires))?.saturating_to();
        if height <= expires {
            kept.push(*value);
            continue;
        }
        charge(gas, WRITE_GAS)?;
        set_status(context, id, Status::Expired)?;
        log(context, IGovernance::ProposalExpired { id: U256::from(id) });
        audit::append(
            context,
            GOVERNANCE_ADDRESS,
            "expire",
            &format!("proposal {id}: no decision by block {expires}"),
        )?;
    }
    if kept.len() != old.len() {
        PENDING.write(context, &old, &kept)?;
    }
    Ok(())
}

/// Decides proposal `id` after a vote by `actor`: carries it out once the approvals reach the
/// threshold, rejects it once they no longer can.
fn decide<CTX: ContextTr>(
    context: &mut CTX,
    gas: &mut Gas,
    id: u64,
    members: &[Address],
    actor: Address,
) -> Outcome<Status> {
    let threshold = threshold(context)?;
    let (approvals, rejections) = tally(context, id, members)?;
    if approvals >= threshold {
        return execute(context, gas, id, actor);
    }
    if (members.len() as u64).saturating_sub(rejections) < threshold {
        set_status(context, id, Status::Rejected)?;
        remove_pending(context, id)?;
        log(context, IGovernance::ProposalRejected { id: U256::from(id) });
        let details = format!("proposal {id}: {rejections} rejections, the threshold {threshold} is out of reach");
        audit::append(context, actor, "reject", &details)?;
        return Ok(Status::Rejected);
    }
    Ok(Status::Pending)
}

/// Runs proposal `id`'s call with this contract as the caller, undoing the call's changes if it
/// reverts.
fn execute<CTX: ContextTr>(context: &mut CTX, gas: &mut Gas, id: u64, actor: Address) -> Outcome<Status> {
    let target = slots::to_address(slots::sload(context, GOVERNANCE_ADDRESS, proposal_slot(id, Field::Target))?);
    let data = slots::read_blob(context, GOVERNANCE_ADDRESS, proposal_slot(id, Field::Data))?;
    let checkpoint = context.journal_mut().checkpoint();
    let result = match handler::<CTX>(target) {
        Some(call) => call(context, SystemCall::from_governance(gas.remaining(), &data))?,
        // Targets are checked on proposal; only a corrupt store gets here.
        None => revert(*gas, format!("{target} is not a system contract")),
    };
    let spent = gas.remaining().saturating_sub(result.gas.remaining());
    let outcome = if result.result.is_ok() {
        context.journal_mut().checkpoint_commit();
        Status::Executed
    } else {
        context.journal_mut().checkpoint_revert(checkpoint);
        if !result.result.is_revert() {
            // Out of gas (or another halt): the whole vote fails, so it can be cast again with
            // more gas.
            return Err(Stop::Refused(out_of_gas(*gas)));
        }
        Status::Failed
    };
    charge(gas, spent)?;
    set_status(context, id, outcome)?;
    remove_pending(context, id)?;
    if outcome == Status::Executed {
        log(context, IGovernance::ProposalExecuted { id: U256::from(id) });
        let signature = call_signature(target, &data).unwrap_or("an unknown function");
        let details = format!("proposal {id}: {} {signature}", contract_name(target));
        audit::append(context, actor, "execute", &details)?;
    } else {
        let reason = decode_revert(&result.output).unwrap_or_else(|| "reverted without a reason".into());
        let reason = bounded(&reason, MAX_RESULT);
        slots::write_blob(context, GOVERNANCE_ADDRESS, proposal_slot(id, Field::Result), reason.as_bytes())?;
        log(context, IGovernance::ProposalFailed { id: U256::from(id), reason: reason.clone() });
        audit::append(context, actor, "fail", &format!("proposal {id}: {reason}"))?;
    }
    Ok(outcome)
}

/// The committee, refusing `caller` unless it is a member.
fn require_member<CTX: ContextTr>(context: &mut CTX, gas: &Gas, caller: Address) -> Outcome<Vec<Address>> {
    let members = members(context)?;
    if !members.contains(&caller) {
        return refuse(gas, format!("{caller} is not a committee member"));
    }
    Ok(members)
}

fn propose<CTX: ContextTr>(
    context: &mut CTX,
    call: &mut SystemCall<'_>,
    args: IGovernance::proposeCall,
) -> Outcome<Vec<u8>> {
    let gas = &mut call.gas;
    let members = require_member(context, gas, call.caller)?;
    let height = block_number(context);
    let IGovernance::proposeCall { target, data, expiresAtBlock: expires } = args;
    if data.len() > MAX_PROPOSAL_DATA {
        return refuse(gas, format!("call data of {} bytes; at most {MAX_PROPOSAL_DATA}", data.len()));
    }
    if target == CONTRACT_VERSIONS_ADDRESS {
        // Refused at the same point, with the same gas, as older nodes refuse an address that is
        // no system contract to them; only the reason says more.
        let version = compatibility_version(context)?;
        let feature = Feature::ContractRouting;
        if !feature.enabled(version) {
            return refuse(
                gas,
                format!(
                    "the contract versions registry needs compatibility_version {} or later; the chain runs {version}",
                    feature.since()
                ),
            );
        }
    }
    let Some(signature) = call_signature(target, &data) else {
        if handler::<CTX>(target).is_none() {
            return refuse(gas, format!("{target} is not a system contract"));
        }
        return refuse(gas, format!("the data is not a call of the {} contract", contract_name(target)));
    };
    if expires < height {
        return refuse(gas, format!("expiresAtBlock {expires} is before the current block {height}"));
    }
    sweep_expired(context, gas, height)?;
    let old_pending = PENDING.read(context)?;
    if old_pending.len() as u64 >= MAX_PENDING {
        return refuse(gas, format!("{MAX_PENDING} proposals are pending; decide some or let them expire"));
    }
    let id: u64 = slots::sload(context, GOVERNANCE_ADDRESS, count_slot())?.saturating_to::<u64>() + 1;
    let fields = [
        (Field::Proposer, slots::from_address(call.caller)),
        (Field::Target, slots::from_address(target)),
        (Field::Created, U256::from(height)),
        (Field::Expires, U256::from(expires)),
        (Field::Status, U256::from(u8::from(Status::Pending))),
    ];
    for (field, value) in fields {
        slots::sstore(context, GOVERNANCE_ADDRESS, proposal_slot(id, field), value)?;
    }
    slots::write_blob(context, GOVERNANCE_ADDRESS, proposal_slot(id, Field::Data), &data)?;
    slots::sstore(context, GOVERNANCE_ADDRESS, count_slot(), U256::from(id))?;
    let mut new_pending = old_pending.clone();
    new_pending.push(U256::from(id));
    PENDING.write(context, &old_pending, &new_pending)?;
    slots::sstore(context, GOVERNANCE_ADDRESS, vote_slot(id, &call.caller), U256::from(APPROVE))?;
    log(
        context,
        IGovernance::ProposalCreated { id: U256::from(id), proposer: call.caller, target, expiresAtBlock: expires },
    );
    log(context, IGovernance::Voted { id: U256::from(id), voter: call.caller, approve: true });
    let details = format!("proposal {id}: {} {signature}, votes until block {expires}", contract_name(target));
    audit::append(context, call.caller, "propose", &details)?;
    decide(context, gas, id, &members, call.caller)?;
    Ok(U256::from(id).abi_encode())
}

fn vote<CTX: ContextTr>(context: &mut CTX, call: &mut SystemCall<'_>, args: IGovernance::voteCall) -> Outcome<Vec<u8>> {
    let gas = &mut call.gas;
    let members = require_member(context, gas, call.caller)?;
    let height = block_number(context);
    let stored = match u64::try_from(args.id) {
        Ok(id) => load(context, id)?.map(|stored| (id, stored)),
        Err(_) => None,
    };
    let Some((id, stored)) = stored else {
        return refuse(gas, format!("no proposal {}", args.id));
    };
    // Expired whether or not a later proposal or vote has marked it so yet.
    let expired = stored.status == Status::Pending && height > stored.expires;
    if expired || stored.status == Status::Expired {
        return refuse(gas, format!("proposal {id} expired after block {}", stored.expires));
    }
    if stored.status != Status::Pending {
        return refuse(gas, format!("proposal {id} is already {}", status_name(stored.status)));
    }
    if !slots::sload(context, GOVERNANCE_ADDRESS, vote_slot(id, &call.caller))?.is_zero() {
        return refuse(gas, format!("{} already voted on proposal {id}", call.caller));
    }
    sweep_expired(context, gas, height)?;
    let choice = if args.approve { APPROVE } else { REJECT };
    slots::sstore(context, GOVERNANCE_ADDRESS, vote_slot(id, &call.caller), U256::from(choice))?;
    log(context, IGovernance::Voted { id: U256::from(id), voter: call.caller, approve: args.approve });
    let details = format!("proposal {id}: {}", if args.approve { "approve" } else { "reject" });
    audit::append(context, call.caller, "vote", &details)?;
    let status = decide(context, gas, id, &members, call.caller)?;
    Ok(IGovernance::voteCall::abi_encode_returns(&status))
}

fn view_proposal<CTX: ContextTr>(context: &mut CTX, gas: &Gas, id: U256) -> Outcome<Vec<u8>> {
    let stored = match u64::try_from(id) {
        Ok(id) => load(context, id)?.map(|stored| (id, stored)),
        Err(_) => None,
    };
    let Some((id, stored)) = stored else {
        return refuse(gas, format!("no proposal {id}"));
    };
    let members = members(context)?;
    let (approvals, rejections) = tally(context, id, &members)?;
    let expired = stored.status == Status::Pending && block_number(context) > stored.expires;
    let data = slots::read_blob(context, GOVERNANCE_ADDRESS, proposal_slot(id, Field::Data))?;
    let result = slots::read_blob(context, GOVERNANCE_ADDRESS, proposal_slot(id, Field::Result))?;
    let proposal = IGovernance::Proposal {
        id: U256::from(id),
        proposer: stored.proposer,
        target: stored.target,
        data: Bytes::from(data),
        createdAtBlock: stored.created,
        expiresAtBlock: stored.expires,
        status: if expired { Status::Expired } else { stored.status },
        approvals: approvals as u32,
        rejections: rejections as u32,
        result: String::from_utf8_lossy(&result).into_owned(),
    };
    Ok(IGovernance::proposalCall::abi_encode_returns(&proposal))
}

/// Refuses `caller` unless it may read the audit log: committee members, regulators, auditors.
fn require_audit_reader<CTX: ContextTr>(context: &mut CTX, gas: &Gas, caller: Address) -> Outcome<()> {
    if members(context)?.contains(&caller)
        || has_role(context, &caller, Role::Regulator)?
        || has_role(context, &caller, Role::Auditor)?
    {
        return Ok(());
    }
    refuse(gas, format!("{caller} may not read the audit log (committee members, regulators and auditors only)"))
}

/// A change of the committee.
enum CommitteeChange {
    Add(Address),
    Remove(Address),
    Threshold(u32),
}

/// A change of the committee, made through a proposal.
fn change_committee<CTX: ContextTr>(
    context: &mut CTX,
    call: &mut SystemCall<'_>,
    change: CommitteeChange,
) -> Outcome<Vec<u8>> {
    begin_change(call, NAME).and_then(|()| governance_only(call, NAME)).map_err(Stop::Refused)?;
    let gas = &call.gas;
    let old = MEMBERS.read(context)?;
    let members: Vec<Address> = old.iter().copied().map(slots::to_address).collect();
    let threshold = threshold(context)?;
    match change {
        CommitteeChange::Add(member) => {
            if member.is_zero() {
                return refuse(gas, "the zero address cannot be a member".into());
            }
            if members.contains(&member) {
                return refuse(gas, format!("{member} is already a committee member"));
            }
            if members.len() >= Committee::MAX_MEMBERS {
                return refuse(gas, format!("at most {} committee members", Committee::MAX_MEMBERS));
            }
            let mut new = old.clone();
            new.push(slots::from_address(member));
            MEMBERS.write(context, &old, &new)?;
            log(context, IGovernance::MemberAdded { member });
            audit::append(context, call.caller, "addMember", &member.to_string())?;
        }
        CommitteeChange::Remove(member) => {
            let Some(index) = members.iter().position(|m| *m == member) else {
                return refuse(gas, format!("{member} is not a committee member"));
            };
            let left = members.len() as u64 - 1;
            if left < threshold {
                return refuse(
                    gas,
                    format!("removing {member} would leave {left} members, fewer than the threshold {threshold}"),
                );
            }
            let mut new = old.clone();
            new.remove(index);
            MEMBERS.write(context, &old, &new)?;
            log(context, IGovernance::MemberRemoved { member });
            audit::append(context, call.caller, "removeMember", &member.to_string())?;
        }
        CommitteeChange::Threshold(new) => {
            if new == 0 || new as usize > members.len() {
                return refuse(
                    gas,
                    format!("the threshold must be between 1 and {} (the committee size)", members.len()),
                );
            }
            slots::sstore(context, GOVERNANCE_ADDRESS, threshold_slot(), U256::from(new))?;
            log(context, IGovernance::ThresholdChanged { threshold: new });
            audit::append(context, call.caller, "setThreshold", &format!("{threshold} -> {new}"))?;
        }
    }
    Ok(0i32.abi_encode())
}

/// One call to the governance contract.
pub(super) fn governance_call<CTX: ContextTr>(
    context: &mut CTX,
    mut call: SystemCall<'_>,
) -> Result<InterpreterResult, String> {
    let decoded: IGovernance::IGovernanceCalls = match decode_call(&mut call, NAME) {
        Ok(decoded) => decoded,
        Err(refused) => return Ok(refused),
    };
    use IGovernance::IGovernanceCalls as Call;
    let outcome = match decoded {
        Call::proposal(query) => view_proposal(context, &call.gas, query.id),
        Call::proposalCount(_) => {
            slots::sload(context, GOVERNANCE_ADDRESS, count_slot()).map(|count| count.abi_encode()).map_err(Stop::from)
        }
        Call::committee(_) => members(context).map(|members| members.abi_encode()).map_err(Stop::from),
        Call::threshold(_) => threshold(context).map(|t| (t as u32).abi_encode()).map_err(Stop::from),
        Call::auditLogLength(_) => require_audit_reader(context, &call.gas, call.caller)
            .and_then(|()| Ok(U256::from(audit::len(context)?).abi_encode())),
        Call::auditLog(query) => require_audit_reader(context, &call.gas, call.caller).and_then(|()| {
            let entries = audit::read(context, query.start.saturating_to(), query.count.saturating_to())?;
            Ok(IGovernance::auditLogCall::abi_encode_returns(&entries))
        }),
        Call::propose(args) => {
            begin_change(&mut call, NAME).map_err(Stop::Refused).and_then(|()| propose(context, &mut call, args))
        }
        Call::vote(args) => {
            begin_change(&mut call, NAME).map_err(Stop::Refused).and_then(|()| vote(context, &mut call, args))
        }
        Call::addMember(add) => change_committee(context, &mut call, CommitteeChange::Add(add.member)),
        Call::removeMember(remove) => change_committee(context, &mut call, CommitteeChange::Remove(remove.member)),
        Call::setThreshold(set) => change_committee(context, &mut call, CommitteeChange::Threshold(set.newThreshold)),
    };
    match outcome {
        Ok(output) => Ok(ok(call.gas, output)),
        Err(Stop::Refused(refused)) => Ok(refused),
        Err(Stop::Failed(error)) => Err(error),
    }
}
