//! The committee's proposals and votes, the authority of each system contract, roles and the
//! permission checks of the pool and the executor, the audit log and the revocation list.

use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_sol_types::SolCall;
use bcos_sdk::{
    config::Permissions,
    crypto::AccountKey,
    pki::Serial,
    types::{
        RecoveredTx, StoredReceipt,
        system::{
            CERT_REVOCATION_ADDRESS, GOVERNANCE_ADDRESS, ICertRevocation, IGovernance, INodeRegistry, IPermissions,
            NODE_REGISTRY_ADDRESS, PERMISSIONS_ADDRESS, Role, SYSTEM_CONFIG_ADDRESS,
        },
    },
};

use super::{
    PermissionDenied, read_revoked,
    tests::{
        CHAIN_ID, Fixture, commit, erc20_create, events, execute, execute_and_commit, fixture, fixture_with, propose,
        propose_until, raw, reasons, set_config, signed, view, vote,
    },
};
use crate::txpool::PoolErrorKind;

use IGovernance::ProposalStatus as Status;

fn grant(account: Address, role: &str) -> IPermissions::grantRoleCall {
    IPermissions::grantRoleCall { account, role: role.into() }
}

fn revoke_role(account: Address, role: &str) -> IPermissions::revokeRoleCall {
    IPermissions::revokeRoleCall { account, role: role.into() }
}

fn permissions(enabled: bool, roles: &[(Address, &[Role])]) -> Permissions {
    Permissions { enabled, roles: roles.iter().map(|(account, roles)| (*account, roles.to_vec())).collect() }
}

fn proposal(f: &Fixture, id: u64) -> IGovernance::Proposal {
    view(f, f.admin.address(), GOVERNANCE_ADDRESS, IGovernance::proposalCall { id: U256::from(id) }).expect("proposal")
}

fn has_role(f: &Fixture, account: Address, role: &str) -> Result<bool, String> {
    view(f, Address::ZERO, PERMISSIONS_ADDRESS, IPermissions::hasRoleCall { account, role: role.into() })
}

fn audit_log(f: &Fixture, reader: Address) -> Result<Vec<IGovernance::AuditEntry>, String> {
    view(f, reader, GOVERNANCE_ADDRESS, IGovernance::auditLogCall { start: U256::ZERO, count: U256::from(100) })
}

/// The reason a proposal's call failed in `receipt`, if it did.
fn failure(receipt: &StoredReceipt) -> Option<String> {
    events::<IGovernance::ProposalFailed>(receipt).pop().map(|failed| failed.reason)
}

fn not_governance(contract: &str, caller: Address) -> Option<String> {
    Some(format!("{contract}: {caller} is not the governance contract; this change needs a committee proposal"))
}

#[test]
fn a_proposal_runs_in_the_vote_that_brings_its_approvals_to_the_threshold() {
    let f = fixture_with(3, 2, Permissions::default());
    let [a, b, c] = [&f.members[0], &f.members[1], &f.members[2]];
    let account = Address::repeat_byte(0x42);

    let executed = execute_and_commit(&f, vec![propose(a, 0, PERMISSIONS_ADDRESS, grant(account, "deployer"))]);
    assert_eq!(reasons(&executed), vec![None]);
    let created = events::<IGovernance::ProposalCreated>(&executed.receipts[0]);
    assert_eq!(
        (created[0].id, created[0].proposer, created[0].target),
        (U256::from(1), a.address(), PERMISSIONS_ADDRESS)
    );
    assert!(events::<IGovernance::ProposalExecuted>(&executed.receipts[0]).is_empty(), "one approval of two");
    let pending = proposal(&f, 1);
    assert_eq!((pending.status, pending.approvals, pending.rejections), (Status::Pending, 1, 0));
    assert_eq!(has_role(&f, account, "deployer"), Ok(false));

    let executed = execute_and_commit(&f, vec![vote(b, 0, 1, true), vote(c, 0, 1, true)]);
    assert_eq!(reasons(&executed), vec![None, Some("governance: proposal 1 is already executed".into())]);
    assert_eq!(events::<IPermissions::RoleGranted>(&executed.receipts[0]).len(), 1, "granted in the second vote");
    assert_eq!(events::<IGovernance::ProposalExecuted>(&executed.receipts[0]).len(), 1);
    let done = proposal(&f, 1);
    assert_eq!((done.status, done.approvals, done.result.as_str()), (Status::Executed, 2, ""));
    assert_eq!(has_role(&f, account, "deployer"), Ok(true));
}

