//! A new institution joins a running multi-process chain, and leaves it: its node, certified by
//! a member CA the chain's CA issues with `bcos-node ca`, is refused until the committee
//! registers it, then syncs as an observer, votes after a second committee vote, is dropped by
//! every peer at once when the committee revokes its certificate, and is removed by a last vote.
//! The chain commits a steady load throughout, and every transfer lands exactly once.

use std::{path::Path, time::Duration};

use alloy::primitives::Bytes;
use bcos_sdk::{
    pki::NodeChain,
    types::system::{CERT_REVOCATION_ADDRESS, ICertRevocation, NODE_REGISTRY_ADDRESS},
};
use bcos_tests::{
    Cluster, ClusterSpec, Load, admin::Decision, checks::bft_quorum, node_registry::INodeRegistry, run_node, wait_for,
};

/// Generous bound for anything that should take seconds (2 shared cores, 5 debug nodes).
const PATIENCE: Duration = Duration::from_secs(60);

fn refused(reason: &str) -> String {
    format!("bcos_network_refused_connections_total{{reason=\"{reason}\"}}")
}

/// Runs `bcos-node ca ...` and fails with its output unless it succeeds.
fn ca(args: &[&str]) -> anyhow::Result<()> {
    let (done, stdout, stderr) = run_node(&[&["ca"], args].concat())?;
    anyhow::ensure!(done, "bcos-node ca {args:?}: {stdout}{stderr}");
    Ok(())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Waits until every node of `on` has counted at least one refusal for `reason`.
async fn wait_refused(cluster: &Cluster, on: &[usize], reason: &str) -> anyhow::Result<()> {
    let sample = refused(reason);
    wait_for(&format!("refusals for {reason} on {on:?}"), PATIENCE, || async {
        for &i in on {
            if cluster.metric(i, &sample).await? < 1.0 {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_members_node_is_admitted_by_vote_and_dropped_when_its_certificate_is_revoked() -> anyhow::Result<()> {
    let spec = ClusterSpec::pbft(4).with_committee(3, 2).with_spares(1);
    let (mut cluster, mut load) = Load::on_new_cluster(spec, PATIENCE).await?;
    let founders = cluster.genesis_consensus();
    let newcomer = cluster.spares()[0];
    let newcomer_id = cluster.node_id(newcomer);

    // The chain's CA admits a new institution, which certifies its node's existing key.
    let member_dir = cluster.dir().join("newbank");
    let (node_key, node_cert) =
        (cluster.node_dir(newcomer).join("node.key"), cluster.node_dir(newcomer).join("node.crt"));
    ca(&[
        "member",
        "--ca-dir",
        path(&cluster.ca_dir()),
        "--name",
        "New Bank",
        "--id",
        "newbank",
        "--out",
        path(&member_dir),
    ])?;
    ca(&["node", "--member-dir", path(&member_dir), "--node-key", path(&node_key), "--out", path(&node_cert)])?;

    // Certified but not registered: it starts, dials the founders, and each refuses it.
    cluster.restart(newcomer).await?;
    wait_refused(&cluster, &founders, "not_allowed").await?;
    assert_eq!(cluster.height(newcomer).await?, 0, "a node nobody admits cannot sync");

    // The committee registers it as an observer: admitted, it syncs to the founders' head.
    let registered = cluster.add_observer_node(0, newcomer).await?;
    cluster.wait_height(&[newcomer], registered, PATIENCE).await?;
    assert_eq!(cluster.metric(newcomer, "bcos_network_connected_peers").await?, 4.0);

    // One approval of its promotion changes nothing; the second makes it a voter, and the
    // quorum grows to four of five.
    let promote = INodeRegistry::addConsensusNodeCall { nodeId: newcomer_id };
    let proposed = cluster.propose(1, 0, NODE_REGISTRY_ADDRESS, promote).await?;
    assert_eq!(proposed.decision, Decision::Pending);
    let promoted = cluster.vote(2, 1, proposed.id, true).await?.executed("promoting the newcomer")?;
    let voted = cluster.wait_vote(&founders, newcomer, promoted, PATIENCE).await?;
    let five: Vec<usize> = founders.iter().copied().chain([newcomer]).collect();
    let height = cluster.wait_progress(&five, 3, PATIENCE).await?;
    for &i in &founders {
        cluster.assert_certificates(i, promoted + 1, height, &cluster.node_ids(&five), bft_quorum(5)).await?;
    }
    eprintln!("newcomer promoted in block {promoted}, voted on block {voted}");

    // The committee revokes its certificate: every founder drops it at once, and the four
    // founders go on committing as four of five.
    let serial = NodeChain::load(&node_cert)?.node.serial().as_bytes().to_vec();
    let revoke = ICertRevocation::revokeCall { serial: Bytes::from(serial), reason: "key compromised".into() };
    let revoked = cluster.govern(0, CERT_REVOCATION_ADDRESS, revoke).await?.executed("revoking the certificate")?;
    wait_refused(&cluster, &founders, "certificate_revoked").await?;
    wait_for("the newcomer cut off", PATIENCE, || async {
        Ok((cluster.metric(newcomer, "bcos_network_connected_peers").await? == 0.0).then_some(()))
    })
    .await?;
    let stuck = cluster.height(newcomer).await?;
    let height = cluster.wait_progress(&founders, 3, PATIENCE).await?;
    assert!(cluster.height(newcomer).await? <= stuck + 1, "a revoked node gets no more blocks");
    eprintln!("certificate revoked in block {revoked}; founders at {height}, the newcomer stuck at {stuck}");

    // A last vote removes it: the quorum is three of four again.
    let removed = cluster.remove_node(0, newcomer).await?;
    let height = cluster.wait_progress(&founders, 3, PATIENCE).await?;
    for &i in &founders {
        cluster.assert_certificates(i, removed + 1, height, &cluster.node_ids(&founders), bft_quorum(4)).await?;
    }
    load.wait_sent(10, PATIENCE).await?;
    let report = load.check(&cluster, &founders, PATIENCE).await?;
    eprintln!("removed in block {removed}; {} transfers committed once each", report.committed);
    cluster.kill(newcomer).await?;
    Ok(())
}
