//! Reconfiguring a running multi-process chain under a steady load of transfers: consensus
//! switches scheduled through the system config, observers that follow by sync, a node restarted
//! on an empty data directory, and node set changes through the node registry; every change is a
//! proposal of the chain's one-member committee, which runs at once.
//!
//! Every test ends by checking that the nodes hold the same chain and that every acknowledged
//! transfer is in it exactly once; the quorum certificates are checked against the node set in
//! force at each height.

use std::time::Duration;

use bcos_sdk::config::ConsensusMode;
use bcos_tests::{Cluster, ClusterSpec, Load, checks::bft_quorum};

/// Generous bound for anything that should take seconds (2 shared cores, 4-5 debug nodes).
const PATIENCE: Duration = Duration::from_secs(60);
/// Time for transfers a node acknowledged to reach its peers before it is killed or removed
/// (gossip batches wait 20 ms).
const GOSSIP_DRAIN: Duration = Duration::from_millis(500);
/// How far past the head a consensus switch is scheduled: room for the committee's proposal to
/// commit first (a 200 ms block interval).
const SWITCH_AHEAD: u64 = 5;

fn others(cluster: &Cluster, excluded: &[usize]) -> Vec<usize> {
    cluster.all().into_iter().filter(|i| !excluded.contains(i)).collect()
}

/// The highest height among `nodes`.
async fn head(cluster: &Cluster, nodes: &[usize]) -> anyhow::Result<u64> {
    Ok(cluster.heights(nodes).await?.into_iter().max().unwrap_or_default())
}