#[test]
fn rejections_that_put_the_threshold_out_of_reach_reject_a_proposal() {
    let f = fixture_with(3, 2, Permissions::default());
    let [a, b, c] = [&f.members[0], &f.members[1], &f.members[2]];
    let account = Address::repeat_byte(0x42);
    let executed = execute_and_commit(
        &f,
        vec![propose(a, 0, PERMISSIONS_ADDRESS, grant(account, "deployer")), vote(b, 0, 1, false), vote(a, 1, 1, true)],
    );
    assert_eq!(reasons(&executed)[2], Some(format!("governance: {} already voted on proposal 1", a.address())));
    assert!(events::<IGovernance::ProposalRejected>(&executed.receipts[1]).is_empty(), "two members may still approve");
    assert_eq!(proposal(&f, 1).status, Status::Pending);

    let executed = execute_and_commit(&f, vec![vote(c, 0, 1, false)]);
    assert_eq!(events::<IGovernance::ProposalRejected>(&executed.receipts[0]).len(), 1);
    let rejected = proposal(&f, 1);
    assert_eq!((rejected.status, rejected.approvals, rejected.rejections), (Status::Rejected, 1, 2));
    assert_eq!(has_role(&f, account, "deployer"), Ok(false));
}

#[test]
fn votes_after_the_last_block_revert_and_the_next_proposal_marks_it_expired() {
    let f = fixture_with(3, 2, Permissions::default());
    let [a, b] = [&f.members[0], &f.members[1]];
    let data = set_config("max_txs_per_block", "7").abi_encode();
    // Block 1 is the proposal's last voting block.
    execute_and_commit(&f, vec![propose_until(a, 0, SYSTEM_CONFIG_ADDRESS, data.clone(), 1)]);
    assert_eq!(proposal(&f, 1).status, Status::Expired, "reported expired once its last block passed");

    let executed =
        execute_and_commit(&f, vec![vote(b, 0, 1, true), propose_until(a, 1, SYSTEM_CONFIG_ADDRESS, data.clone(), 1)]);
    assert_eq!(
        reasons(&executed),
        vec![
            Some("governance: proposal 1 expired after block 1".into()),
            Some("governance: expiresAtBlock 1 is before the current block 2".into()),
        ]
    );
    let executed =
        execute_and_commit(&f, vec![propose_until(a, 2, SYSTEM_CONFIG_ADDRESS, data, 10), vote(b, 1, 1, true)]);
    let expired = events::<IGovernance::ProposalExpired>(&executed.receipts[0]);
    assert_eq!(expired.iter().map(|e| e.id).collect::<Vec<_>>(), vec![U256::from(1)], "swept by the next proposal");
    assert_eq!(reasons(&executed)[1].as_deref(), Some("governance: proposal 1 expired after block 1"));
    assert_eq!(proposal(&f, 1).status, Status::Expired);
    assert_eq!(proposal(&f, 2).status, Status::Pending);
    let log = audit_log(&f, a.address()).expect("a member reads the log");
    let expiry = log.iter().find(|entry| entry.action == "expire").expect("expiry recorded");
    assert_eq!((expiry.blockNumber, expiry.details.as_str()), (3, "proposal 1: no decision by block 1"));
    assert_eq!(f.chain().system_config().max_txs_per_block, 10_000, "never applied");
}

#[test]
fn a_proposal_whose_call_reverts_fails_with_the_reason_and_the_vote_stands() {
    let f = fixture_with(3, 2, Permissions::default());
    let [a, b] = [&f.members[0], &f.members[1]];
    let account = Address::repeat_byte(0x42);
    let executed =
        execute_and_commit(&f, vec![propose(a, 0, PERMISSIONS_ADDRESS, grant(account, "king")), vote(b, 0, 1, true)]);
    assert_eq!(reasons(&executed), vec![None, None], "the vote succeeds");
    let reason = failure(&executed.receipts[1]).expect("failed");
    assert!(reason.starts_with("permissions: unknown role \"king\""), "{reason}");
    assert!(events::<IPermissions::RoleGranted>(&executed.receipts[1]).is_empty());
    let failed = proposal(&f, 1);
    assert_eq!((failed.status, failed.result), (Status::Failed, reason.clone()));
    let log = audit_log(&f, a.address()).expect("log");
    let last = log.last().expect("entries");
    assert_eq!((last.action.as_str(), last.actor), ("fail", b.address()));
    assert_eq!(last.details, format!("proposal 1: {reason}"));
}

