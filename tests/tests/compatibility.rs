//! Version compatibility on a running multi-process chain. Nodes of two releases commit together
//! and know each other's versions; one binary plays both releases through the node's rollout-test
//! overrides. Raising the chain's compatibility version halts the node whose release does not
//! know the new rules, while the others commit on; it refuses to start on that chain again until
//! it is upgraded, and then it catches up. A node refuses to start with a reported version that is
//! not a semantic version, or claiming a compatibility version its build lacks.

use std::time::Duration;

use alloy::{primitives::B256, providers::Provider};
use anyhow::{Context, ensure};
use bcos_sdk::{proto, types::system::SYSTEM_CONFIG_ADDRESS};
use bcos_tests::{Cluster, ClusterSpec, Launch, system_config::ISystemConfig, wait_for};

/// Generous bound for anything that should take seconds (2 shared cores, 4 debug nodes).
const PATIENCE: Duration = Duration::from_secs(90);
/// The node running the earlier release.
const OLD: usize = 3;
/// The software version the earlier release reports.
const OLD_RELEASE: &str = "0.0.9";
/// The software version this build reports.
const NEW_RELEASE: &str = bcos_sdk::VERSION;

/// The earlier release: it executes the chain up to compatibility version 1 only.
fn old_release() -> Launch {
    Launch::release(OLD_RELEASE, 1)
}

/// Four PBFT nodes, the last of the earlier release.
async fn mixed_chain() -> anyhow::Result<Cluster> {
    Cluster::start_mixed(ClusterSpec::pbft(4), &[(OLD, old_release())]).await
}

/// The release node `i` runs: its software version and highest compatibility version.
fn release_of(i: usize) -> (&'static str, u32) {
    if i == OLD { (OLD_RELEASE, 1) } else { (NEW_RELEASE, 2) }
}

/// Waits until every node of `nodes` reports over gRPC an admitted connection to each other
/// node of `nodes`; returns their statuses then.
async fn connected_statuses(cluster: &Cluster, nodes: &[usize]) -> anyhow::Result<Vec<proto::NodeStatus>> {
    wait_for(&format!("nodes {nodes:?} connected to each other"), PATIENCE, || async {
        let statuses = futures::future::try_join_all(nodes.iter().map(|&i| cluster.grpc_status(i))).await.ok();
        Ok(statuses.filter(|all| all.iter().all(|status| status.peer_versions.len() + 1 >= nodes.len())))
    })
    .await
}

