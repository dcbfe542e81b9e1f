//! The operator on a real kube-apiserver and kube-controller-manager, with the pod runner as the
//! kubelet: the example manifests become a running chain; a deleted Pod comes back on its data; a
//! Member added later joins as an observer and is voted in as a consensus node; a deleted Member
//! leaves the registry and has its CA revoked while the chain keeps committing; invalid resources
//! are refused or reported.

use std::path::Path;

use alloy::providers::Provider;
use anyhow::{Context, ensure};
use bcos_operator::crd::NodeType;
use bcos_tests::{
    node_binary,
    operator_chain::{FOUNDER_PODS, NAMESPACE, OperatorChain as Fixture, STEP_TIMEOUT, leads},
    wait_for,
};
use kube::api::DeleteParams;

/// pbft -> raft -> pbft by editing the resource while transfers keep coming: each switch is
/// scheduled on chain, every node reports the new mode, every node has the same block at the
/// switch height, and every transfer sent meanwhile commits.
async fn switch_consensus_under_load(f: &Fixture) -> anyhow::Result<()> {
    let done = std::sync::atomic::AtomicBool::new(false);
    let switching = async {
        let result = async {
            let mut heights = Vec::new();
            for mode in ["raft", "pbft"] {
                let patch = format!("{{\"spec\":{{\"consensus\":{{\"mode\":\"{mode}\"}}}}}}");
                f.patch_chain(&patch).await?;
                let last_seen = std::sync::Mutex::new(String::new());
                let height = wait_for(&format!("every node to run {mode}"), STEP_TIMEOUT, || async {
                    let status = f.chain().await?.status.unwrap_or_default();
                    let all_switched =
                        status.consensus_mode.as_deref() == Some(mode) && status.pending_consensus_mode.is_none();
                    if let Ok(mut last) = last_seen.lock() {
                        *last = format!("{status:?}");
                    }
                    Ok(status.consensus_switch_height.filter(|_| all_switched))
                })
                .await
                .with_context(|| {
                    format!("last chain status: {}", last_seen.lock().map(|s| s.clone()).unwrap_or_default())
                })?;
                let mut hashes = std::collections::BTreeSet::new();
                for pod in FOUNDER_PODS {
                    let provider = f.provider(pod)?;
                    // An observer may still be a block or two behind.
                    let block = wait_for(&format!("{pod} to have block {height}"), STEP_TIMEOUT, || async {
                        Ok(provider.get_block_by_number(height.into()).await?)
                    })
                    .await?;
                    hashes.insert(block.header.hash);
                }
                ensure!(hashes.len() == 1, "the nodes disagree on block {height} where {mode} took over: {hashes:?}");
                f.committing("trade-finance-bank-b-0", 3).await?;
                heights.push(height);
            }
            Ok::<_, anyhow::Error>(heights)
        }
        .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    };
    let loading = async {
        let mut committed = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            f.transfer("trade-finance-bank-a-0").await?;
            committed += 1;
        }
        Ok::<_, anyhow::Error>(committed)
    };
    let (heights, committed) = tokio::join!(switching, loading);
    let (heights, committed) = (heights?, committed?);
    ensure!(heights[0] < heights[1], "switch heights {heights:?} are not in order");
    ensure!(committed >= 3, "only {committed} transfers went through during the switches");
    eprintln!("consensus switches at blocks {heights:?}; {committed} transfers committed meanwhile");
    Ok(())
}

