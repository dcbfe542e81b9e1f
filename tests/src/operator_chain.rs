//! The operator's end-to-end fixture: a control plane with the operator's Helm chart installed,
//! the pod runner as its kubelet, and the operator running as the chart's ServiceAccount, plus
//! what the tests do with the chain it runs (JSON-RPC through a Pod, heights, transfers).

use std::{collections::HashMap, path::Path, path::PathBuf, time::Duration};

use alloy::{
    network::EthereumWallet,
    primitives::{Address, B256, U256},
    providers::{Provider, ProviderBuilder, RootProvider},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use anyhow::{Context, ensure};
use bcos_operator::crd::{ConsortiumChain, Member};
use kube::Api;

use crate::{
    kube::{ControlPlane, PodRunner, PodRunnerConfig},
    operator::OperatorProcess,
    rpc_client, wait_for,
};

/// Namespace of the example manifests.
pub const NAMESPACE: &str = "bcos";
/// Where the chart installs the operator (the README's namespace).
pub const OPERATOR_NAMESPACE: &str = "bcos-system";
/// The example chain.
pub const CHAIN: &str = "trade-finance";
/// Chain start-up on 2 shared cores: an API server, five debug-build nodes and the operator.
pub const START_TIMEOUT: Duration = Duration::from_secs(300);
/// One step of a scenario.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(240);

/// Every node Pod of the example's four founding members.
pub const FOUNDER_PODS: [&str; 5] = [
    "trade-finance-bank-a-0",
    "trade-finance-bank-a-1",
    "trade-finance-bank-b-0",
    "trade-finance-logistics-0",
    "trade-finance-insurer-0",
];

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Dropped in this order: the operators, then the runner's Pods, then the control plane.
pub struct OperatorChain {
    /// The leading operator.
    pub operator: OperatorProcess,
    /// A second replica, started after the first when asked for: it stands by.
    pub standby: Option<OperatorProcess>,
    /// The kubelet.
    pub runner: PodRunner,
    /// The API server.
    pub plane: ControlPlane,
    /// ConsortiumChains of [`NAMESPACE`].
    pub chains: Api<ConsortiumChain>,
    /// Members of [`NAMESPACE`].
    pub members: Api<Member>,
    /// Logs, the runner's volumes, scratch files.
    pub dir: tempfile::TempDir,
}

impl OperatorChain {
    /// Installs the chart and starts the operator (and a standby replica when `standby`); Pods
    /// run `bcos-node` as `node_executable`.
    pub async fn start(node_executable: PathBuf, standby: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let plane = ControlPlane::start().await?;
        // The README's install: the Helm chart (CRDs, RBAC, Deployment). Its Deployment is scaled
        // to zero: the operator runs as a process in its stead, as the chart's ServiceAccount, so
        // the chart's RBAC must allow everything the operator does.
        let rendered = dir.path().join("chart.yaml");
        std::fs::write(&rendered, crate::chart::render_chart(&[("replicas", "0")])?)?;
        plane.create_namespace(OPERATOR_NAMESPACE).await?;
        plane.kubectl(["apply", "-f", &rendered.display().to_string()]).await?;
        let kubeconfig = plane.service_account_kubeconfig(OPERATOR_NAMESPACE, "bcos-operator").await?;
        let client = plane.client().await?;
        let executables = HashMap::from([("bcos-node".to_owned(), node_executable)]);
        let runner =
            PodRunner::start(client.clone(), PodRunnerConfig { root: dir.path().join("runner"), executables }).await?;
        let operator = OperatorProcess::start(&kubeconfig, OPERATOR_NAMESPACE, &dir.path().join("operator.log"))?;
        wait_for("the first operator to lead", STEP_TIMEOUT, || async {
            Ok(leads(&operator).await.filter(|leads| *leads))
        })
        .await?;
        let standby = match standby {
            true => Some(OperatorProcess::start(&kubeconfig, OPERATOR_NAMESPACE, &dir.path().join("standby.log"))?),
            false => None,
        };
        Ok(Self {
            chains: Api::namespaced(client.clone(), NAMESPACE),
            members: Api::namespaced(client, NAMESPACE),
            plane,
            runner,
            operator,
            standby,
            dir,
        })
    }

    /// `kubectl apply -f manifests/<manifest>`.
    pub async fn apply(&self, manifest: &str) -> anyhow::Result<String> {
        self.plane.kubectl(["apply", "-f", &repo().join("manifests").join(manifest).display().to_string()]).await
    }

    /// `kubectl patch` of the example chain with a JSON merge patch.
    pub async fn patch_chain(&self, patch: &str) -> anyhow::Result<String> {
        self.plane.kubectl(["-n", NAMESPACE, "patch", "consortiumchain", CHAIN, "--type", "merge", "-p", patch]).await
    }

    /// The example chain as the API server has it.
    pub async fn chain(&self) -> anyhow::Result<ConsortiumChain> {
        Ok(self.chains.get(CHAIN).await?)
    }

    /// Applies the example's namespace, chain and founding members and waits until all five
    /// nodes are ready, four of them voting, and blocks are committed.
    pub async fn start_example_chain(&self) -> anyhow::Result<ConsortiumChain> {
        for manifest in ["namespace.yaml", "chain.yaml", "members.yaml"] {
            self.apply(manifest).await?;
        }
        wait_for("the chain to run", START_TIMEOUT, || async {
            let chain = self.chain().await?;
            let status = chain.status.clone().unwrap_or_default();
            Ok((status.nodes.ready == status.nodes.desired
                && status.nodes.desired == 5
                && status.height >= 2
                && status.nodes.consensus == 4)
                .then_some(chain))
        })
        .await
    }

    /// JSON-RPC of a node Pod, reached at its Pod address as a client inside the cluster would.
    pub fn rpc(&self, pod: &str) -> anyhow::Result<String> {
        let ip = self.runner.pod_ip(NAMESPACE, pod).with_context(|| format!("{pod} has no address"))?;
        Ok(format!("http://{ip}:8545"))
    }

    /// A read-only client of `pod`'s JSON-RPC.
    pub fn provider(&self, pod: &str) -> anyhow::Result<RootProvider> {
        Ok(RootProvider::new(rpc_client(self.rpc(pod)?.parse()?)))
    }

    /// `pod`'s head block number.
    pub async fn height(&self, pod: &str) -> anyhow::Result<u64> {
        Ok(self.provider(pod)?.get_block_number().await?)
    }

    /// Waits until the chain's height passes its current one by `blocks`, read through `pod`.
    pub async fn committing(&self, pod: &str, blocks: u64) -> anyhow::Result<u64> {
        let start = self.height(pod).await?;
        wait_for(&format!("{blocks} new blocks at {pod}"), STEP_TIMEOUT, || async {
            Ok(self.height(pod).await.ok().filter(|height| *height >= start + blocks))
        })
        .await
    }

    /// Sends a value transfer from a fresh account with alloy through `pod`; returns its hash
    /// once the node acknowledged it.
    pub async fn send_transfer(&self, pod: &str) -> anyhow::Result<B256> {
        let signer = PrivateKeySigner::random();
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_client(rpc_client(self.rpc(pod)?.parse()?));
        let tx = TransactionRequest::default().to(Address::repeat_byte(0x42)).value(U256::ZERO).gas_limit(21_000);
        Ok(*provider.send_transaction(tx).await?.tx_hash())
    }

    /// A transfer through `pod`, waited for until its successful receipt.
    pub async fn transfer(&self, pod: &str) -> anyhow::Result<()> {
        let hash = self.send_transfer(pod).await?;
        let provider = self.provider(pod)?;
        let receipt = wait_for(&format!("a receipt for {hash} at {pod}"), STEP_TIMEOUT, || async {
            Ok(provider.get_transaction_receipt(hash).await?)
        })
        .await?;
        ensure!(receipt.status(), "the transfer through {pod} failed");
        Ok(())
    }

    /// The operator's log and `pods`' logs, the last lines of each.
    pub fn diagnostics(&self, pods: &[&str]) -> String {
        let mut out = format!("--- operator log (tail) ---\n{}\n", tail(&self.operator.log(), 60));
        for pod in pods {
            let log = std::fs::read_to_string(self.runner.log_file(NAMESPACE, pod)).unwrap_or_default();
            out += &format!("--- {pod} log (tail) ---\n{}\n", tail(&log, 30));
        }
        out
    }
}

/// Whether an operator reports holding the lease, once its endpoint answers.
pub async fn leads(operator: &OperatorProcess) -> Option<bool> {
    let metrics =
        crate::http_client().get(format!("{}/metrics", operator.http())).send().await.ok()?.text().await.ok()?;
    metrics.lines().find_map(|line| line.strip_prefix("bcos_operator_leader ")).map(|value| value.trim() == "1")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
