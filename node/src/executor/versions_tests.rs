//! The contract versions registry: its absence below compatibility version 2, the committee's
//! releases, routing of transactions and calls by bucket, and the registry's bounds.

use alloy_primitives::{Address, TxKind, U256, keccak256};
use alloy_sol_types::{SolCall, SolValue};
use bcos_sdk::{
    crypto::AccountKey,
    types::{
        StoredReceipt,
        system::{
            BASIS_POINTS, CONTRACT_VERSIONS_ADDRESS, GOVERNANCE_ADDRESS, IContractVersions, IGovernance,
            SYSTEM_CONFIG_ADDRESS, contract_alias, release_bucket,
        },
    },
};

use super::{
    ExecutedBlock,
    tests::{
        Fixture, call_raw, events, execute_and_commit, fixture, propose, propose_until, reasons, set_config, signed,
        view,
    },
    versions::{self, MAX_NAMES, MAX_VERSIONS, Version},
};

const GREETER: &str = "greeter";

/// Creation code of a contract whose every call logs and returns `version` as one word.
fn versioned(version: u8) -> Vec<u8> {
    // PUSH1 version, PUSH1 0, MSTORE; LOG0 of memory [0, 32); RETURN memory [0, 32).
    let runtime = [0x60, version, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xa0, 0x60, 0x20, 0x60, 0x00, 0xf3];
    // CODECOPY the runtime that follows these 12 bytes to memory 0 and RETURN it.
    let mut create =
        vec![0x60, runtime.len() as u8, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, runtime.len() as u8, 0x60, 0x00, 0xf3];
    create.extend_from_slice(&runtime);
    create
}

/// Fixed accounts spread over the buckets.
fn accounts(count: u32) -> Vec<Address> {
    (0..count).map(|i| Address::from_word(keccak256(i.to_be_bytes()))).collect()
}

fn register(name: &str, version: &str, implementation: Address) -> IContractVersions::registerCall {
    IContractVersions::registerCall { name: name.into(), version: version.into(), implementation }
}

fn start(name: &str, version: &str, implementation: Address, share: u16) -> IContractVersions::startReleaseCall {
    IContractVersions::startReleaseCall { name: name.into(), version: version.into(), implementation, shareBp: share }
}

fn set_share(name: &str, share: u16) -> IContractVersions::setShareCall {
    IContractVersions::setShareCall { name: name.into(), shareBp: share }
}

fn promote(name: &str) -> IContractVersions::promoteCall {
    IContractVersions::promoteCall { name: name.into() }
}

fn rollback(name: &str) -> IContractVersions::rollbackCall {
    IContractVersions::rollbackCall { name: name.into() }
}

/// The reason a proposal's call failed in `receipt`, if it did.
fn failure(receipt: &StoredReceipt) -> Option<String> {
    events::<IGovernance::ProposalFailed>(receipt).pop().map(|failed| failed.reason)
}

/// A chain whose single committee member decides alone, with two versions of one contract
/// deployed.
struct Chain {
    f: Fixture,
    v1: Address,
    v2: Address,
    /// The committee member's next nonce.
    nonce: u64,
}

impl Chain {
    /// Deploys the two versions, and raises the compatibility version to `version` unless it is
    /// the genesis' 1.
    fn at_version(version: u32) -> Self {
        let f = fixture();
        let deployer = AccountKey::generate();
        let mut txs = vec![
            signed(&deployer, 0, TxKind::Create, 0, versioned(1)),
            signed(&deployer, 1, TxKind::Create, 0, versioned(2)),
        ];
        if version > 1 {
            txs.push(propose(
                &f.admin,
                0,
                SYSTEM_CONFIG_ADDRESS,
                set_config("compatibility_version", &version.to_string()),
            ));
        }
        let executed = execute_and_commit(&f, txs);
        assert!(executed.receipts.iter().all(|r| r.success && failure(r).is_none()), "{:?}", reasons(&executed));
        let nonce = u64::from(version > 1);
        Self { f, v1: deployer.address().create(0), v2: deployer.address().create(1), nonce }
    }

    /// A proposal of `call` on the registry.
    fn proposal(&mut self, call: impl SolCall) -> bcos_sdk::types::RecoveredTx {
        self.nonce += 1;
        propose(&self.f.admin, self.nonce - 1, CONTRACT_VERSIONS_ADDRESS, call)
    }