#[test]
fn only_committee_members_propose_and_vote_and_only_calls_of_system_contracts() {
    let f = fixture_with(3, 2, Permissions::default());
    let a = &f.members[0];
    let stranger = AccountKey::generate();
    let not_a_contract = Address::repeat_byte(9);
    let executed = execute(
        &f,
        vec![
            propose(&stranger, 0, SYSTEM_CONFIG_ADDRESS, set_config("max_txs_per_block", "7")),
            propose(a, 0, not_a_contract, set_config("max_txs_per_block", "7")),
            propose(a, 1, NODE_REGISTRY_ADDRESS, set_config("max_txs_per_block", "7")),
            propose(a, 2, SYSTEM_CONFIG_ADDRESS, set_config("max_txs_per_block", "7")),
            vote(&stranger, 1, 1, true),
            vote(a, 3, 99, true),
        ],
    );
    let not_member = Some(format!("governance: {} is not a committee member", stranger.address()));
    assert_eq!(
        reasons(&executed),
        vec![
            not_member.clone(),
            Some(format!("governance: {not_a_contract} is not a system contract")),
            Some("governance: the data is not a call of the node registry contract".into()),
            None,
            not_member,
            Some("governance: no proposal 99".into()),
        ]
    );
}

#[test]
fn the_committee_changes_only_through_its_own_proposals_and_keeps_its_threshold_reachable() {
    let f = fixture_with(3, 2, Permissions::default());
    let [a, b, c] = [&f.members[0], &f.members[1], &f.members[2]];
    let d = AccountKey::generate();
    let add = IGovernance::addMemberCall { member: d.address() };
    let executed = execute_and_commit(
        &f,
        vec![
            signed(a, 0, TxKind::Call(GOVERNANCE_ADDRESS), 0, add.abi_encode()),
            propose(a, 1, GOVERNANCE_ADDRESS, add),
            vote(b, 0, 1, true),
        ],
    );
    assert_eq!(reasons(&executed), vec![not_governance("governance", a.address()), None, None]);
    assert_eq!(events::<IGovernance::MemberAdded>(&executed.receipts[2])[0].member, d.address());
    let committee = view(&f, d.address(), GOVERNANCE_ADDRESS, IGovernance::committeeCall {}).expect("committee");
    assert_eq!(committee, vec![a.address(), b.address(), c.address(), d.address()]);

    let executed = execute_and_commit(
        &f,
        vec![
            propose(a, 2, GOVERNANCE_ADDRESS, IGovernance::setThresholdCall { newThreshold: 5 }),
            vote(b, 1, 2, true),
            propose(a, 3, GOVERNANCE_ADDRESS, IGovernance::setThresholdCall { newThreshold: 4 }),
            vote(&d, 0, 3, true),
        ],
    );
    assert_eq!(
        failure(&executed.receipts[1]).as_deref(),
        Some("governance: the threshold must be between 1 and 4 (the committee size)")
    );
    assert_eq!(events::<IGovernance::ThresholdChanged>(&executed.receipts[3])[0].threshold, 4);
    assert_eq!(view(&f, d.address(), GOVERNANCE_ADDRESS, IGovernance::thresholdCall {}), Ok(4));

    // Four approvals now; removing a member would leave three, below the threshold.
    let remove = IGovernance::removeMemberCall { member: d.address() };
    let executed = execute_and_commit(
        &f,
        vec![propose(a, 4, GOVERNANCE_ADDRESS, remove), vote(b, 2, 4, true), vote(c, 0, 4, true)],
    );
    assert!(events::<IGovernance::ProposalExecuted>(&executed.receipts[2]).is_empty(), "three of four approvals");
    let executed = execute_and_commit(&f, vec![vote(&d, 1, 4, true)]);
    assert_eq!(
        failure(&executed.receipts[0]).as_deref(),
        Some(
            format!("governance: removing {} would leave 3 members, fewer than the threshold 4", d.address()).as_str()
        )
    );
}

