//! Names, labels, ports and paths of everything the operator creates: one place, so the planner,
//! the controllers and the node containers agree.

use std::collections::BTreeMap;

/// API group of the custom resources; also the prefix of the operator's labels.
pub const GROUP: &str = "bcos.dev";
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "bcos-operator";
/// Finalizer that removes a Member's nodes from the chain before its resources go.
pub const MEMBER_FINALIZER: &str = "bcos.dev/leave-chain";

/// Label: the chain an object belongs to.
pub const CHAIN_LABEL: &str = "bcos.dev/chain";
/// Label: the member an object belongs to.
pub const MEMBER_LABEL: &str = "bcos.dev/member";
/// Label on node Pods: `consensus` or `observer`, what the spec asks the node to be.
pub const NODE_TYPE_LABEL: &str = "bcos.dev/node-type";

/// Peer-to-peer port.
pub const P2P_PORT: u16 = 30300;
/// Ethereum JSON-RPC port.
pub const RPC_PORT: u16 = 8545;
/// gRPC port (the operator reads node status and governs through it).
pub const GRPC_PORT: u16 = 50051;
/// Metrics and probes port.
pub const METRICS_PORT: u16 = 9100;

/// Where the genesis ConfigMap is mounted.
pub const GENESIS_DIR: &str = "/etc/bcos/genesis";
/// The genesis file's key in its ConfigMap.
pub const GENESIS_KEY: &str = "genesis.yaml";
/// Where the member's node files ConfigMap is mounted (`<pod>.yaml` each).
pub const CONFIG_DIR: &str = "/etc/bcos/config";
/// Where the member's node keys Secret is mounted (`<pod>.key`, `<pod>.crt` each).
pub const KEYS_DIR: &str = "/etc/bcos/keys";
/// Where each node's volume is mounted.
pub const DATA_DIR: &str = "/var/lib/bcos";
/// Chain CA and member CA Secret keys.
pub const CA_CERT_KEY: &str = "ca.crt";
/// Chain CA and member CA Secret keys.
pub const CA_KEY_KEY: &str = "ca.key";
/// The operator's governance key in the admin Secret (hex secret).
pub const ADMIN_KEY_KEY: &str = "admin.key";

/// Secret of the operator-created chain CA.
pub fn chain_ca_secret(chain: &str) -> String {
    format!("{chain}-ca")
}

/// Secret of the operator's governance key.
pub fn admin_secret(chain: &str) -> String {
    format!("{chain}-admin")
}

/// ConfigMap holding the genesis.
pub fn genesis_config_map(chain: &str) -> String {
    format!("{chain}-genesis")
}

/// Headless Service giving every node Pod a stable DNS name.
pub fn peer_service(chain: &str) -> String {
    format!("{chain}-peers")
}

/// PodDisruptionBudget of the chain's consensus nodes.
pub fn disruption_budget(chain: &str) -> String {
    format!("{chain}-consensus")
}

/// StatefulSet of a member's nodes; also the prefix of its Pods' names.
pub fn stateful_set(chain: &str, member: &str) -> String {
    format!("{chain}-{member}")
}

/// Pod `ordinal` of a member.
pub fn pod(chain: &str, member: &str, ordinal: u32) -> String {
    format!("{}-{ordinal}", stateful_set(chain, member))
}

/// Secret of a member's CA.
pub fn member_ca_secret(chain: &str, member: &str) -> String {
    format!("{chain}-{member}-ca")
}

/// Secret of a member's node keys and certificates.
pub fn node_keys_secret(chain: &str, member: &str) -> String {
    format!("{chain}-{member}-nodes")
}

/// ConfigMap of a member's node files.
pub fn node_config_map(chain: &str, member: &str) -> String {
    format!("{chain}-{member}-config")
}

/// Service of a member's JSON-RPC endpoints.
pub fn rpc_service(chain: &str, member: &str) -> String {
    format!("{chain}-{member}-rpc")
}

/// A node's key file name in the keys Secret.
pub fn node_key_file(pod: &str) -> String {
    format!("{pod}.key")
}

/// A node's certificate chain file name in the keys Secret.
pub fn node_cert_file(pod: &str) -> String {
    format!("{pod}.crt")
}

/// A node's file name in the config ConfigMap.
pub fn node_config_file(pod: &str) -> String {
    format!("{pod}.yaml")
}

/// A node's peer-to-peer address: its stable DNS name under the peer Service.
pub fn p2p_address(chain: &str, namespace: &str, pod: &str) -> String {
    format!("{pod}.{}.{namespace}.svc.cluster.local:{P2P_PORT}", peer_service(chain))
}

/// Labels of everything belonging to a chain.
pub fn chain_labels(chain: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "bcos-node".to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), FIELD_MANAGER.to_owned()),
        (CHAIN_LABEL.to_owned(), chain.to_owned()),
    ])
}

/// Labels of everything belonging to a member.
pub fn member_labels(chain: &str, member: &str) -> BTreeMap<String, String> {
    let mut labels = chain_labels(chain);
    labels.insert(MEMBER_LABEL.to_owned(), member.to_owned());
    labels
}

/// The selector of a member's node Pods.
pub fn member_selector(chain: &str, member: &str) -> String {
    format!("{CHAIN_LABEL}={chain},{MEMBER_LABEL}={member}")
}

/// Longest Pod name whose StatefulSet's `controller-revision-hash` label still fits in 63
/// characters (the StatefulSet controller appends a 10-character hash and a dash).
pub const MAX_STATEFUL_SET_NAME: usize = 52;