/// The RocksDB identity of a node's data on its claim: it changes only if the data is recreated.
fn data_identity(runner_root: &Path, pod: &str) -> anyhow::Result<String> {
    let file = runner_root.join("claims").join(NAMESPACE).join(format!("data-{pod}")).join("data/chain/IDENTITY");
    std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manifests_become_a_chain_that_members_join_and_leave() -> anyhow::Result<()> {
    let fixture = Fixture::start(node_binary()?, true).await?;
    let result = scenario(&fixture).await;
    if result.is_err() {
        eprintln!("{}", fixture.diagnostics(&["trade-finance-bank-a-0", "trade-finance-newbank-0"]));
    }
    result?;
    hand_over(fixture).await
}

/// The leader stops gracefully (SIGTERM), releasing its lease, and the standby takes over.
async fn hand_over(f: Fixture) -> anyhow::Result<()> {
    let Some(standby) = f.standby.as_ref() else { anyhow::bail!("no standby replica was started") };
    ensure!(leads(standby).await == Some(false), "the standby leads while the first replica does");
    // Bindings drop in reverse order: the operators first, the control plane last.
    let Fixture { plane: _plane, runner: _runner, standby, mut operator, .. } = f;
    let mut standby = standby.context("no standby replica")?;
    ensure!(operator.stop()?, "the operator did not exit cleanly on SIGTERM");
    ensure!(operator.log().contains("released the leader lease"), "the lease was not released:\n{}", operator.log());
    wait_for("the standby to take over", STEP_TIMEOUT, || async { Ok(leads(&standby).await.filter(|leads| *leads)) })
        .await?;
    ensure!(standby.log().contains("leading"), "the standby never said it leads");
    // Stopped at once after taking over, while its controllers are still starting, it exits too.
    ensure!(standby.stop()?, "the new leader did not exit cleanly on SIGTERM:\n{}", standby.log());
    Ok(())
}

async fn scenario(f: &Fixture) -> anyhow::Result<()> {
    let bank_a = "trade-finance-bank-a-0";
    // The README's install steps: namespace, chain, founding members.
    let chain = f.start_example_chain().await?;
    let status = chain.status.unwrap_or_default();
    assert_eq!(status.consensus_mode.as_deref(), Some("pbft"));
    assert_eq!(status.nodes.observer, 1);
    assert_eq!(status.members.len(), 4);
    f.committing(bank_a, 3).await?;
    f.transfer(bank_a).await?;
    // Four PBFT consensus nodes tolerate one fault: one consensus Pod may be disrupted at a time.
    let budget = f
        .plane
        .kubectl(["-n", NAMESPACE, "get", "pdb", "trade-finance-consensus", "-o", "jsonpath={.spec.maxUnavailable}"])
        .await?;
    assert_eq!(budget.trim(), "1");

    // A deleted Pod comes back on the same data and catches up.
    let bank_b = "trade-finance-bank-b-0";
    let root = f.dir.path().join("runner");
    let identity = data_identity(&root, bank_b)?;
    let before = f.height(bank_b).await?;
    f.plane.kubectl(["-n", NAMESPACE, "delete", "pod", bank_b]).await?;
    wait_for("the deleted Pod to be back and caught up", STEP_TIMEOUT, || async {
        Ok(f.height(bank_b).await.ok().filter(|height| *height > before + 2))
    })
    .await?;
    assert_eq!(data_identity(&root, bank_b)?, identity, "the Pod came back on new data");

    // A new member joins as an observer, syncs, and is voted in as a consensus node.
    let newbank = r#"
apiVersion: bcos.dev/v1alpha1
kind: Member
metadata: {name: newbank, namespace: bcos}
spec:
  chainRef: {name: trade-finance}
  institution: {name: New Bank, id: newbank}
  consensusNodes: 1
  storage: {size: 1Gi}
"#;
    let file = f.dir.path().join("newbank.yaml");
    std::fs::write(&file, newbank)?;
    f.plane.kubectl(["apply", "-f", &file.display().to_string()]).await?;
    wait_for("newbank's node to be a ready consensus node", STEP_TIMEOUT, || async {
        let member = f.members.get("newbank").await?;
        let nodes = member.status.map(|status| status.nodes).unwrap_or_default();
        Ok(nodes.first().filter(|node| node.ready && node.registered_type == NodeType::Consensus).cloned())
    })
    .await?;
    wait_for("the chain to count 5 consensus nodes", STEP_TIMEOUT, || async {
        Ok((f.chain().await?.status.unwrap_or_default().nodes.consensus == 5).then_some(()))
    })
    .await?;
    f.committing("trade-finance-newbank-0", 3).await?;
    f.transfer("trade-finance-newbank-0").await?;

    // Deleting it takes its node out of the registry and revokes its CA before its objects go.
    f.members.delete("newbank", &DeleteParams::default()).await?;
    wait_for("newbank to be gone", STEP_TIMEOUT, || async {
        Ok(f.members.get_opt("newbank").await?.is_none().then_some(()))
    })
    .await?;
    let events =
        f.plane.kubectl(["-n", NAMESPACE, "get", "events", "--field-selector", "involvedObject.name=newbank"]).await?;
    for reason in ["RemoveNode", "RevokeMemberCa", "LeftChain"] {
        ensure!(events.contains(reason), "no {reason} Event for newbank:\n{events}");
    }
    wait_for("the chain to count 4 consensus nodes", STEP_TIMEOUT, || async {
        Ok((f.chain().await?.status.unwrap_or_default().nodes.consensus == 4).then_some(()))
    })
    .await?;
    f.committing(bank_a, 3).await?;
    f.transfer(bank_a).await?;

    switch_consensus_under_load(f).await?;

    // Invalid input: refused by the schema, or reported in a condition.
    let invalid = f.dir.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        "apiVersion: bcos.dev/v1alpha1\nkind: ConsortiumChain\nmetadata: {name: bad, namespace: bcos}\nspec:\n  chainId: 0\n  image: {repository: x}\n  version: '1'\n  foundingMembers: [a]\n  consensus: {mode: hotstuff}\n",
    )?;
    let refused = f
        .plane
        .kubectl(["apply", "-f", &invalid.display().to_string()])
        .await
        .expect_err("an invalid chain is refused");
    let refused = refused.to_string();
    ensure!(refused.contains("spec.chainId") && refused.contains("hotstuff"), "unclear refusal: {refused}");
    let orphan = f.dir.path().join("orphan.yaml");
    std::fs::write(
        &orphan,
        "apiVersion: bcos.dev/v1alpha1\nkind: Member\nmetadata: {name: orphan, namespace: bcos}\nspec:\n  chainRef: {name: no-such-chain}\n  institution: {name: Orphan, id: orphan}\n  consensusNodes: 1\n",
    )?;
    f.plane.kubectl(["apply", "-f", &orphan.display().to_string()]).await?;
    wait_for("the orphan to say what it waits for", STEP_TIMEOUT, || async {
        let member = f.members.get("orphan").await?;
        let conditions = member.status.map(|status| status.conditions).unwrap_or_default();
        Ok(conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.reason == "ChainNotFound" && c.message.contains("no-such-chain"))
            .map(drop))
    })
    .await?;
    // What the genesis fixed cannot change: the chain says so and applies nothing until undone.
    let patch = |chain_id: u64| format!("{{\"spec\":{{\"chainId\":{chain_id}}}}}");
    f.patch_chain(&patch(7)).await?;
    wait_for("the chain to refuse the new chain id", STEP_TIMEOUT, || async {
        let conditions = f.chain().await?.status.map(|status| status.conditions).unwrap_or_default();
        Ok(conditions
            .iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "ImmutableFieldChanged")
            .map(drop))
    })
    .await?;
    f.patch_chain(&patch(20200)).await?;
    wait_for("the chain to recover once the chain id is back", STEP_TIMEOUT, || async {
        let conditions = f.chain().await?.status.map(|status| status.conditions).unwrap_or_default();
        Ok(conditions.iter().find(|c| c.type_ == "Degraded" && c.status == "False").map(drop))
    })
    .await?;
    let metrics = bcos_tests::http_client().get(format!("{}/metrics", f.operator.http())).send().await?.text().await?;
    ensure!(metrics.contains("bcos_operator_reconciles_total"), "operator metrics missing:\n{metrics}");
    Ok(())
}