#[test]
fn a_vote_whose_call_runs_out_of_gas_fails_whole_and_can_be_cast_again() {
    let f = fixture_with(2, 2, Permissions::default());
    let [a, b] = [&f.members[0], &f.members[1]];
    execute_and_commit(&f, vec![propose(a, 0, SYSTEM_CONFIG_ADDRESS, set_config("max_txs_per_block", "7"))]);
    // Enough for the vote itself, not for the system config change it would carry out.
    let call = IGovernance::voteCall { id: U256::from(1), approve: true }.abi_encode();
    let short = raw(b, 0, TxKind::Call(GOVERNANCE_ADDRESS), 100_000, call);
    let short = RecoveredTx::decode_and_recover(&short, CHAIN_ID).expect("valid");
    let executed = execute_and_commit(&f, vec![short]);
    assert!(!executed.receipts[0].success);
    assert!(executed.receipts[0].logs.is_empty(), "nothing of the vote remains");
    assert_eq!(proposal(&f, 1).approvals, 1);

    let executed = execute_and_commit(&f, vec![vote(b, 1, 1, true)]);
    assert_eq!(events::<IGovernance::ProposalExecuted>(&executed.receipts[0]).len(), 1);
    assert_eq!(f.chain().system_config().max_txs_per_block, 7);
}

#[test]
fn without_roles_the_pool_and_the_block_refuse_deploys_and_transactions() {
    let (deployer, transactor, regulator, stranger) =
        (AccountKey::generate(), AccountKey::generate(), AccountKey::generate(), AccountKey::generate());
    let roles: [(Address, &[Role]); 3] = [
        (deployer.address(), &[Role::Deployer]),
        (transactor.address(), &[Role::Transactor]),
        (regulator.address(), &[Role::Regulator]),
    ];
    let f = fixture_with(1, 1, permissions(true, &roles));
    let to = TxKind::Call(Address::repeat_byte(0x33));
    let create = |key: &AccountKey| raw(key, 0, TxKind::Create, 3_000_000, erc20_create());
    let call = |key: &AccountKey| raw(key, 0, to, 21_000, vec![]);
    let refusal = |raw: &Bytes| f.pool().submit(raw).expect_err("refused").kind;
    let no_deploy = |key: &AccountKey| PoolErrorKind::PermissionDenied(PermissionDenied::NoDeploy(key.address()));
    let no_transact = |key: &AccountKey| PoolErrorKind::PermissionDenied(PermissionDenied::NoTransact(key.address()));
    assert_eq!(refusal(&create(&stranger)), no_deploy(&stranger));
    assert_eq!(refusal(&call(&stranger)), no_transact(&stranger));
    assert_eq!(refusal(&create(&transactor)), no_deploy(&transactor));
    assert_eq!(refusal(&call(&deployer)), no_transact(&deployer));
    assert_eq!(refusal(&call(&regulator)), no_transact(&regulator), "a regulator only reads");
    assert_eq!(
        no_deploy(&stranger).to_string(),
        format!("permission denied: account {} lacks the deployer role needed to deploy contracts", stranger.address())
    );
    assert_eq!(
        no_transact(&stranger).to_string(),
        format!(
            "permission denied: account {} lacks the transactor role needed to send transactions",
            stranger.address()
        )
    );
    // System contracts check their own authority: the committee governs without being a transactor.
    let propose_call = IGovernance::proposeCall {
        target: SYSTEM_CONFIG_ADDRESS,
        data: set_config("max_txs_per_block", "7").abi_encode().into(),
        expiresAtBlock: u64::MAX,
    };
    let proposal = raw(&f.admin, 0, TxKind::Call(GOVERNANCE_ADDRESS), 3_000_000, propose_call.abi_encode());
    f.pool().submit(&proposal).expect("a committee member proposes");
    let proposal = RecoveredTx::decode_and_recover(&proposal, CHAIN_ID).expect("valid");
    f.pool().submit(&create(&deployer)).expect("a deployer deploys");
    f.pool().submit(&call(&transactor)).expect("a transactor transacts");

    // A block a faulty leader built with them anyway: the executor refuses them too.
    let executed = execute(
        &f,
        vec![
            signed(&stranger, 0, TxKind::Create, 0, erc20_create()),
            signed(&deployer, 0, TxKind::Create, 0, erc20_create()),
            signed(&transactor, 0, to, 0, vec![]),
            signed(&deployer, 1, to, 0, vec![]),
            proposal,
        ],
    );
    let rejected: Vec<String> = executed.rejected.iter().map(|(_, reason)| reason.clone()).collect();
    assert_eq!(rejected, vec![no_deploy(&stranger).to_string(), no_transact(&deployer).to_string()]);
    assert_eq!(executed.included.len(), 3);
    assert!(executed.receipts.iter().all(|r| r.success));
}

