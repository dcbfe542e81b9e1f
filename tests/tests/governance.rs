//! On-chain governance of a running multi-process chain by a committee of three of which two must
//! approve: roles on a permissioned chain, a chain operator admitting an observer, the audit log a
//! regulator reads, and the consensus node set growing and shrinking by vote while the chain
//! commits.

use std::time::Duration;

use alloy::{
    consensus::TxEip1559,
    primitives::{Address, B256, Bytes, TxKind, U256},
    providers::Provider,
};
use bcos_sdk::{
    crypto::AccountKey,
    types::system::{GOVERNANCE_ADDRESS, NODE_REGISTRY_ADDRESS, PERMISSIONS_ADDRESS, Role},
};
use bcos_tests::{
    CHAIN_ID, Cluster, ClusterSpec, Load,
    admin::Decision,
    checks::{bft_quorum, rejection},
    erc20::ERC20,
    node_registry::INodeRegistry,
    permissions::IPermissions,
    wait_for,
};

/// Generous bound for anything that should take seconds (2 shared cores, 4-5 debug nodes).
const PATIENCE: Duration = Duration::from_secs(60);
/// Time for transfers a node acknowledged to reach its peers before it is removed (gossip batches
/// wait 20 ms).
const GOSSIP_DRAIN: Duration = Duration::from_millis(500);
/// JSON-RPC codes of a contract creation without `deployer`, and of a transaction without
/// `transactor`.
const NO_DEPLOY_PERMISSION: i64 = -32016;
const NO_TRANSACT_PERMISSION: i64 = -32017;