#[test]
fn a_node_refuses_to_start_reporting_a_malformed_version_or_claiming_rules_it_lacks() -> anyhow::Result<()> {
    // Checked before anything else, so no configuration is needed to see the refusal.
    let start = |reported: Option<&str>, max: Option<&str>| -> anyhow::Result<(bool, String)> {
        let mut command = std::process::Command::new(bcos_tests::node_binary()?);
        command.args(["run", "--config", "/nonexistent/node.yaml"]);
        match reported {
            Some(version) => command.env("BCOS_REPORTED_VERSION", version),
            None => command.env_remove("BCOS_REPORTED_VERSION"),
        };
        if let Some(max) = max {
            command.args(["--max-compatibility-version", max]);
        }
        let output = command.output()?;
        Ok((output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned()))
    };
    let (started, error) = start(Some("latest"), None)?;
    assert!(
        !started && error.contains("BCOS_REPORTED_VERSION: software version \"latest\" is not a semantic version"),
        "{error}"
    );
    let (started, error) = start(None, Some("3"))?;
    assert!(
        !started && error.contains("a maximum compatibility version of 3 is not one this build can run (1 to 2)"),
        "{error}"
    );
    // Valid overrides get as far as the missing configuration.
    let (started, error) = start(Some("1.2.3-rc.1"), Some("1"))?;
    assert!(!started && error.contains("/nonexistent/node.yaml"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_two_releases_commit_together_and_know_each_others_versions() -> anyhow::Result<()> {
    let cluster = mixed_chain().await?;
    let all = cluster.all();
    cluster.wait_height(&all, 2, PATIENCE).await?;
    // Transactions through every node, the old one included, commit on every node.
    for via in all.clone() {
        cluster.probe_transfer(via, &all, PATIENCE).await?;
    }
    cluster.wait_vote(&[0], OLD, 0, PATIENCE).await.context("the old node votes")?;
    let height = cluster.wait_progress(&all, 2, PATIENCE).await?;
    cluster.assert_same_chain(&all, height, PATIENCE).await?;

    for (i, status) in connected_statuses(&cluster, &all).await?.iter().enumerate() {
        let (version, max) = release_of(i);
        assert_eq!((status.version.as_str(), status.max_compatibility_version), (version, max), "node {i}");
        assert_eq!((status.protocol_version, status.compatibility_version), (1, 1), "node {i}");
        assert_eq!((status.halted.as_str(), status.peers), ("", 3), "node {i}");
        for peer in &status.peer_versions {
            let id = B256::try_from(peer.node_id.as_slice()).context("a node id")?;
            let j = cluster.index_of(&id).context("a node of the cluster")?;
            assert_eq!((peer.version.as_str(), peer.protocol_version), (release_of(j).0, 1), "node {j} seen by {i}");
        }
    }
    // JSON-RPC reports the same.
    for i in [0, OLD] {
        let peers: serde_json::Value = cluster.provider(i)?.raw_request("net_peerCount".into(), ()).await?;
        assert_eq!(peers, "0x3", "node {i}");
        let status = cluster.rpc_status(i).await?;
        let (version, max) = release_of(i);
        assert_eq!(
            (status["version"].as_str(), status["maxCompatibilityVersion"].as_u64()),
            (Some(version), Some(max.into()))
        );
        assert_eq!((status["compatibilityVersion"].as_u64(), status["halted"].is_null()), (Some(1), true), "node {i}");
        let peers = status["peerVersions"].as_array().context("peer versions")?;
        assert_eq!(peers.len(), 3, "node {i}: {status}");
        let others: Vec<_> = all.iter().filter(|&&j| j != i).map(|&j| release_of(j).0).collect();
        for peer in peers {
            let version = peer["version"].as_str().context("stated")?;
            ensure!(others.contains(&version) && peer["protocolVersion"] == 1, "node {i} sees {peer}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_compatibility_version_halts_the_old_node_until_it_is_upgraded() -> anyhow::Result<()> {
    let mut cluster = mixed_chain().await?;
    let all = cluster.all();
    let current: Vec<usize> = all.iter().copied().filter(|&i| i != OLD).collect();
    cluster.wait_height(&all, 2, PATIENCE).await?;

    // Governance executes the raise alike on every node, the old one included.
    let raise = ISystemConfig::setValueByKeyCall { key: "compatibility_version".into(), value: "2".into() };
    let raised =
        cluster.govern(0, SYSTEM_CONFIG_ADDRESS, raise).await?.executed("raising the compatibility version")?;
    let reason = format!(
        "from block {} the chain runs under compatibility version 2, but this build executes at most version 1",
        raised + 1
    );

    // The old node applies the raising block, under version 1, and nothing after it.
    let halted = wait_for("the old node halted", PATIENCE, || async {
        Ok(cluster.grpc_status(OLD).await.ok().filter(|status| !status.halted.is_empty()))
    })
    .await?;
    assert!(halted.halted.starts_with(&reason), "{}", halted.halted);
    assert_eq!((halted.height, halted.compatibility_version, halted.max_compatibility_version), (raised, 2, 1));
    assert_eq!(cluster.metric(OLD, "bcos_node_incompatible").await?, 1.0);
    let readiness = bcos_tests::http_client().get(format!("{}/readyz", cluster.endpoints(OLD)?.metrics)).send().await?;
    assert_eq!(readiness.status().as_u16(), 503);
    assert!(readiness.text().await?.starts_with(&reason));
    assert!(cluster.log(OLD).contains(&reason), "the old node logs why it stopped");

    // The three others commit on, transactions included: PBFT tolerates one silent node of four.
    cluster.wait_progress(&current, 5, PATIENCE).await?;
    cluster.probe_transfer(1, &current, PATIENCE).await?;
    assert_eq!(cluster.height(OLD).await?, raised, "the old node applied nothing more");
    for i in current.clone() {
        let status = cluster.grpc_status(i).await?;
        assert_eq!((status.compatibility_version, status.halted.as_str()), (2, ""), "node {i}");
        assert_eq!(cluster.metric(i, "bcos_node_incompatible").await?, 0.0);
    }

    // Restarted as the same release, it refuses to start on this chain, saying why.
    let refused = cluster.restart_as(OLD, old_release()).await.expect_err("the old release does not start");
    let refused = format!("{refused:#}");
    assert!(refused.contains(&reason) && refused.contains("upgrade the node"), "{refused}");

    // Upgraded, it catches up and takes part again.
    cluster.restart_as(OLD, Launch::default()).await?;
    let head = cluster.heights(&current).await?.into_iter().max().unwrap_or_default();
    cluster.wait_height(&[OLD], head, PATIENCE).await?;
    cluster.wait_ready(&[OLD], PATIENCE).await?;
    let status = cluster.grpc_status(OLD).await?;
    assert_eq!((status.version.as_str(), status.max_compatibility_version), (NEW_RELEASE, 2));
    assert_eq!((status.compatibility_version, status.halted.as_str()), (2, ""));
    cluster.probe_transfer(OLD, &all, PATIENCE).await?;
    cluster.wait_vote(&[0], OLD, head, PATIENCE).await.context("the upgraded node votes")?;
    let height = cluster.wait_progress(&all, 2, PATIENCE).await?;
    cluster.assert_same_chain(&all, height, PATIENCE).await?;
    Ok(())
}