#[test]
fn a_role_granted_or_revoked_earlier_in_a_block_counts_for_later_transactions() {
    let (transactor, newcomer) = (AccountKey::generate(), AccountKey::generate());
    let f = fixture_with(1, 1, permissions(true, &[(transactor.address(), &[Role::Transactor])]));
    let to = TxKind::Call(Address::repeat_byte(0x33));
    let txs = vec![
        signed(&transactor, 0, to, 0, vec![]),
        propose(&f.admin, 0, PERMISSIONS_ADDRESS, revoke_role(transactor.address(), "transactor")),
        signed(&transactor, 1, to, 0, vec![]),
        signed(&newcomer, 0, to, 0, vec![]),
        propose(&f.admin, 1, PERMISSIONS_ADDRESS, grant(newcomer.address(), "transactor")),
        // Not the same transaction as the refused one, to tell them apart.
        signed(&newcomer, 0, TxKind::Call(Address::repeat_byte(0x34)), 0, vec![]),
    ];
    let first = execute(&f, txs.clone());
    let second = execute(&f, txs.clone());
    assert_eq!((first.state_root, &first.rejected), (second.state_root, &second.rejected), "deterministic");
    let rejected: Vec<B256> = first.rejected.iter().map(|(hash, _)| *hash).collect();
    assert_eq!(rejected, vec![txs[2].hash(), txs[3].hash()]);
    assert_eq!(first.included.len(), 4);
    assert!(first.receipts.iter().all(|r| r.success));
}

#[test]
fn roles_and_the_switch_change_only_through_governance() {
    let f = fixture();
    let account = Address::repeat_byte(0x42);
    let permissions_contract = TxKind::Call(PERMISSIONS_ADDRESS);
    let executed = execute_and_commit(
        &f,
        vec![
            signed(&f.admin, 0, permissions_contract, 0, grant(account, "deployer").abi_encode()),
            propose(&f.admin, 1, PERMISSIONS_ADDRESS, grant(account, "deployer")),
            propose(&f.admin, 2, PERMISSIONS_ADDRESS, grant(account, "deployer")),
            propose(&f.admin, 3, PERMISSIONS_ADDRESS, revoke_role(account, "transactor")),
            propose(&f.admin, 4, PERMISSIONS_ADDRESS, IPermissions::setPermissionsEnabledCall { enabled: true }),
        ],
    );
    assert_eq!(reasons(&executed), vec![not_governance("permissions", f.admin.address()), None, None, None, None]);
    let failures: Vec<Option<String>> = executed.receipts[1..].iter().map(failure).collect();
    assert_eq!(
        failures,
        vec![
            None,
            Some(format!("permissions: {account} already holds the deployer role")),
            Some(format!("permissions: {account} does not hold the transactor role")),
            None,
        ]
    );
    let granted = events::<IPermissions::RoleGranted>(&executed.receipts[1]);
    assert_eq!((granted[0].account, granted[0].role.as_str()), (account, "deployer"));
    assert_eq!(has_role(&f, account, "deployer"), Ok(true));
    let roles = view(&f, Address::ZERO, PERMISSIONS_ADDRESS, IPermissions::rolesOfCall { account }).expect("roles");
    assert_eq!(roles, vec!["deployer".to_owned()]);
    let enabled = view(&f, Address::ZERO, PERMISSIONS_ADDRESS, IPermissions::permissionsEnabledCall {});
    assert_eq!(enabled, Ok(true));
    let unknown = has_role(&f, account, "committee").expect_err("not a role");
    assert!(unknown.starts_with("permissions: unknown role \"committee\""), "{unknown}");

    // Switched on: a transfer from an account without roles no longer executes.
    let executed = execute(&f, vec![signed(&AccountKey::generate(), 0, TxKind::Call(account), 0, vec![])]);
    assert_eq!(executed.rejected.len(), 1);
}

