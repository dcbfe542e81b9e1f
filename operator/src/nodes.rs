//! Talking to a chain's running nodes: where their Pods are, what each reports over gRPC, and a
//! governance session through one of them.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use alloy_primitives::B256;
use bcos_sdk::{
    client::NodeClient,
    crypto::AccountKey,
    governance::{GovernanceError, Governor},
    proto,
    types::system::{INodeRegistry, NODE_REGISTRY_ADDRESS},
};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::ListParams};

use crate::names::{self, GRPC_PORT};

/// How long one status request may take; a node slower than this counts as not answering.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// A node Pod as the API server shows it.
#[derive(Debug, Clone)]
pub struct PodEndpoint {
    /// The Pod's name.
    pub name: String,
    /// Its address, once it has one.
    pub ip: Option<IpAddr>,
    /// Its Ready condition.
    pub ready: bool,
    /// Its `bcos.dev/node-type` label.
    pub node_type_label: Option<String>,
    /// Its `bcos.dev/member` label.
    pub member: Option<String>,
    /// The tag of its node container's image.
    pub image_version: Option<String>,
}

impl PodEndpoint {
    fn of(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Self {
            name: pod.name_any(),
            ip: status.and_then(|status| status.pod_ip.as_deref()).and_then(|ip| ip.parse().ok()),
            ready: ready && pod.metadata.deletion_timestamp.is_none(),
            node_type_label: pod.labels().get(names::NODE_TYPE_LABEL).cloned(),
            member: pod.labels().get(names::MEMBER_LABEL).cloned(),
            image_version: pod
                .spec
                .as_ref()
                .and_then(|spec| spec.containers.first())
                .and_then(|container| container.image.as_deref())
                .and_then(image_tag),
        }
    }

    /// The node's gRPC endpoint.
    pub fn grpc(&self) -> Option<String> {
        self.ip.map(|ip| match ip {
            IpAddr::V4(ip) => format!("http://{ip}:{GRPC_PORT}"),
            IpAddr::V6(ip) => format!("http://[{ip}]:{GRPC_PORT}"),
        })
    }
}

/// The tag of image reference `image` (`repo:tag`, `registry:5000/repo:tag@sha256:…`).
pub fn image_tag(image: &str) -> Option<String> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, tag)| tag.to_owned())
}

/// The Pods matching `selector`, by name.
pub async fn pods(api: &Api<Pod>, selector: &str) -> Result<Vec<PodEndpoint>, kube::Error> {
    let mut pods: Vec<PodEndpoint> =
        api.list(&ListParams::default().labels(selector)).await?.items.iter().map(PodEndpoint::of).collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pods)
}

/// What a node reports about itself, or `None` when it does not answer in time.
pub async fn status(pod: &PodEndpoint) -> Option<proto::NodeStatus> {
    let endpoint = pod.grpc()?;
    let query = async {
        let mut client = NodeClient::connect(endpoint).await.ok()?;
        client.status().await.ok()
    };
    tokio::time::timeout(STATUS_TIMEOUT, query).await.ok().flatten()
}

/// A governance session through the first ready node of `pods` that answers.
pub async fn governor(pods: &[PodEndpoint], key: &AccountKey) -> Option<Governor> {
    for pod in pods.iter().filter(|pod| pod.ready) {
        let Some(endpoint) = pod.grpc() else { continue };
        if let Ok(governor) = Governor::connect(&endpoint, key.clone()).await {
            return Some(governor);
        }
    }
    None
}

/// The chain's node registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    /// Consensus nodes.
    pub consensus: BTreeSet<B256>,
    /// Observer nodes.
    pub observers: BTreeSet<B256>,
}

impl Registry {
    /// Reads the registry through `governor`'s node.
    pub async fn read(governor: &mut Governor) -> Result<Self, GovernanceError> {
        let consensus = governor.view(NODE_REGISTRY_ADDRESS, &INodeRegistry::consensusNodesCall {}).await?;
        let observers = governor.view(NODE_REGISTRY_ADDRESS, &INodeRegistry::observerNodesCall {}).await?;
        Ok(Self { consensus: consensus.into_iter().collect(), observers: observers.into_iter().collect() })
    }

    /// What `node` is in the registry.
    pub fn type_of(&self, node: &B256) -> crate::crd::NodeType {
        if self.consensus.contains(node) {
            crate::crd::NodeType::Consensus
        } else if self.observers.contains(node) {
            crate::crd::NodeType::Observer
        } else {
            crate::crd::NodeType::None
        }
    }
}