/// A committee of three, two approvals to decide.
fn governed(spec: ClusterSpec) -> ClusterSpec {
    spec.with_committee(3, 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_without_roles_are_refused_until_the_committee_grants_them() -> anyhow::Result<()> {
    let cluster = Cluster::start(governed(ClusterSpec::pbft(4)).with_permissions()).await?;
    cluster.wait_height(&cluster.all(), 2, PATIENCE).await?;
    let provider = cluster.provider(1)?;
    let (newcomer, regulator) = (AccountKey::generate(), AccountKey::generate());
    let creation =
        ERC20::deploy_builder(&provider, "Bank Token".into(), "BNK".into(), U256::from(1_000)).calldata().clone();
    let deploy = newcomer.sign_transaction(TxEip1559 {
        chain_id: CHAIN_ID,
        nonce: 0,
        gas_limit: 3_000_000,
        to: TxKind::Create,
        input: creation,
        ..Default::default()
    });
    let transfer = newcomer.sign_transaction(TxEip1559 {
        chain_id: CHAIN_ID,
        nonce: 1,
        gas_limit: 21_000,
        to: TxKind::Call(Address::repeat_byte(0xEE)),
        ..Default::default()
    });
    let refused = |raw: Bytes, code: i64, role: &'static str| {
        let provider = &provider;
        let account = newcomer.address().to_string();
        async move {
            let (got, message) = rejection(provider, &raw).await?;
            anyhow::ensure!(got == code, "expected code {code}, got {got}: {message}");
            anyhow::ensure!(message.contains(&account) && message.contains(role), "{message}");
            anyhow::Ok(())
        }
    };
    refused(deploy.clone(), NO_DEPLOY_PERMISSION, "deployer").await?;
    refused(transfer.clone(), NO_TRANSACT_PERMISSION, "transactor").await?;

    // One approval of two changes nothing.
    let grant = IPermissions::grantRoleCall { account: newcomer.address(), role: Role::Deployer.as_str().into() };
    let proposed = cluster.propose(0, 0, PERMISSIONS_ADDRESS, grant).await?;
    assert_eq!(proposed.decision, Decision::Pending);
    assert!(!cluster.has_role(0, newcomer.address(), Role::Deployer).await?);
    refused(deploy.clone(), NO_DEPLOY_PERMISSION, "deployer").await?;
    // The second member's vote grants the role in its own transaction.
    let voted = cluster.vote(1, 1, proposed.id, true).await?;
    assert_eq!(voted.decision, Decision::Executed, "{voted:?}");
    cluster.grant_role(1, newcomer.address(), Role::Transactor).await?;
    cluster.grant_role(1, regulator.address(), Role::Regulator).await?;
    // A chain operator admits a node that does not vote, and only such a node, by itself.
    let operator = AccountKey::generate();
    cluster.grant_role(2, operator.address(), Role::ChainOperator).await?;
    let spare = B256::repeat_byte(0x5e);
    cluster
        .send_call(2, &operator, NODE_REGISTRY_ADDRESS, INodeRegistry::addObserverNodeCall { nodeId: spare })
        .await?;
    let refused = cluster
        .send_call(2, &operator, NODE_REGISTRY_ADDRESS, INodeRegistry::addConsensusNodeCall { nodeId: spare })
        .await
        .expect_err("consensus nodes need the committee");
    assert!(format!("{refused:#}").contains("needs a committee proposal"), "{refused:#}");
    assert!(cluster.registry(2).await?.1.contains(&spare));

    let deployed = *provider.send_raw_transaction(&deploy).await?.tx_hash();
    let transferred = *provider.send_raw_transaction(&transfer).await?.tx_hash();
    cluster.wait_receipt(&cluster.all(), deployed, PATIENCE).await?;
    cluster.wait_receipt(&cluster.all(), transferred, PATIENCE).await?;

    // The regulator reads the audit log: the grants, made by the governance contract, and the
    // members' proposals and votes behind them.
    let log = cluster.audit_log(2, regulator.address()).await?;
    let grants: Vec<(Address, String)> =
        log.iter().filter(|e| e.action == "grantRole").map(|e| (e.actor, e.details.clone())).collect();
    assert_eq!(
        grants,
        vec![
            (GOVERNANCE_ADDRESS, format!("deployer to {}", newcomer.address())),
            (GOVERNANCE_ADDRESS, format!("transactor to {}", newcomer.address())),
            (GOVERNANCE_ADDRESS, format!("regulator to {}", regulator.address())),
            (GOVERNANCE_ADDRESS, format!("chainOperator to {}", operator.address())),
        ]
    );
    let proposers: Vec<Address> = log.iter().filter(|e| e.action == "propose").map(|e| e.actor).collect();
    assert_eq!(proposers, vec![cluster.committee_key(0)?.address(); 4]);
    assert_eq!(log.iter().filter(|e| e.action == "execute").count(), 4);
    let last = log.last().expect("entries");
    assert_eq!((last.actor, last.action.as_str()), (operator.address(), "addObserverNode"));
    // Anyone else's read is refused, the deployer's too.
    let err = cluster.audit_log(2, newcomer.address()).await.expect_err("not a reader");
    assert!(format!("{err:#}").contains("may not read the audit log"), "{err:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committee_vote_promotes_an_observer_and_another_removes_it() -> anyhow::Result<()> {
    let (cluster, mut load) = Load::on_new_cluster(governed(ClusterSpec::pbft(4)).with_observers(1), PATIENCE).await?;
    let observer = cluster.genesis_observers()[0];
    let founders = cluster.genesis_consensus();
    let observer_id = cluster.node_id(observer);

    // Proposed by one member, the promotion waits: four voters go on, the observer never votes.
    let promote = INodeRegistry::addConsensusNodeCall { nodeId: observer_id };
    let proposed = cluster.propose(0, 0, NODE_REGISTRY_ADDRESS, promote).await?;
    assert_eq!(proposed.decision, Decision::Pending);
    let height = cluster.wait_progress(&cluster.all(), 3, PATIENCE).await?;
    let (consensus, observers) = cluster.registry(0).await?;
    assert_eq!((consensus.len(), observers), (4, vec![observer_id]));
    assert_eq!(cluster.engine_metrics(observer).await?.engine.as_deref(), Some("observer"));
    cluster.assert_certificates(observer, proposed.block, height, &cluster.node_ids(&founders), bft_quorum(4)).await?;

    // A second member's vote promotes it: five voters from the next block, a quorum of four.
    let promoted = cluster.vote(1, 1, proposed.id, true).await?.executed("promoting the observer")?;
    let engine = cluster.wait_engine(&[observer], "pbft", PATIENCE).await?;
    assert!(engine[0].since_height > promoted, "node {observer} voted before its promotion: {engine:?}");
    let voted = cluster.wait_vote(&cluster.all(), observer, promoted, PATIENCE).await?;
    let height = cluster.wait_progress(&cluster.all(), 3, PATIENCE).await?;
    let five = cluster.node_ids(&cluster.all());
    for i in cluster.all() {
        cluster.assert_certificates(i, promoted + 1, height, &five, bft_quorum(5)).await?;
    }
    eprintln!("node {observer} promoted in block {promoted}, voted on block {voted}");

    // Another proposal and vote remove it again: four voters, a quorum of three.
    load.set_targets(&cluster, &founders)?;
    tokio::time::sleep(GOSSIP_DRAIN).await;
    let remove = INodeRegistry::removeNodeCall { nodeId: observer_id };
    let proposed = cluster.propose(2, 2, NODE_REGISTRY_ADDRESS, remove).await?;
    assert_eq!(proposed.decision, Decision::Pending);
    let removed = cluster.vote(0, 0, proposed.id, true).await?.executed("removing the node")?;
    wait_for("the registry without the node on every founder", PATIENCE, || async {
        for &i in &founders {
            if cluster.registry(i).await?.0.contains(&observer_id) {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    cluster.wait_progress(&founders, 5, PATIENCE).await?;
    load.wait_sent(10, PATIENCE).await?;

    let report = load.check(&cluster, &founders, PATIENCE).await?;
    let height = cluster.heights(&founders).await?.into_iter().min().unwrap_or_default();
    let four = cluster.node_ids(&founders);
    for &i in &founders {
        cluster.assert_certificates(i, removed + 1, height, &four, bft_quorum(4)).await?;
    }
    eprintln!(
        "node {observer} removed in block {removed}; {} transfers committed once each, same chain up to {height}",
        report.committed
    );
    Ok(())
}