#[test]
fn the_audit_log_records_every_action_and_answers_members_regulators_and_auditors_only() {
    let (regulator, auditor, operator, stranger) =
        (AccountKey::generate(), AccountKey::generate(), AccountKey::generate(), AccountKey::generate());
    let roles: [(Address, &[Role]); 3] = [
        (regulator.address(), &[Role::Regulator]),
        (auditor.address(), &[Role::Auditor]),
        (operator.address(), &[Role::ChainOperator]),
    ];
    let f = fixture_with(2, 2, permissions(false, &roles));
    let [a, b] = [&f.members[0], &f.members[1]];
    let account = Address::repeat_byte(0x42);
    let observer = B256::repeat_byte(0xb1);
    execute_and_commit(
        &f,
        vec![
            propose(a, 0, PERMISSIONS_ADDRESS, grant(account, "transactor")),
            vote(b, 0, 1, true),
            signed(
                &operator,
                0,
                TxKind::Call(NODE_REGISTRY_ADDRESS),
                0,
                INodeRegistry::addObserverNodeCall { nodeId: observer }.abi_encode(),
            ),
        ],
    );
    let expected = vec![
        (
            a.address(),
            "propose",
            "proposal 1: permissions grantRole(address,string), votes until block 18446744073709551615".to_owned(),
        ),
        (b.address(), "vote", "proposal 1: approve".to_owned()),
        (GOVERNANCE_ADDRESS, "grantRole", format!("transactor to {account}")),
        (b.address(), "execute", "proposal 1: permissions grantRole(address,string)".to_owned()),
        (operator.address(), "addObserverNode", format!("node {observer}: unregistered -> observer")),
    ];
    for reader in [a.address(), regulator.address(), auditor.address()] {
        let log = audit_log(&f, reader).expect("may read");
        let entries: Vec<(Address, &str, String)> =
            log.iter().map(|e| (e.actor, e.action.as_str(), e.details.clone())).collect();
        assert_eq!(entries, expected, "read by {reader}");
        assert!(log.iter().all(|e| e.blockNumber == 1));
    }
    let page = view(
        &f,
        auditor.address(),
        GOVERNANCE_ADDRESS,
        IGovernance::auditLogCall { start: U256::from(3), count: U256::from(1) },
    )
    .expect("page");
    assert_eq!(page.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), vec!["execute"]);
    let length = view(&f, regulator.address(), GOVERNANCE_ADDRESS, IGovernance::auditLogLengthCall {});
    assert_eq!(length, Ok(U256::from(5)));

    let refused = Err(format!(
        "governance: {} may not read the audit log (committee members, regulators and auditors only)",
        stranger.address()
    ));
    assert_eq!(audit_log(&f, stranger.address()), refused);
    assert_eq!(
        view(&f, stranger.address(), GOVERNANCE_ADDRESS, IGovernance::auditLogLengthCall {}),
        refused.map(|_| U256::ZERO)
    );
    assert!(audit_log(&f, operator.address()).is_err(), "an operator is no reader");
}

#[test]
fn chain_operators_admit_and_remove_observers_but_leave_consensus_nodes_to_the_committee() {
    let (operator, stranger) = (AccountKey::generate(), AccountKey::generate());
    let f = fixture_with(1, 1, permissions(false, &[(operator.address(), &[Role::ChainOperator])]));
    let (newcomer, other) = (B256::repeat_byte(0xb1), B256::repeat_byte(0xb2));
    let registry = TxKind::Call(NODE_REGISTRY_ADDRESS);
    use INodeRegistry::{addConsensusNodeCall, addObserverNodeCall, removeNodeCall};
    let executed = execute_and_commit(
        &f,
        vec![
            signed(&operator, 0, registry, 0, addObserverNodeCall { nodeId: newcomer }.abi_encode()),
            signed(&operator, 1, registry, 0, addObserverNodeCall { nodeId: other }.abi_encode()),
            signed(&operator, 2, registry, 0, addConsensusNodeCall { nodeId: newcomer }.abi_encode()),
            signed(&operator, 3, registry, 0, removeNodeCall { nodeId: f.consensus_node }.abi_encode()),
            signed(&operator, 4, registry, 0, addObserverNodeCall { nodeId: f.consensus_node }.abi_encode()),
            signed(&operator, 5, registry, 0, removeNodeCall { nodeId: other }.abi_encode()),
            signed(&stranger, 0, registry, 0, addObserverNodeCall { nodeId: other }.abi_encode()),
            propose(&f.admin, 0, NODE_REGISTRY_ADDRESS, addConsensusNodeCall { nodeId: newcomer }),
        ],
    );
    let committee_only = committee_only(operator.address());
    assert_eq!(
        reasons(&executed),
        vec![
            None,
            None,
            committee_only.clone(),
            committee_only.clone(),
            committee_only,
            None,
            Some(format!(
                "node registry: {} is neither the governance contract nor a chain operator",
                stranger.address()
            )),
            None,
        ]
    );
    assert_eq!(events::<IGovernance::ProposalExecuted>(&executed.receipts[7]).len(), 1);
    assert_eq!(f.chain().consensus_nodes().expect("read"), vec![f.consensus_node, newcomer]);
    assert!(f.chain().observer_nodes().expect("read").is_empty());
}