    /// Proposes `call` on the registry in a block of its own.
    fn propose_alone(&mut self, call: impl SolCall) -> ExecutedBlock {
        let proposal = self.proposal(call);
        let executed = self.block(vec![proposal]);
        assert_eq!(reasons(&executed), vec![None], "the proposal itself goes through");
        executed
    }

    /// Proposes `call` on the registry in a block of its own: the reason its call failed, if it
    /// did.
    fn govern(&mut self, call: impl SolCall) -> Option<String> {
        failure(&self.propose_alone(call).receipts[0])
    }

    fn block(&self, txs: Vec<bcos_sdk::types::RecoveredTx>) -> ExecutedBlock {
        execute_and_commit(&self.f, txs)
    }

    /// The version a read-only call of the alias of `name` from `from` answers.
    fn call_alias(&self, name: &str, from: Address) -> U256 {
        let outcome = call_raw(&self.f, from, contract_alias(name), Vec::new());
        assert!(outcome.success, "{outcome:?}");
        U256::abi_decode(&outcome.output).expect("one word")
    }

    fn resolved(&self, name: &str, account: Address) -> versions::Resolved {
        let store = self.f.chain().store().clone();
        versions::resolve(store.as_ref(), name, account).expect("readable").expect("registered")
    }

    fn release(&self, name: &str) -> versions::Release {
        let store = self.f.chain().store().clone();
        versions::read_release(store.as_ref(), name).expect("readable").expect("registered")
    }

    /// For each account, whether the alias routes its calls to the candidate, checked alike
    /// through a call of the alias, the registry's `resolve` and the committed state.
    fn routed(&self, name: &str, accounts: &[Address]) -> Vec<bool> {
        let release = self.release(name);
        accounts
            .iter()
            .map(|&account| {
                let resolved = self.resolved(name, account);
                let expected =
                    release.candidate.as_ref().filter(|_| resolved.routed_to_candidate).unwrap_or(&release.stable);
                assert_eq!((&resolved.version, resolved.implementation), (&expected.version, expected.implementation));
                let answer = U256::from(if expected.implementation == self.v2 { 2 } else { 1 });
                assert_eq!(self.call_alias(name, account), answer, "{account}");
                let on_chain = IContractVersions::resolveCall { name: name.into(), account };
                let on_chain = view(&self.f, account, CONTRACT_VERSIONS_ADDRESS, on_chain).expect("resolves");
                assert_eq!((on_chain.implementation, on_chain.version), (resolved.implementation, resolved.version));
                resolved.routed_to_candidate
            })
            .collect()
    }
}

#[test]
fn below_compatibility_version_2_there_is_no_registry_and_aliases_are_plain_accounts() {
    let mut chain = Chain::at_version(1);
    let stranger = AccountKey::generate();
    let data = register(GREETER, "1.0.0", chain.v1).abi_encode();
    // As many zero bytes as the registry's address, so the call data costs the same.
    let elsewhere = alloy_primitives::address!("0000000000000000000000000000000000001008");
    let proposal = chain.proposal(register(GREETER, "1.0.0", chain.v1));
    let executed = chain.block(vec![
        proposal,
        propose(&chain.f.admin, 1, elsewhere, register(GREETER, "1.0.0", chain.v1)),
        signed(&stranger, 0, TxKind::Call(CONTRACT_VERSIONS_ADDRESS), 0, data.clone()),
        signed(&stranger, 1, TxKind::Call(elsewhere), 0, data),
        signed(&stranger, 2, TxKind::Call(contract_alias(GREETER)), 0, Vec::new()),
    ]);
    assert_eq!(
        reasons(&executed),
        vec![
            Some(
                "governance: the contract versions registry needs compatibility_version 2 or later; the chain runs 1"
                    .into()
            ),
            Some(format!("governance: {elsewhere} is not a system contract")),
            None,
            None,
            None,
        ]
    );
    // Older nodes refuse the proposal as one of an address that is no system contract, and see
    // an empty account at the registry's address: same outcome, same gas, no logs, no state.
    let gas: Vec<u64> = executed.receipts.iter().map(|r| r.gas_used).collect();
    assert_eq!((gas[0], gas[2]), (gas[1], gas[3]), "{gas:?}");
    assert!(executed.receipts.iter().all(|r| r.logs.is_empty()));
    let registry_key = crate::storage::state_key::account(&CONTRACT_VERSIONS_ADDRESS);
    assert!(executed.state_writes.iter().all(|w| w.key.as_ref() != registry_key.as_slice()));
    let outcome =
        call_raw(&chain.f, stranger.address(), CONTRACT_VERSIONS_ADDRESS, IContractVersions::namesCall {}.abi_encode());
    assert!(outcome.success && outcome.output.is_empty(), "an empty account answers nothing: {outcome:?}");
}