/// Checks the load and the chain on `nodes`, and prints what happened; returns a height every
/// node of `nodes` has reached.
async fn finish(cluster: &Cluster, load: &mut Load, nodes: &[usize], test: &str) -> anyhow::Result<u64> {
    let report = load.check(cluster, nodes, PATIENCE).await?;
    let height = cluster.heights(nodes).await?.into_iter().min().unwrap_or_default();
    eprintln!(
        "{test}: {} transfers committed once each ({} retries), same chain up to {height} on nodes {nodes:?}",
        report.committed, report.retries
    );
    Ok(height)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbft_raft_pbft_under_load_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let (cluster, mut load) = Load::on_new_cluster(ClusterSpec::pbft(4), PATIENCE).await?;
    let all = cluster.all();

    let to_raft = cluster.schedule_consensus(0, ConsensusMode::Raft, SWITCH_AHEAD).await?;
    let raft = cluster.wait_engine(&all, "raft", PATIENCE).await?;
    eprintln!("switch to raft at {to_raft}: {raft:?}");
    for (i, metrics) in raft.iter().enumerate() {
        assert!(metrics.since_height >= to_raft, "node {i} ran raft from before {to_raft}: {metrics:?}");
    }
    cluster.wait_progress(&all, 5, PATIENCE).await?;
    load.wait_sent(10, PATIENCE).await?;

    let to_pbft = cluster.schedule_consensus(1, ConsensusMode::Pbft, SWITCH_AHEAD).await?;
    cluster.wait_engine(&all, "pbft", PATIENCE).await?;
    cluster.wait_progress(&all, 5, PATIENCE).await?;
    load.wait_sent(10, PATIENCE).await?;

    let height = finish(&cluster, &mut load, &all, "pbft-raft-pbft").await?;
    assert!(height > to_pbft, "the chain stopped at {height}, before the switch back at {to_pbft}");
    // The certificates of every engine verify: PBFT's quorum of 3 of 4 before and after, Raft's
    // majority of 3 of 4 in between.
    let members = cluster.node_ids(&all);
    cluster.assert_certificates(0, 1, height, &members, 3).await?;

    let mut exact = 0;
    for &i in &all {
        let metrics = cluster.engine_metrics(i).await?;
        eprintln!("node {i} after the switch back at {to_pbft}: {metrics:?}");
        assert_eq!(metrics.engine.as_deref(), Some("pbft"), "node {i}");
        assert!(metrics.since_height >= to_pbft, "node {i} ran pbft from before {to_pbft}: {metrics:?}");
        assert_eq!(metrics.switches, 2, "node {i} was never restarted: {metrics:?}");
        exact += usize::from(metrics.since_height == to_pbft);
    }
    assert!(exact >= 3, "only {exact} nodes decided the switch height {to_pbft} with pbft");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_and_an_empty_node_sync_and_verify_certificates() -> anyhow::Result<()> {
    let (mut cluster, mut load) = Load::on_new_cluster(ClusterSpec::pbft(4).with_observers(1), PATIENCE).await?;
    let consensus = cluster.genesis_consensus();
    let observer = cluster.genesis_observers()[0];
    let members = cluster.node_ids(&consensus);
    let quorum = bft_quorum(consensus.len());

    // The observer follows the chain under load: same blocks, never a vote of its own.
    cluster.wait_progress(&consensus, 5, PATIENCE).await?;
    load.wait_sent(10, PATIENCE).await?;
    let height = head(&cluster, &consensus).await?;
    cluster.assert_same_chain(&cluster.all(), height, PATIENCE).await?;
    let metrics = cluster.engine_metrics(observer).await?;
    assert_eq!(metrics.engine.as_deref(), Some("observer"), "{metrics:?}");
    for &i in &cluster.all() {
        // `verify` refuses voters outside `members`, so the observer's id is in none of them.
        cluster.assert_certificates(i, 1, height, &members, quorum).await?;
    }

    // A consensus node loses its data directory and starts from the genesis.
    let victim = consensus[3];
    let live = others(&cluster, &[victim]);
    load.set_targets(&cluster, &live)?;
    tokio::time::sleep(GOSSIP_DRAIN).await;
    cluster.kill(victim).await?;
    cluster.delete_data(victim)?;
    cluster.restart(victim).await?;
    let goal = head(&cluster, &live).await?;
    cluster.wait_height(&[victim], goal, PATIENCE).await?;
    cluster.assert_same_chain(&cluster.all(), goal, PATIENCE).await?;
    let voted = cluster.wait_vote(&consensus, victim, goal, PATIENCE).await?;
    eprintln!("node {victim} synced from empty to {goal} and voted on block {voted}");

    load.set_targets(&cluster, &cluster.all())?;
    load.wait_sent(10, PATIENCE).await?;
    let height = finish(&cluster, &mut load, &cluster.all(), "observer and empty node").await?;
    for &i in &[victim, observer] {
        cluster.assert_certificates(i, 1, height, &members, quorum).await?;
    }
    let metrics = cluster.engine_metrics(observer).await?;
    assert_eq!(metrics.engine.as_deref(), Some("observer"), "{metrics:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_promoted_by_the_registry_joins_the_quorum() -> anyhow::Result<()> {
    let (cluster, mut load) = Load::on_new_cluster(ClusterSpec::pbft(4).with_observers(1), PATIENCE).await?;
    let observer = cluster.genesis_observers()[0];
    let founders = cluster.genesis_consensus();

    // Promoted in block `promoted`, the observer votes from the next block on: five consensus
    // nodes, a quorum of four.
    let promoted = cluster.add_consensus_node(0, observer).await?;
    let (registered, observers) = cluster.registry(0).await?;
    assert!(registered.contains(&cluster.node_id(observer)) && observers.is_empty(), "{registered:?} {observers:?}");
    let engine = cluster.wait_engine(&[observer], "pbft", PATIENCE).await?;
    assert!(engine[0].since_height > promoted, "node {observer} voted before its promotion: {engine:?}");
    let voted = cluster.wait_vote(&cluster.all(), observer, promoted, PATIENCE).await?;
    let height = cluster.wait_progress(&cluster.all(), 3, PATIENCE).await?;
    let five = cluster.all();
    let members = cluster.node_ids(&five);
    for &i in &five {
        cluster.assert_certificates(i, promoted + 1, height, &members, bft_quorum(five.len())).await?;
    }
    eprintln!("node {observer} promoted in block {promoted}, voted on block {voted}");

    // A founding node leaves: the other four (the promoted one among them) go on, quorum three.
    let leaving = founders[0];
    let remaining = others(&cluster, &[leaving]);
    load.set_targets(&cluster, &remaining)?;
    tokio::time::sleep(GOSSIP_DRAIN).await;
    let removed = cluster.remove_node(remaining[0], leaving).await?;
    let (registered, _) = cluster.registry(remaining[0]).await?;
    assert!(!registered.contains(&cluster.node_id(leaving)), "{registered:?}");
    cluster.wait_progress(&remaining, 5, PATIENCE).await?;
    load.wait_sent(10, PATIENCE).await?;

    let height = finish(&cluster, &mut load, &remaining, "promotion and removal").await?;
    let members = cluster.node_ids(&remaining);
    for &i in &remaining {
        cluster.assert_certificates(i, removed + 1, height, &members, bft_quorum(remaining.len())).await?;
    }
    let metrics = cluster.engine_metrics(leaving).await;
    eprintln!("node {leaving} removed in block {removed}; now {metrics:?}, height {:?}", cluster.height(leaving).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_across_a_switch_syncs_over_it_and_runs_the_new_engine() -> anyhow::Result<()> {
    let (mut cluster, mut load) = Load::on_new_cluster(ClusterSpec::pbft(4), PATIENCE).await?;
    let all = cluster.all();
    let victim = 3;
    let live = others(&cluster, &[victim]);
    load.set_targets(&cluster, &live)?;
    tokio::time::sleep(GOSSIP_DRAIN).await;
    cluster.kill(victim).await?;

    let to_raft = cluster.schedule_consensus(0, ConsensusMode::Raft, SWITCH_AHEAD).await?;
    cluster.wait_engine(&live, "raft", PATIENCE).await?;
    cluster.wait_progress(&live, 5, PATIENCE).await?;

    // Restarted below the switch height, it gets the blocks on both sides of it by sync and then
    // takes part in Raft.
    cluster.restart(victim).await?;
    let goal = head(&cluster, &live).await?;
    cluster.wait_height(&[victim], goal, PATIENCE).await?;
    let engine = cluster.wait_engine(&[victim], "raft", PATIENCE).await?;
    assert!(engine[0].since_height > to_raft, "node {victim} was down at {to_raft}: {engine:?}");
    let voted = cluster.wait_vote(&all, victim, goal, PATIENCE).await?;
    eprintln!("node {victim} down across the switch at {to_raft}, synced to {goal}, voted on block {voted}");

    load.set_targets(&cluster, &all)?;
    load.wait_sent(10, PATIENCE).await?;
    let height = finish(&cluster, &mut load, &all, "down across a switch").await?;
    cluster.assert_certificates(victim, 1, height, &cluster.node_ids(&all), 3).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_promotes_an_observer_and_goes_on_without_its_removed_leader() -> anyhow::Result<()> {
    let (cluster, mut load) = Load::on_new_cluster(ClusterSpec::pbft(4).with_observers(1), PATIENCE).await?;
    let observer = cluster.genesis_observers()[0];
    let founders = cluster.genesis_consensus();
    let to_raft = cluster.schedule_consensus(0, ConsensusMode::Raft, SWITCH_AHEAD).await?;
    cluster.wait_engine(&founders, "raft", PATIENCE).await?;
    let metrics = cluster.engine_metrics(observer).await?;
    assert_eq!(metrics.engine.as_deref(), Some("observer"), "a switch made the observer vote: {metrics:?}");

    // Five Raft nodes: a majority of three.
    let promoted = cluster.add_consensus_node(0, observer).await?;
    cluster.wait_engine(&[observer], "raft", PATIENCE).await?;
    let voted = cluster.wait_vote(&cluster.all(), observer, promoted, PATIENCE).await?;
    eprintln!("raft from {to_raft}; node {observer} promoted in block {promoted}, voted on block {voted}");

    // The leader leaves: the other four elect another one and go on.
    let (leader, _) = cluster.latest_proposer(0).await?;
    let remaining = others(&cluster, &[leader]);
    load.set_targets(&cluster, &remaining)?;
    tokio::time::sleep(GOSSIP_DRAIN).await;
    let removed = cluster.remove_node(remaining[0], leader).await?;
    let reached = cluster.wait_progress(&remaining, 5, PATIENCE).await?;
    let (new_leader, _) = cluster.latest_proposer(remaining[0]).await?;
    assert_ne!(new_leader, leader, "block {reached} proposed by node {leader}, removed in block {removed}");
    load.wait_sent(10, PATIENCE).await?;

    let height = finish(&cluster, &mut load, &remaining, "raft promotion and leader removal").await?;
    let five = cluster.node_ids(&cluster.all());
    let four = cluster.node_ids(&remaining);
    for &i in &remaining {
        cluster.assert_certificates(i, promoted + 1, removed, &five, 3).await?;
        cluster.assert_certificates(i, removed + 1, height, &four, 3).await?;
    }
    eprintln!("node {leader} removed in block {removed}; now {:?}", cluster.engine_metrics(leader).await);
    Ok(())
}