#[test]
fn revocations_need_governance_and_the_node_reads_them_after_commit() {
    let f = fixture();
    let revoke = |serial: &[u8], reason: &str| ICertRevocation::revokeCall {
        serial: Bytes::copy_from_slice(serial),
        reason: reason.into(),
    };
    let executed = execute(
        &f,
        vec![
            signed(&f.admin, 0, TxKind::Call(CERT_REVOCATION_ADDRESS), 0, revoke(&[0x12, 0x34], "leak").abi_encode()),
            propose(&f.admin, 1, CERT_REVOCATION_ADDRESS, revoke(&[0x00, 0x12, 0x34], "key leaked")),
            propose(&f.admin, 2, CERT_REVOCATION_ADDRESS, revoke(&[0x12, 0x34], "again")),
            propose(&f.admin, 3, CERT_REVOCATION_ADDRESS, revoke(&[0x00], "zero")),
            propose(&f.admin, 4, CERT_REVOCATION_ADDRESS, revoke(&[0xff; 33], "too long")),
        ],
    );
    assert_eq!(reasons(&executed)[0], not_governance("certificate revocation", f.admin.address()));
    let failures: Vec<Option<String>> = executed.receipts[1..].iter().map(failure).collect();
    assert_eq!(
        failures,
        vec![
            None,
            Some("certificate revocation: serial 1234 is already revoked".into()),
            Some("certificate revocation: the serial is empty or zero".into()),
            Some("certificate revocation: a serial of 33 bytes; at most 32".into()),
        ]
    );
    let revoked = events::<ICertRevocation::CertificateRevoked>(&executed.receipts[1]);
    assert_eq!((revoked[0].serial.to_vec(), revoked[0].reason.as_str()), (vec![0x12, 0x34], "key leaked"));

    let store = f.chain().store().clone();
    assert!(read_revoked(store.as_ref()).expect("read").is_empty(), "not before the block commits");
    commit(&f, executed);
    assert_eq!(read_revoked(store.as_ref()).expect("read"), vec![Serial::from_bytes(&[0x12, 0x34])]);
    let is_revoked = |serial: &[u8]| {
        view(
            &f,
            Address::ZERO,
            CERT_REVOCATION_ADDRESS,
            ICertRevocation::isRevokedCall { serial: Bytes::copy_from_slice(serial) },
        )
    };
    assert_eq!(is_revoked(&[0, 0, 0x12, 0x34]), Ok(true), "leading zero bytes do not matter");
    assert_eq!(is_revoked(&[0x99]), Ok(false));
    let serials = view(&f, Address::ZERO, CERT_REVOCATION_ADDRESS, ICertRevocation::revokedSerialsCall {});
    assert_eq!(serials, Ok(vec![Bytes::from_static(&[0x12, 0x34])]));
    let log = audit_log(&f, f.admin.address()).expect("log");
    assert!(log.iter().any(|e| e.action == "revokeCertificate" && e.details == "serial 1234: key leaked"), "{log:?}");
}