#[test]
fn only_a_committee_proposal_changes_the_registry() {
    let chain = Chain::at_version(2);
    let stranger = AccountKey::generate();
    let data = register(GREETER, "1.0.0", chain.v1).abi_encode();
    let to = TxKind::Call(CONTRACT_VERSIONS_ADDRESS);
    // The committee's member is no authority by itself either.
    let executed = chain.block(vec![signed(&stranger, 0, to, 0, data.clone()), signed(&chain.f.admin, 1, to, 0, data)]);
    let refused = |caller: Address| {
        Some(format!(
            "contract versions: {caller} is not the governance contract; this change needs a committee proposal"
        ))
    };
    assert_eq!(reasons(&executed), vec![refused(stranger.address()), refused(chain.f.admin.address())]);
    assert_eq!(
        view(&chain.f, stranger.address(), CONTRACT_VERSIONS_ADDRESS, IContractVersions::namesCall {}),
        Ok(vec![])
    );
}

#[test]
fn a_release_routes_its_share_by_bucket_and_widening_keeps_the_accounts_it_routed() {
    let mut chain = Chain::at_version(2);
    assert_eq!(chain.govern(register(GREETER, "1.0.0", chain.v1)), None);
    let accounts = accounts(200);
    assert!(chain.routed(GREETER, &accounts).iter().all(|routed| !routed), "no release yet: all stable");

    let executed = chain.propose_alone(start(GREETER, "2.0.0", chain.v2, 3_000));
    let started = events::<IContractVersions::ReleaseStarted>(&executed.receipts[0]);
    assert_eq!(
        (started[0].version.as_str(), started[0].implementation, started[0].shareBp),
        ("2.0.0", chain.v2, 3_000)
    );
    let at_30 = chain.routed(GREETER, &accounts);
    for (account, routed) in accounts.iter().zip(&at_30) {
        assert_eq!(*routed, release_bucket(*account, GREETER) < 3_000, "{account}");
    }
    let count = at_30.iter().filter(|routed| **routed).count();
    assert!((40..80).contains(&count), "{count} of 200 routed at 30%");

    assert_eq!(chain.govern(set_share(GREETER, 6_000)), None);
    let at_60 = chain.routed(GREETER, &accounts);
    assert!(at_30.iter().zip(&at_60).all(|(before, after)| !before || *after), "widening keeps routed accounts");
    assert!(at_60.iter().filter(|routed| **routed).count() > count);
    // Narrowing is the committee's choice too.
    assert_eq!(chain.govern(set_share(GREETER, 1_000)), None);
    let at_10 = chain.routed(GREETER, &accounts);
    assert!(at_10.iter().filter(|routed| **routed).count() < count);

    // Transactions of the alias run the sender's version: its log comes from that contract.
    let senders: Vec<AccountKey> = (0..40).map(|_| AccountKey::generate()).collect();
    let txs = senders.iter().map(|key| signed(key, 0, TxKind::Call(contract_alias(GREETER)), 0, Vec::new())).collect();
    let executed = chain.block(txs);
    for (key, receipt) in senders.iter().zip(&executed.receipts) {
        let expected = if release_bucket(key.address(), GREETER) < 1_000 { (chain.v2, 2u8) } else { (chain.v1, 1) };
        let log = &receipt.logs[0];
        assert_eq!((log.address, log.data[31]), expected, "{}", key.address());
    }
}

#[test]
fn a_registration_routes_the_transactions_after_it_in_the_same_block() {
    let mut chain = Chain::at_version(2);
    let sender = AccountKey::generate();
    let alias = TxKind::Call(contract_alias(GREETER));
    let proposal = chain.proposal(register(GREETER, "1.0.0", chain.v1));
    let executed =
        chain.block(vec![signed(&sender, 0, alias, 0, Vec::new()), proposal, signed(&sender, 1, alias, 0, Vec::new())]);
    assert!(executed.receipts[0].logs.is_empty(), "before the registration the alias is an empty account");
    let registered = events::<IContractVersions::ContractRegistered>(&executed.receipts[1]);
    assert_eq!((registered[0].aliasAddress, registered[0].implementation), (contract_alias(GREETER), chain.v1));
    assert_eq!(executed.receipts[2].logs[0].address, chain.v1);
}

