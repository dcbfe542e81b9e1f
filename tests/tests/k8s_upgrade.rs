//! Grey upgrades end to end, on a real kube-apiserver and kube-controller-manager with the pod
//! runner as the kubelet: the example's four-member chain, under a steady load of transfers,
//! moves from one node version to the next by a change of `spec.version`, one node at a time
//! and never more than one consensus node down; then a broken version halts the rollout and the
//! operator puts the nodes it changed back on the version before.
//!
//! The two versions are the same `bcos-node` binary reporting the tag of its Pod's image as its
//! version (`BCOS_REPORTED_VERSION`, which the node offers for exactly this). A `-broken` tag
//! makes one consensus node fail at start-up, as a release that cannot open its data would, and
//! 0.1.0 plays a first release that executes compatibility version 1 only, so the operator raises
//! the chain's compatibility version to 2 once every node runs 0.2.0.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use alloy::{primitives::B256, providers::Provider};
use anyhow::{Context, ensure};
use bcos_operator::crd::{NodeRolloutState, RolloutPhase};
use bcos_sdk::client::NodeClient;
use bcos_tests::{
    node_binary,
    operator_chain::{CHAIN, FOUNDER_PODS, NAMESPACE, OperatorChain, STEP_TIMEOUT},
    wait_for,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::ListParams};

/// The consensus node a `-broken` version fails on.
const FAILS_ON: &str = "trade-finance-bank-b-0";
/// Consensus nodes of the example chain (bank-a's second node observes).
const CONSENSUS_PODS: [&str; 4] =
    ["trade-finance-bank-a-0", "trade-finance-bank-b-0", "trade-finance-logistics-0", "trade-finance-insurer-0"];
/// A whole rollout of five nodes on 2 shared cores.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);