#[test]
fn node_addresses_are_set_by_whoever_may_add_the_node_and_leave_with_it() {
    let (operator, stranger) = (AccountKey::generate(), AccountKey::generate());
    let f = fixture_with(1, 1, permissions(false, &[(operator.address(), &[Role::ChainOperator])]));
    let (observer, unregistered, validator) = (B256::repeat_byte(0xb1), B256::repeat_byte(0xee), f.consensus_node);
    let registry = TxKind::Call(NODE_REGISTRY_ADDRESS);
    use INodeRegistry::{addObserverNodeCall, nodeAddressCall, removeNodeCall, setNodeAddressCall};
    let set = |node: B256, address: &str| setNodeAddressCall { nodeId: node, p2pAddress: address.into() };
    let by_operator = |nonce: u64, call: setNodeAddressCall| signed(&operator, nonce, registry, 0, call.abi_encode());
    // Longer than one 32-byte storage word, so replacing it with a shorter one clears a word.
    let long = "observer-1.consortium-chain.example:30300";
    let executed = execute_and_commit(
        &f,
        vec![
            signed(&operator, 0, registry, 0, addObserverNodeCall { nodeId: observer }.abi_encode()),
            by_operator(1, set(observer, long)),
            by_operator(2, set(validator, "10.0.0.1:30300")),
            signed(&stranger, 0, registry, 0, set(observer, "10.0.0.1:30300").abi_encode()),
            by_operator(3, set(observer, "observer-1")),
            by_operator(4, set(observer, "observer-1:0")),
            by_operator(5, set(unregistered, "10.0.0.1:30300")),
            by_operator(6, set(observer, long)),
            propose(&f.admin, 0, NODE_REGISTRY_ADDRESS, set(validator, "[::1]:30300")),
        ],
    );
    let committee_only = committee_only(operator.address());
    assert_eq!(
        reasons(&executed),
        vec![
            None,
            None,
            committee_only.clone(),
            Some(format!(
                "node registry: {} is neither the governance contract nor a chain operator",
                stranger.address()
            )),
            Some(format!("node registry: address \"observer-1\" of {observer}: not host:port")),
            Some(format!(
                "node registry: address \"observer-1:0\" of {observer}: port \"0\" is not a number from 1 to 65535"
            )),
            Some(format!("node registry: {unregistered} is not registered")),
            Some(format!("node registry: {observer} already has address {long}")),
            None,
        ]
    );
    assert_eq!(failure(&executed.receipts[8]), None, "the committee sets a consensus node's address");
    let changed = events::<INodeRegistry::NodeAddressChanged>(&executed.receipts[1]);
    assert_eq!((changed[0].nodeId, changed[0].p2pAddress.as_str()), (observer, long));
    let addresses = f.chain().node_addresses(&[validator, observer, unregistered]).expect("read");
    assert_eq!(addresses, vec![Some("[::1]:30300".to_owned()), Some(long.to_owned()), None]);
    let read = |node| view(&f, Address::ZERO, NODE_REGISTRY_ADDRESS, nodeAddressCall { nodeId: node }).expect("view");
    assert_eq!(read(observer), long);

    let executed = execute_and_commit(
        &f,
        vec![
            by_operator(7, set(observer, "10.0.0.2:30301")),
            by_operator(8, set(validator, "")),
            propose(&f.admin, 1, NODE_REGISTRY_ADDRESS, set(validator, "")),
            propose(&f.admin, 2, NODE_REGISTRY_ADDRESS, set(validator, "")),
        ],
    );
    assert_eq!(reasons(&executed)[..2], [None, committee_only]);
    let failures: Vec<Option<String>> = executed.receipts[2..].iter().map(failure).collect();
    assert_eq!(failures, vec![None, Some(format!("node registry: {validator} has no address to clear"))]);
    assert_eq!(
        f.chain().node_addresses(&[validator, observer]).expect("read"),
        vec![None, Some("10.0.0.2:30301".into())]
    );

    // Removed, the node loses its address; added again, it has none until one is set.
    execute_and_commit(&f, vec![signed(&operator, 9, registry, 0, removeNodeCall { nodeId: observer }.abi_encode())]);
    assert_eq!(read(observer), "");
    execute_and_commit(
        &f,
        vec![signed(&operator, 10, registry, 0, addObserverNodeCall { nodeId: observer }.abi_encode())],
    );
    assert_eq!(f.chain().node_addresses(&[observer]).expect("read"), vec![None]);

    let log = audit_log(&f, f.admin.address()).expect("log");
    let changes: Vec<(Address, String)> =
        log.iter().filter(|e| e.action == "setNodeAddress").map(|e| (e.actor, e.details.clone())).collect();
    assert_eq!(
        changes,
        vec![
            (operator.address(), format!("node {observer}: address none -> {long}")),
            (GOVERNANCE_ADDRESS, format!("node {validator}: address none -> [::1]:30300")),
            (operator.address(), format!("node {observer}: address {long} -> 10.0.0.2:30301")),
            (GOVERNANCE_ADDRESS, format!("node {validator}: address [::1]:30300 -> none")),
        ]
    );
}

/// The registry's refusal of a chain operator's change to the consensus nodes.
fn committee_only(operator: Address) -> Option<String> {
    Some(format!(
        "node registry: changing the consensus nodes needs a committee proposal; chain operator {operator} may only add and remove observers"
    ))
}