#[test]
fn promotion_makes_the_candidate_stable_and_rollback_sends_every_account_back() {
    let mut chain = Chain::at_version(2);
    let accounts = accounts(100);
    assert_eq!(chain.govern(register(GREETER, "1.0.0", chain.v1)), None);
    assert_eq!(chain.govern(start(GREETER, "2.0.0", chain.v2, 5_000)), None);
    let executed = chain.propose_alone(rollback(GREETER));
    let rolled_back = events::<IContractVersions::ReleaseRolledBack>(&executed.receipts[0]);
    assert_eq!((rolled_back[0].version.as_str(), rolled_back[0].implementation), ("2.0.0", chain.v2));
    assert!(chain.routed(GREETER, &accounts).iter().all(|routed| !routed));
    let release = chain.release(GREETER);
    assert_eq!((release.candidate, release.share_bp), (None, 0));

    // A version released before comes back with its own implementation only.
    let v2 = Version { version: "2.0.0".into(), implementation: chain.v2 };
    assert_eq!(
        chain.govern(start(GREETER, "2.0.0", chain.v1, 100)),
        Some(format!("contract versions: {GREETER} 2.0.0 was registered with implementation {}", chain.v2))
    );
    assert_eq!(chain.govern(start(GREETER, "2.0.0", chain.v2, BASIS_POINTS)), None);
    assert!(chain.routed(GREETER, &accounts).iter().all(|routed| *routed), "all of them at 100%");
    let release = chain.release(GREETER);
    assert_eq!((release.candidate.as_ref(), release.history.len()), (Some(&v2), 2), "no second entry");

    let executed = chain.propose_alone(promote(GREETER));
    assert_eq!(events::<IContractVersions::ReleasePromoted>(&executed.receipts[0]).len(), 1);
    assert!(chain.routed(GREETER, &accounts).iter().all(|routed| !routed), "stable now, no candidate");
    let release = chain.release(GREETER);
    assert_eq!((release.stable, release.candidate, release.share_bp), (v2, None, 0));
    assert_eq!(chain.call_alias(GREETER, accounts[0]), U256::from(2));
    assert_eq!(
        chain.govern(start(GREETER, "2.0.0", chain.v2, 100)),
        Some(format!("contract versions: {GREETER} 2.0.0 is the stable version"))
    );
    // Going back to 1.0.0 is a release like any other.
    assert_eq!(chain.govern(start(GREETER, "1.0.0", chain.v1, BASIS_POINTS)), None);
    assert_eq!(chain.call_alias(GREETER, accounts[0]), U256::from(1));

    let on_chain = view(
        &chain.f,
        Address::ZERO,
        CONTRACT_VERSIONS_ADDRESS,
        IContractVersions::versionsOfCall { name: GREETER.into() },
    )
    .expect("registered");
    assert_eq!(on_chain, IContractVersions::Release::from(chain.release(GREETER)));
    let audit = view(
        &chain.f,
        chain.f.admin.address(),
        GOVERNANCE_ADDRESS,
        IGovernance::auditLogCall { start: U256::ZERO, count: U256::from(100) },
    )
    .expect("a member reads the audit log");
    let changes: Vec<(&str, Address)> = audit
        .iter()
        .filter(|entry| entry.action != "propose" && entry.action != "execute" && entry.action != "fail")
        .map(|entry| (entry.action.as_str(), entry.actor))
        .collect();
    let by_governance =
        |actions: &[&'static str]| actions.iter().map(|action| (*action, GOVERNANCE_ADDRESS)).collect::<Vec<_>>();
    assert_eq!(
        changes,
        by_governance(&[
            "setConfig",
            "registerContract",
            "startRelease",
            "rollback",
            "startRelease",
            "promote",
            "startRelease"
        ])
    );
}

#[test]
fn malformed_and_out_of_bounds_changes_are_refused() {
    let mut chain = Chain::at_version(2);
    let (v1, v2) = (chain.v1, chain.v2);
    let refused = |reason: &str| Some(format!("contract versions: {reason}"));
    let label = |what: &str, text: &str, max: usize| {
        refused(&format!("{what} {text:?} must be 1 to {max} bytes of letters, digits, '.', '_', '+' and '-'"))
    };
    let long_name = "n".repeat(65);
    let long_version = "9".repeat(33);
    let eoa = Address::repeat_byte(0x99);
    assert_eq!(chain.govern(register("", "1.0.0", v1)), label("name", "", 64));
    assert_eq!(chain.govern(register(&long_name, "1.0.0", v1)), label("name", &long_name, 64));
    assert_eq!(chain.govern(register("two words", "1.0.0", v1)), label("name", "two words", 64));
    assert_eq!(chain.govern(register(GREETER, &long_version, v1)), label("version", &long_version, 32));
    assert_eq!(chain.govern(register(GREETER, "1.0.0", eoa)), refused(&format!("{eoa} holds no code")));
    assert_eq!(
        chain.govern(register(GREETER, "1.0.0", SYSTEM_CONFIG_ADDRESS)),
        refused(&format!("{SYSTEM_CONFIG_ADDRESS} is a system contract"))
    );
    assert_eq!(chain.govern(register(GREETER, "1.0.0", v1)), None);
    assert_eq!(chain.govern(register(GREETER, "1.0.1", v2)), refused("greeter is already registered"));
    assert_eq!(chain.govern(start("unknown", "2.0.0", v2, 100)), refused("no contract named unknown"));
    assert_eq!(
        chain.govern(start(GREETER, "2.0.0", v2, BASIS_POINTS + 1)),
        refused("a share of 10001 basis points; at most 10000")
    );
    for change in [set_share(GREETER, 100).abi_encode(), promote(GREETER).abi_encode(), rollback(GREETER).abi_encode()]
    {
        let proposal = propose_until(&chain.f.admin, chain.nonce, CONTRACT_VERSIONS_ADDRESS, change, u64::MAX);
        chain.nonce += 1;
        let executed = chain.block(vec![proposal]);
        assert_eq!(failure(&executed.receipts[0]), refused("no release of greeter is in progress"));
    }
    assert_eq!(chain.govern(start(GREETER, "2.0.0", v2, 100)), None);
    assert_eq!(
        chain.govern(start(GREETER, "3.0.0", v2, 100)),
        refused("the release of greeter 2.0.0 is in progress; promote or roll it back first")
    );
    assert_eq!(chain.govern(set_share(GREETER, 100)), refused("greeter 2.0.0 already has 100 basis points"));
    let resolve = |name: &str| IContractVersions::resolveCall { name: name.into(), account: Address::ZERO };
    let registry = CONTRACT_VERSIONS_ADDRESS;
    assert_eq!(view(&chain.f, Address::ZERO, registry, resolve("unknown")).err(), refused("no contract named unknown"));
    assert_eq!(view(&chain.f, Address::ZERO, registry, resolve("a b")).err(), label("name", "a b", 64));

    // The history keeps at most MAX_VERSIONS versions: 2.0.0 is the second.
    assert_eq!(chain.govern(rollback(GREETER)), None);
    let mut txs = Vec::new();
    for i in 3..=MAX_VERSIONS {
        txs.push(chain.proposal(start(GREETER, &format!("{i}.0.0"), v2, 100)));
        txs.push(chain.proposal(rollback(GREETER)));
    }
    let executed = chain.block(txs);
    assert!(
        executed.receipts.iter().all(|r| failure(r).is_none()),
        "{:?}",
        executed.receipts.iter().map(failure).collect::<Vec<_>>()
    );
    assert_eq!(chain.release(GREETER).history.len() as u64, MAX_VERSIONS);
    assert_eq!(
        chain.govern(start(GREETER, "99.0.0", v2, 100)),
        refused(&format!("greeter has {MAX_VERSIONS} versions, the most one name keeps"))
    );

    // At most MAX_NAMES names, listed in the order registered.
    let names: Vec<String> = (1..MAX_NAMES).map(|i| format!("contract-{i}")).collect();
    let txs = names.iter().map(|name| chain.proposal(register(name, "1.0.0", v1))).collect();
    let executed = chain.block(txs);
    assert!(executed.receipts.iter().all(|r| failure(r).is_none()));
    assert_eq!(chain.govern(register("one-too-many", "1.0.0", v1)), refused(&format!("at most {MAX_NAMES} names")));
    let listed = view(&chain.f, Address::ZERO, registry, IContractVersions::namesCall {}).expect("names");
    let expected: Vec<String> = std::iter::once(GREETER.to_owned()).chain(names).collect();
    assert_eq!(listed, expected);
}
