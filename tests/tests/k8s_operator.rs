//! The operator on a real kube-apiserver and kube-controller-manager, with the pod runner as the
//! kubelet: the example manifests become a running chain; a deleted Pod comes back on its data; a
//! Member added later joins as an observer and is voted in as a consensus node; a deleted Member
//! leaves the registry and has its CA revoked while the chain keeps committing; invalid resources
//! are refused or reported.

use std::{collections::HashMap, path::Path, time::Duration};

use alloy::{
    network::EthereumWallet,
    primitives::{Address, U256},
    providers::{Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use anyhow::{Context, ensure};
use bcos_operator::crd::{ConsortiumChain, Member, NodeType};
use bcos_tests::{
    kube::{ControlPlane, PodRunner, PodRunnerConfig},
    node_binary,
    operator::OperatorProcess,
    rpc_client, wait_for,
};
use kube::{Api, api::DeleteParams};

const NAMESPACE: &str = "bcos";
/// Where the chart installs the operator (the README's namespace).
const OPERATOR_NAMESPACE: &str = "bcos-system";
const CHAIN: &str = "trade-finance";
/// Chain start-up on 2 shared cores: an API server, five debug-build nodes and the operator.
const START_TIMEOUT: Duration = Duration::from_secs(300);
const STEP_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Dropped in this order: the operators, then the runner's Pods, then the control plane.
struct Fixture {
    operator: OperatorProcess,
    /// A second replica, started after the first: it stands by until the first lets go.
    standby: OperatorProcess,
    runner: PodRunner,
    plane: ControlPlane,
    chains: Api<ConsortiumChain>,
    members: Api<Member>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let plane = ControlPlane::start().await?;
        // The README's install: the Helm chart (CRDs, RBAC, Deployment). Its Deployment is scaled
        // to zero: the operator runs as a process in its stead, as the chart's ServiceAccount, so
        // the chart's RBAC must allow everything the operator does.
        let rendered = dir.path().join("chart.yaml");
        std::fs::write(&rendered, bcos_tests::chart::render_chart(&[("replicas", "0")])?)?;
        plane.create_namespace(OPERATOR_NAMESPACE).await?;
        plane.kubectl(["apply", "-f", &rendered.display().to_string()]).await?;
        let kubeconfig = plane.service_account_kubeconfig(OPERATOR_NAMESPACE, "bcos-operator").await?;
        let client = plane.client().await?;
        let executables = HashMap::from([("bcos-node".to_owned(), node_binary()?)]);
        let runner =
            PodRunner::start(client.clone(), PodRunnerConfig { root: dir.path().join("runner"), executables }).await?;
        let operator = OperatorProcess::start(&kubeconfig, OPERATOR_NAMESPACE, &dir.path().join("operator.log"))?;
        wait_for("the first operator to lead", STEP_TIMEOUT, || async {
            Ok(leads(&operator).await.filter(|leads| *leads))
        })
        .await?;
        let standby = OperatorProcess::start(&kubeconfig, OPERATOR_NAMESPACE, &dir.path().join("standby.log"))?;
        Ok(Self {
            chains: Api::namespaced(client.clone(), NAMESPACE),
            members: Api::namespaced(client, NAMESPACE),
            plane,
            runner,
            operator,
            standby,
            _dir: dir,
        })
    }

    async fn apply(&self, manifest: &str) -> anyhow::Result<String> {
        self.plane.kubectl(["apply", "-f", &repo().join("manifests").join(manifest).display().to_string()]).await
    }

    async fn chain(&self) -> anyhow::Result<ConsortiumChain> {
        Ok(self.chains.get(CHAIN).await?)
    }

    /// JSON-RPC of a node Pod, reached at its Pod address as a client inside the cluster would.
    fn rpc(&self, pod: &str) -> anyhow::Result<String> {
        let ip = self.runner.pod_ip(NAMESPACE, pod).with_context(|| format!("{pod} has no address"))?;
        Ok(format!("http://{ip}:8545"))
    }

    async fn height(&self, pod: &str) -> anyhow::Result<u64> {
        let url = self.rpc(pod)?.parse()?;
        Ok(alloy::providers::RootProvider::<alloy::network::Ethereum>::new(rpc_client(url)).get_block_number().await?)
    }

    /// Waits until the chain's height passes `above` by `blocks`, read through `pod`.
    async fn committing(&self, pod: &str, blocks: u64) -> anyhow::Result<u64> {
        let start = self.height(pod).await?;
        wait_for(&format!("{blocks} new blocks at {pod}"), STEP_TIMEOUT, || async {
            Ok(self.height(pod).await.ok().filter(|height| *height >= start + blocks))
        })
        .await
    }

    /// A value transfer sent with alloy through `pod`, waited for until its receipt.
    async fn transfer(&self, pod: &str) -> anyhow::Result<()> {
        let signer = PrivateKeySigner::random();
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_client(rpc_client(self.rpc(pod)?.parse()?));
        let tx = TransactionRequest::default().to(Address::repeat_byte(0x42)).value(U256::ZERO).gas_limit(21_000);
        let receipt =
            tokio::time::timeout(STEP_TIMEOUT, async { provider.send_transaction(tx).await?.get_receipt().await })
                .await
                .context("no receipt in time")??;
        ensure!(receipt.status(), "the transfer through {pod} failed");
        Ok(())
    }

    fn diagnostics(&self) -> String {
        let mut out = format!("--- operator log (tail) ---\n{}\n", tail(&self.operator.log(), 60));
        for pod in ["trade-finance-bank-a-0", "trade-finance-newbank-0"] {
            let log = std::fs::read_to_string(self.runner.log_file(NAMESPACE, pod)).unwrap_or_default();
            out += &format!("--- {pod} log (tail) ---\n{}\n", tail(&log, 30));
        }
        out
    }
}

/// Whether an operator reports holding the lease, once its endpoint answers.
async fn leads(operator: &OperatorProcess) -> Option<bool> {
    let metrics =
        bcos_tests::http_client().get(format!("{}/metrics", operator.http())).send().await.ok()?.text().await.ok()?;
    metrics.lines().find_map(|line| line.strip_prefix("bcos_operator_leader ")).map(|value| value.trim() == "1")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Every node Pod of the four founding members.
const FOUNDER_PODS: [&str; 5] = [
    "trade-finance-bank-a-0",
    "trade-finance-bank-a-1",
    "trade-finance-bank-b-0",
    "trade-finance-logistics-0",
    "trade-finance-insurer-0",
];

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
                f.plane
                    .kubectl(["-n", NAMESPACE, "patch", "consortiumchain", CHAIN, "--type", "merge", "-p", &patch])
                    .await?;
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
                    let url = f.rpc(pod)?.parse()?;
                    let provider = alloy::providers::RootProvider::<alloy::network::Ethereum>::new(rpc_client(url));
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
    let fixture = Fixture::start().await?;
    let result = scenario(&fixture).await;
    if result.is_err() {
        eprintln!("{}", fixture.diagnostics());
    }
    result?;
    hand_over(fixture).await
}

/// The leader stops gracefully (SIGTERM), releasing its lease, and the standby takes over.
async fn hand_over(f: Fixture) -> anyhow::Result<()> {
    ensure!(leads(&f.standby).await == Some(false), "the standby leads while the first replica does");
    // Bindings drop in reverse order: the operators first, the control plane last.
    let Fixture { plane: _plane, runner: _runner, mut standby, mut operator, .. } = f;
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
    for manifest in ["namespace.yaml", "chain.yaml", "members.yaml"] {
        f.apply(manifest).await?;
    }
    let chain = wait_for("the chain to run", START_TIMEOUT, || async {
        let chain = f.chain().await?;
        let status = chain.status.clone().unwrap_or_default();
        Ok((status.nodes.ready == status.nodes.desired
            && status.nodes.desired == 5
            && status.height >= 2
            && status.nodes.consensus == 4)
            .then_some(chain))
    })
    .await?;
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
    let root = f._dir.path().join("runner");
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
    let file = f._dir.path().join("newbank.yaml");
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
    let invalid = f._dir.path().join("invalid.yaml");
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
    let orphan = f._dir.path().join("orphan.yaml");
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
    f.plane.kubectl(["-n", NAMESPACE, "patch", "consortiumchain", CHAIN, "--type", "merge", "-p", &patch(7)]).await?;
    wait_for("the chain to refuse the new chain id", STEP_TIMEOUT, || async {
        let conditions = f.chain().await?.status.map(|status| status.conditions).unwrap_or_default();
        Ok(conditions
            .iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "ImmutableFieldChanged")
            .map(drop))
    })
    .await?;
    f.plane
        .kubectl(["-n", NAMESPACE, "patch", "consortiumchain", CHAIN, "--type", "merge", "-p", &patch(20200)])
        .await?;
    wait_for("the chain to recover once the chain id is back", STEP_TIMEOUT, || async {
        let conditions = f.chain().await?.status.map(|status| status.conditions).unwrap_or_default();
        Ok(conditions.iter().find(|c| c.type_ == "Degraded" && c.status == "False").map(drop))
    })
    .await?;
    let metrics = bcos_tests::http_client().get(format!("{}/metrics", f.operator.http())).send().await?.text().await?;
    ensure!(metrics.contains("bcos_operator_reconciles_total"), "operator metrics missing:\n{metrics}");
    Ok(())
}