/// The `bcos-node` the Pods run: the real binary, reporting its image's tag as its version.
fn versioned_node(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let script = dir.join("bcos-node-versioned");
    let node = node_binary()?;
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             tag=\"${{BCOS_POD_IMAGE##*:}}\"\n\
             case \"$tag\" in *-broken) if [ \"$POD_NAME\" = \"{FAILS_ON}\" ]; then\n\
               echo \"bcos-node $tag: cannot open the chain data\" >&2; exit 1; fi;; esac\n\
             # The first release executes compatibility version 1 only.\n\
             case \"$tag\" in 0.1.0) set -- \"$@\" --max-compatibility-version 1;; esac\n\
             BCOS_REPORTED_VERSION=\"$tag\" exec {} \"$@\"\n",
            node.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_change_rolls_node_by_node_under_load_and_a_broken_one_rolls_back() -> anyhow::Result<()> {
    let scripts = tempfile::tempdir()?;
    let f = OperatorChain::start(versioned_node(scripts.path())?, false).await?;
    let result = scenario(&f).await;
    if result.is_err() {
        eprintln!("{}", f.diagnostics(&["trade-finance-bank-a-1", FAILS_ON, "trade-finance-insurer-0"]));
        let events = f.plane.kubectl(["-n", NAMESPACE, "get", "events", "--sort-by=.lastTimestamp"]).await;
        eprintln!("--- events ---\n{}", events.unwrap_or_default());
        let strategies = f
            .plane
            .kubectl([
                "-n",
                NAMESPACE,
                "get",
                "statefulsets",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.spec.updateStrategy}{\"\\n\"}{end}",
            ])
            .await;
        eprintln!("--- update strategies ---\n{}", strategies.unwrap_or_default());
    }
    result
}

async fn scenario(f: &OperatorChain) -> anyhow::Result<()> {
    let chain = f.start_example_chain().await?;
    let status = chain.status.unwrap_or_default();
    ensure!(status.version.as_deref() == Some("0.1.0"), "status version {:?}", status.version);
    wait_for("every node to report 0.1.0", STEP_TIMEOUT, || async { Ok(all_report(f, "0.1.0").await.then_some(())) })
        .await?;
    let compatibility = wait_for("the chain's compatibility version in its status", STEP_TIMEOUT, || async {
        Ok(f.chain().await?.status.and_then(|status| status.compatibility_version))
    })
    .await?;
    ensure!(compatibility == 1, "a chain of first-release nodes runs compatibility {compatibility}");

    // The upgrade, under load.
    let report = under_load(f, async {
        f.patch_chain(r#"{"spec":{"version":"0.2.0"}}"#).await?;
        let chain = wait_for("the rollout to 0.2.0 to complete", ROLLOUT_TIMEOUT, || async {
            let chain = f.chain().await?;
            let done = chain
                .status
                .as_ref()
                .and_then(|status| status.rollout.as_ref())
                .is_some_and(|rollout| rollout.to_version == "0.2.0" && rollout.phase == RolloutPhase::Complete);
            Ok(done.then_some(chain))
        })
        .await?;
        Ok(chain)
    })
    .await?;
    let status = report.outcome.status.unwrap_or_default();
    ensure!(status.version.as_deref() == Some("0.2.0"), "status version {:?}", status.version);
    let rollout = status.rollout.context("no rollout in the status")?;
    ensure!(rollout.nodes.len() == 5, "the rollout covered {} nodes", rollout.nodes.len());
    ensure!(rollout.nodes.iter().all(|node| node.state == NodeRolloutState::Upgraded), "{:?}", rollout.nodes);
    ensure!(all_report(f, "0.2.0").await, "not every node reports 0.2.0");
    ensure!(report.most_consensus_down <= 1, "{} consensus nodes were down at once", report.most_consensus_down);
    // Every node now executes version 2: the operator raises the chain's compatibility version.
    wait_for("the compatibility version to be raised to 2", STEP_TIMEOUT, || async {
        let status = f.chain().await?.status.unwrap_or_default();
        Ok((status.compatibility_version == Some(2)).then_some(()))
    })
    .await?;
    let order = restarts(f).await?;
    ensure!(
        order.first().map(String::as_str) == Some("trade-finance-bank-a-1"),
        "the observer was not first: {order:?}"
    );
    eprintln!(
        "upgrade 0.1.0 -> 0.2.0: {} transfers acknowledged and committed, longest gap between blocks {} ms, \
         at most {} consensus node down, restart order {order:?}",
        report.committed, report.longest_gap_ms, report.most_consensus_down
    );

    // A broken version: bank-b's node never comes up on it; the rollout halts after the node
    // timeout and every node changed goes back to 0.2.0.
    f.patch_chain(r#"{"spec":{"version":"0.3.0-broken","upgrade":{"nodeTimeoutSeconds":30}}}"#).await?;
    let chain = wait_for("the broken rollout to be rolled back", ROLLOUT_TIMEOUT, || async {
        let chain = f.chain().await?;
        let rolled_back =
            chain.status.as_ref().and_then(|status| status.rollout.as_ref()).is_some_and(|rollout| {
                rollout.to_version == "0.3.0-broken" && rollout.phase == RolloutPhase::RolledBack
            });
        Ok(rolled_back.then_some(chain))
    })
    .await?;
    let status = chain.status.unwrap_or_default();
    let rollout = status.rollout.context("no rollout")?;
    let failed = rollout.nodes.iter().find(|node| node.name == FAILS_ON).context("bank-b's node not in the rollout")?;
    ensure!(failed.state == NodeRolloutState::Reverted, "{FAILS_ON} is {:?}", failed.state);
    ensure!(
        rollout.nodes.iter().all(|node| matches!(node.state, NodeRolloutState::Reverted | NodeRolloutState::Pending)),
        "{:?}",
        rollout.nodes
    );
    ensure!(status.version.as_deref() == Some("0.2.0"));
    let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded").context("no Degraded condition")?;
    ensure!(degraded.status == "True" && degraded.reason == "UpgradeRolledBack", "{degraded:?}");
    let events = f
        .plane
        .kubectl(["-n", NAMESPACE, "get", "events", "--field-selector", &format!("involvedObject.name={CHAIN}")])
        .await?;
    for reason in ["NodeUpgradeFailed", "RollbackStarted", "RolledBack"] {
        ensure!(events.contains(reason), "no {reason} Event:\n{events}");
    }
    wait_for("every node to report 0.2.0 again", STEP_TIMEOUT, || async {
        Ok(all_report(f, "0.2.0").await.then_some(()))
    })
    .await?;
    f.committing("trade-finance-insurer-0", 3).await?;
    f.transfer("trade-finance-insurer-0").await?;

    // Setting the version back clears the condition.
    f.patch_chain(r#"{"spec":{"version":"0.2.0"}}"#).await?;
    wait_for("the chain to be healthy again", STEP_TIMEOUT, || async {
        let conditions = f.chain().await?.status.map(|status| status.conditions).unwrap_or_default();
        Ok(conditions.iter().find(|c| c.type_ == "Degraded" && c.status == "False").map(drop))
    })
    .await?;
    Ok(())
}

/// What happened while the load ran.
struct LoadReport<T> {
    outcome: T,
    /// Transfers a node acknowledged, every one found committed afterwards.
    committed: usize,
    /// Longest time between consecutive blocks (block timestamps) while the load ran.
    longest_gap_ms: u64,
    /// Most consensus Pods not Ready at once, sampled every 200 ms.
    most_consensus_down: usize,
}

/// Runs `work` while transfers go to the founders' nodes in turn (a node that is down is
/// skipped), watching how many consensus Pods are down; then checks every acknowledged transfer
/// committed and measures the longest gap between blocks.
async fn under_load<T>(
    f: &OperatorChain,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<LoadReport<T>> {
    let first_block = f.height("trade-finance-bank-a-0").await?;
    let done = AtomicBool::new(false);
    let acknowledged = Mutex::new(Vec::<B256>::new());
    let most_down = AtomicUsize::new(0);
    let sending = async {
        let mut turn = 0usize;
        let mut pace = tokio::time::interval(Duration::from_millis(200));
        while !done.load(Ordering::Relaxed) {
            pace.tick().await;
            turn += 1;
            let pod = FOUNDER_PODS[turn % FOUNDER_PODS.len()];
            // A node being restarted refuses or does not answer: the next tick goes elsewhere.
            if let Ok(Ok(hash)) = tokio::time::timeout(Duration::from_secs(5), f.send_transfer(pod)).await {
                acknowledged.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(hash);
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let pods: Api<Pod> = Api::namespaced(f.plane.client().await?, NAMESPACE);
    let watching = async {
        let mut sample = tokio::time::interval(Duration::from_millis(200));
        while !done.load(Ordering::Relaxed) {
            sample.tick().await;
            let listed = pods.list(&ListParams::default().labels(&format!("bcos.dev/chain={CHAIN}"))).await?;
            let ready: BTreeSet<String> = listed
                .items
                .iter()
                .filter(|pod| pod.metadata.deletion_timestamp.is_none() && is_ready(pod))
                .filter_map(|pod| pod.metadata.name.clone())
                .collect();
            let down = CONSENSUS_PODS.iter().filter(|name| !ready.contains(**name)).count();
            most_down.fetch_max(down, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>(())
    };
    let working = async {
        let outcome = work.await;
        done.store(true, Ordering::Relaxed);
        outcome
    };
    let (outcome, sent, watched) = tokio::join!(working, sending, watching);
    let (outcome, ()) = (outcome?, sent?);
    watched?;
    let hashes = acknowledged.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?;
    ensure!(hashes.len() >= 10, "only {} transfers were acknowledged during the rollout", hashes.len());
    let reader = "trade-finance-insurer-0";
    let provider = f.provider(reader)?;
    for hash in &hashes {
        let receipt = wait_for(&format!("acknowledged transfer {hash} to commit"), STEP_TIMEOUT, || async {
            Ok(provider.get_transaction_receipt(*hash).await?)
        })
        .await?;
        ensure!(receipt.status(), "transfer {hash} failed");
    }
    let last_block = f.height(reader).await?;
    let ip = f.runner.pod_ip(NAMESPACE, reader).context("no address")?;
    let mut client = NodeClient::connect(format!("http://{ip}:50051")).await?;
    let mut longest_gap_ms = 0;
    let mut previous: Option<u64> = None;
    for number in first_block..=last_block {
        let block = client.block_by_number(number).await?;
        let timestamp = block.header.context("a block without a header")?.timestamp_ms;
        if let Some(previous) = previous {
            longest_gap_ms = longest_gap_ms.max(timestamp.saturating_sub(previous));
        }
        previous = Some(timestamp);
    }
    ensure!(last_block > first_block + 10, "only {} blocks during the rollout", last_block - first_block);
    Ok(LoadReport { outcome, committed: hashes.len(), longest_gap_ms, most_consensus_down: most_down.into_inner() })
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether every founder node reports `version` over gRPC.
async fn all_report(f: &OperatorChain, version: &str) -> bool {
    let mut versions = HashMap::new();
    for pod in FOUNDER_PODS {
        let reported = match f.runner.pod_ip(NAMESPACE, pod) {
            Some(ip) => match NodeClient::connect(format!("http://{ip}:50051")).await {
                Ok(mut client) => client.status().await.map(|status| status.version).ok(),
                Err(_) => None,
            },
            None => None,
        };
        versions.insert(pod, reported);
    }
    let all = versions.values().all(|reported| reported.as_deref() == Some(version));
    if !all {
        eprintln!("waiting for {version}: {versions:?}");
    }
    all
}

/// The Pods the operator restarted, in order, from its `NodeUpgrading` Events.
async fn restarts(f: &OperatorChain) -> anyhow::Result<Vec<String>> {
    let events = f
        .plane
        .kubectl([
            "-n",
            NAMESPACE,
            "get",
            "events",
            "--field-selector",
            "reason=NodeUpgrading",
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "jsonpath={range .items[*]}{.note}{.message}{\"\\n\"}{end}",
        ])
        .await?;
    Ok(events
        .lines()
        .filter_map(|line| line.strip_prefix("restarting "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}
