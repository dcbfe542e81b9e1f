//! The node file: where a node keeps its data and keys, and what it listens on.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, FieldError, invalid, load_yaml, to_yaml, write_yaml};
use crate::pki::{CertKey, PkiError, ServerChain, ServerIdentity};

/// Ethereum JSON-RPC over HTTP and WebSocket (one port serves both), optionally over TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RpcConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    #[serde(default = "RpcConfig::default_max_request_bytes")]
    pub max_request_bytes: u32,
    /// Most concurrent connections.
    #[serde(default = "RpcConfig::default_max_connections")]
    pub max_connections: u32,
    /// Most requests in one JSON-RPC batch.
    #[serde(default = "RpcConfig::default_max_batch")]
    pub max_batch: u32,
    /// Serve HTTPS and WSS instead of HTTP and WS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RpcTlsConfig>,
}

impl RpcConfig {
    fn default_max_request_bytes() -> u32 {
        10 * 1024 * 1024
    }
    fn default_max_connections() -> u32 {
        1000
    }
    fn default_max_batch() -> u32 {
        1000
    }
    /// Defaults listening on `listen`.
    pub fn on(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_request_bytes: Self::default_max_request_bytes(),
            max_connections: Self::default_max_connections(),
            max_batch: Self::default_max_batch(),
            tls: None,
        }
    }
}

/// TLS on the JSON-RPC port, optionally mutual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RpcTlsConfig {
    /// PEM file with the server certificate (from `bcos-node ca server`, naming the DNS names and
    /// IP addresses clients connect to) followed by the member CA certificate that issued it.
    pub cert_file: PathBuf,
    /// The server certificate's Ed25519 key, PKCS#8 PEM.
    pub key_file: PathBuf,
    /// Admit only SDK clients presenting a client certificate and its member CA certificate that
    /// verify to the genesis `caCert` and are not revoked on chain; anyone else fails the
    /// handshake. Needs `caCert` in the genesis.
    #[serde(default)]
    pub require_client_cert: bool,
}

impl RpcTlsConfig {
    /// Reads and checks the certificate chain and the key (the key must be the one the server
    /// certificate certifies); errors name the field and the file at fault.
    pub fn load_identity(&self) -> Result<ServerIdentity, TlsFilesError> {
        let chain =
            ServerChain::load(&self.cert_file).map_err(|error| TlsFilesError { field: "rpc.tls.certFile", error })?;
        CertKey::load(&self.key_file)
            .and_then(|key| chain.with_key(key, &self.key_file))
            .map_err(|error| TlsFilesError { field: "rpc.tls.keyFile", error })
    }
}

/// A file named by `rpc.tls` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {error}")]
pub struct TlsFilesError {
    /// The node file's field naming the file at fault.
    pub field: &'static str,
    /// What is wrong with the file (the message names it). Not a `source`: the message already
    /// says it, and error chains would say it twice.
    pub error: PkiError,
}

/// The native gRPC API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listen address.
    pub listen: SocketAddr,
}

/// Prometheus metrics and health probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

/// Transaction pool limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TxPoolConfig {
    /// Most transactions held; further ones are refused with "txpool is full".
    #[serde(default = "TxPoolConfig::default_capacity")]
    pub capacity: usize,
    /// Largest accepted encoded transaction, in bytes.
    #[serde(default = "TxPoolConfig::default_max_tx_bytes")]
    pub max_tx_bytes: usize,
    /// Most transactions one sender may have waiting.
    #[serde(default = "TxPoolConfig::default_max_per_sender")]
    pub max_per_sender: usize,
    /// How far ahead of its next nonce a sender may queue a transaction.
    #[serde(default = "TxPoolConfig::default_max_nonce_gap")]
    pub max_nonce_gap: u64,
}

impl TxPoolConfig {
    fn default_capacity() -> usize {
        200_000
    }
    fn default_max_tx_bytes() -> usize {
        128 * 1024
    }
    fn default_max_per_sender() -> usize {
        10_000
    }
    fn default_max_nonce_gap() -> u64 {
        1_000
    }
}

impl Default for TxPoolConfig {
    fn default() -> Self {
        Self {
            capacity: Self::default_capacity(),
            max_tx_bytes: Self::default_max_tx_bytes(),
            max_per_sender: Self::default_max_per_sender(),
            max_nonce_gap: Self::default_max_nonce_gap(),
        }
    }
}

/// Storage tuning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageConfig {
    /// fsync every block and pool write. Off, a killed process loses nothing (the OS holds the
    /// write-ahead log); on, a machine that loses power loses nothing either.
    #[serde(default)]
    pub sync_writes: bool,
}

/// A peer to connect to: its node id and `host:port` (an IP address or a DNS name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAddress {
    /// The peer's node id (Ed25519 public key).
    #[schemars(with = "String")]
    pub node_id: alloy_primitives::B256,
    /// `host:port` of its peer-to-peer listener.
    pub address: String,
}

impl PeerAddress {
    /// Splits `address` into host and port.
    pub fn host_port(&self) -> Option<(&str, u16)> {
        split_host_port(&self.address)
    }
}

/// Splits `host:port` (an IPv6 host in brackets) into host, without brackets, and port.
fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host, port.parse().ok()?))
}

/// Longest peer-to-peer address a node may publish in the node registry: a DNS name of the
/// longest length DNS allows, a colon and a port.
pub const MAX_NODE_ADDRESS: usize = MAX_HOST_NAME + 6;

/// Longest DNS name (RFC 1035).
const MAX_HOST_NAME: usize = 253;

/// Longest label of a DNS name (RFC 1035).
const MAX_LABEL: usize = 63;

/// Checks a peer-to-peer address published on chain (node registry, genesis), which every node
/// dials, more strictly than node.yaml: `host:port` with an IPv4 address, an IPv6 address in
/// brackets or a DNS name of letters, digits and hyphens, and a port from 1 to 65535. Returns the
/// host (without brackets) and the port, or why the address is refused.
pub fn parse_node_address(address: &str) -> Result<(&str, u16), String> {
    if address.len() > MAX_NODE_ADDRESS {
        return Err(format!("longer than {MAX_NODE_ADDRESS} bytes"));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("not host:port".into());
    };
    let port = match port.parse::<u16>() {
        Ok(port) if port != 0 => port,
        _ => return Err(format!("port {port:?} is not a number from 1 to 65535")),
    };
    if let Some(bracketed) = host.strip_prefix('[') {
        let ipv6 = bracketed.strip_suffix(']').filter(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        return ipv6.map(|ip| (ip, port)).ok_or_else(|| format!("host {host:?} is not an IPv6 address in brackets"));
    }
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok((host, port));
    }
    let label_ok = |label: &str| {
        (1..=MAX_LABEL).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.len() > MAX_HOST_NAME || !host.split('.').all(label_ok) {
        return Err(format!(
            "host {host:?} is neither an IPv4 address, an IPv6 address in brackets, nor a DNS name (labels of 1 to {MAX_LABEL} letters, digits and inner hyphens)"
        ));
    }
    Ok((host, port))
}

/// Peer-to-peer networking, needed by every chain of more than one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct P2pConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Peers always allowed and dialed (the bootstrap whitelist).
    #[serde(default)]
    pub peers: Vec<PeerAddress>,
    /// Node ids this node refuses, in both directions, whatever the registry and the peer list
    /// say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub blacklist: Vec<alloy_primitives::B256>,
    /// This node's certificate followed by its member CA's (PEM), presented to every peer;
    /// required when the genesis names a chain CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
}

/// The node file (`node.yaml`). Relative paths are resolved against the file's own directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory of the node's database.
    pub data_dir: PathBuf,
    /// The chain's genesis file.
    pub genesis_file: PathBuf,
    /// The node's Ed25519 key (hex), which is its identity.
    pub node_key_file: PathBuf,
    /// Ethereum JSON-RPC.
    pub rpc: RpcConfig,
    /// gRPC.
    pub grpc: GrpcConfig,
    /// Metrics and health.
    pub metrics: MetricsConfig,
    /// Transaction pool.
    #[serde(default)]
    pub txpool: TxPoolConfig,
    /// Storage.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Peer-to-peer networking; absent only for a chain whose single consensus node is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p: Option<P2pConfig>,
}

impl NodeConfig {
    /// Loads and validates a node file, resolving relative paths against its directory. The TLS
    /// files `rpc.tls` names are read and checked too, so a bad one stops the node before it
    /// opens anything.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = load_yaml(file)?;
        config.validate().map_err(|e| invalid(file, e))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let cert_file = config.p2p.as_mut().and_then(|p2p| p2p.cert_file.as_mut());
        let tls_files = config.rpc.tls.iter_mut().flat_map(|tls| [&mut tls.cert_file, &mut tls.key_file]);
        for path in [&mut config.data_dir, &mut config.genesis_file, &mut config.node_key_file]
            .into_iter()
            .chain(cert_file)
            .chain(tls_files)
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        if let Some(tls) = &config.rpc.tls {
            tls.load_identity().map_err(|e| ConfigError::Invalid {
                file: file.to_owned(),
                field: e.field.to_owned(),
                message: e.error.to_string(),
            })?;
        }
        Ok(config)
    }

    /// Writes the node file.
    pub fn save(&self, file: &Path) -> Result<(), ConfigError> {
        write_yaml(file, self)
    }

    /// Validates the node file's values and renders it as YAML (for a ConfigMap); `name` names
    /// it in errors. The files it names are not read: they live where the node runs.
    pub fn to_yaml(&self, name: &Path) -> Result<String, ConfigError> {
        self.validate().map_err(|e| invalid(name, e))?;
        to_yaml(name, self)
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.txpool.capacity == 0 {
            return Err(FieldError::new("txpool.capacity", "must be at least 1"));
        }
        if self.txpool.max_tx_bytes < 128 {
            return Err(FieldError::new("txpool.maxTxBytes", "must be at least 128"));
        }
        if self.txpool.max_per_sender == 0 {
            return Err(FieldError::new("txpool.maxPerSender", "must be at least 1"));
        }
        if let Some(p2p) = &self.p2p
            && let Some(bad) = p2p.peers.iter().find(|p| p.host_port().is_none())
        {
            return Err(FieldError::new("p2p.peers", format!("{:?} is not host:port", bad.address)));
        }
        if self.rpc.max_batch == 0 {
            return Err(FieldError::new("rpc.maxBatch", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "dataDir: data\ngenesisFile: genesis.yaml\nnodeKeyFile: node.key\n\
        rpc: { listen: 127.0.0.1:8545 }\ngrpc: { listen: 127.0.0.1:50051 }\nmetrics: { listen: 127.0.0.1:9100 }\n";

    #[test]
    fn resolves_relative_paths_against_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("node.yaml");
        std::fs::write(&file, VALID).expect("write");
        let config = NodeConfig::load(&file).expect("valid");
        assert_eq!(config.data_dir, dir.path().join("data"));
        assert_eq!(config.txpool, TxPoolConfig::default());
    }

    #[test]
    fn the_blacklist_is_optional_and_holds_node_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("node.yaml");
        let id = "0x0101010101010101010101010101010101010101010101010101010101010101";
        std::fs::write(&file, format!("{VALID}p2p: {{ listen: 127.0.0.1:30300 }}\n")).expect("write");
        assert!(NodeConfig::load(&file).expect("valid").p2p.expect("p2p").blacklist.is_empty());
        std::fs::write(&file, format!("{VALID}p2p: {{ listen: 127.0.0.1:30300, blacklist: [\"{id}\"] }}\n"))
            .expect("write");
        let p2p = NodeConfig::load(&file).expect("valid").p2p.expect("p2p");
        assert_eq!(p2p.blacklist, vec![alloy_primitives::B256::repeat_byte(1)]);
        std::fs::write(&file, format!("{VALID}p2p: {{ listen: 127.0.0.1:30300, blacklist: [\"0x01\"] }}\n"))
            .expect("write");
        let err = NodeConfig::load(&file).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: p2p.blacklist", file.display())), "{err}");
    }

    #[test]
    fn bad_address_names_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("node.yaml");
        std::fs::write(&file, VALID.replace("127.0.0.1:8545", "localhost")).expect("write");
        let err = NodeConfig::load(&file).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: rpc.listen: invalid socket address", file.display())), "{err}");
        std::fs::write(&file, format!("{VALID}txpool: {{ capacity: 0 }}\n")).expect("write");
        let err = NodeConfig::load(&file).unwrap_err().to_string();
        assert_eq!(err, format!("{}: txpool.capacity: must be at least 1", file.display()));
        std::fs::write(&file, "dataDir: [").expect("write");
        assert!(NodeConfig::load(&file).is_err());
    }

    /// Writes a `localhost` server chain (`server.crt`) and its key (`server.key`) into `dir`,
    /// plus `other.key`, a key of another server.
    fn write_tls_files(dir: &Path) {
        use crate::pki::{ChainCa, Member, Validity, save_chain_new};
        let validity = Validity::starting(std::time::SystemTime::now(), std::time::Duration::from_secs(3600));
        let ca = ChainCa::generate("test", validity).expect("CA");
        let member = ca.issue_member_ca(&Member { name: "Bank".into(), id: "bank".into() }, validity).expect("member");
        let key = CertKey::generate().expect("key");
        let cert = member.issue_server(&["localhost".into()], &key.public_key(), validity).expect("server");
        key.save_new(&dir.join("server.key")).expect("save key");
        save_chain_new(&[&cert, member.cert()], &dir.join("server.crt")).expect("save chain");
        CertKey::generate().expect("key").save_new(&dir.join("other.key")).expect("save key");
    }

    fn with_tls(tls: &str) -> String {
        VALID.replace("rpc: { listen: 127.0.0.1:8545 }", &format!("rpc: {{ listen: 127.0.0.1:8545, tls: {tls} }}"))
    }

    #[test]
    fn tls_files_are_resolved_and_checked_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_tls_files(dir.path());
        let file = dir.path().join("node.yaml");
        std::fs::write(&file, VALID).expect("write");
        assert_eq!(NodeConfig::load(&file).expect("valid").rpc.tls, None);

        std::fs::write(&file, with_tls("{ certFile: server.crt, keyFile: server.key }")).expect("write");
        let tls = NodeConfig::load(&file).expect("valid").rpc.tls.expect("tls");
        assert_eq!(tls.cert_file, dir.path().join("server.crt"));
        assert_eq!(tls.key_file, dir.path().join("server.key"));
        assert!(!tls.require_client_cert);
        assert_eq!(tls.load_identity().expect("identity").certs().len(), 2);

        std::fs::write(&file, with_tls("{ certFile: server.crt, keyFile: server.key, requireClientCert: true }"))
            .expect("write");
        assert!(NodeConfig::load(&file).expect("valid").rpc.tls.expect("tls").require_client_cert);
    }

    #[test]
    fn bad_tls_files_name_the_field_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_tls_files(dir.path());
        std::fs::write(dir.path().join("garbage.crt"), [0xff, 0x00, 0x30, 0x82]).expect("write");
        std::fs::write(
            dir.path().join("garbage.key"),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let file = dir.path().join("node.yaml");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let cases = [
            ("missing.crt", "server.key", "rpc.tls.certFile", path("missing.crt")),
            (
                "garbage.crt",
                "server.key",
                "rpc.tls.certFile",
                format!("{}: holds no PEM certificates", path("garbage.crt")),
            ),
            (
                "server.key",
                "server.key",
                "rpc.tls.certFile",
                format!("{}: holds a PRIVATE KEY PEM block", path("server.key")),
            ),
            ("server.crt", "missing.key", "rpc.tls.keyFile", path("missing.key")),
            ("server.crt", "garbage.key", "rpc.tls.keyFile", path("garbage.key")),
            ("server.crt", "server.crt", "rpc.tls.keyFile", path("server.crt")),
            (
                "server.crt",
                "other.key",
                "rpc.tls.keyFile",
                format!("{}: key does not match the server certificate", path("other.key")),
            ),
        ];
        for (cert, key, field, message) in cases {
            std::fs::write(&file, with_tls(&format!("{{ certFile: {cert}, keyFile: {key} }}"))).expect("write");
            let err = NodeConfig::load(&file).expect_err(field).to_string();
            let prefix = format!("{}: {field}: {message}", file.display());
            assert!(err.starts_with(&prefix), "{cert} {key}: {err}\nexpected prefix {prefix}");
        }
        std::fs::write(&file, with_tls("{ certFile: server.crt, keyFile: server.key, clientCa: ca.crt }"))
            .expect("write");
        let err = NodeConfig::load(&file).expect_err("unknown field").to_string();
        assert!(err.starts_with(&format!("{}: rpc.tls.clientCa: ", file.display())), "{err}");
        assert!(err.contains("unknown field `clientCa`"), "{err}");
        std::fs::write(&file, with_tls("{ certFile: server.crt }")).expect("write");
        let err = NodeConfig::load(&file).expect_err("no key").to_string();
        assert!(err.contains("missing field `keyFile`"), "{err}");
    }

    #[test]
    fn node_addresses_on_chain_are_host_port_with_a_sane_host() {
        let valid = [
            ("10.0.0.1:30300", ("10.0.0.1", 30300)),
            ("[::1]:1", ("::1", 1)),
            ("node-0.bcos-chain.svc:65535", ("node-0.bcos-chain.svc", 65535)),
        ];
        for (address, expected) in valid {
            assert_eq!(parse_node_address(address), Ok(expected), "{address}");
        }
        let long_host = format!("{}.x:1", "a".repeat(MAX_LABEL));
        assert!(parse_node_address(&long_host).is_ok(), "a label of the longest length");
        let invalid = [
            "node-0",
            ":30300",
            "node-0:0",
            "node-0:65536",
            "node-0:port",
            "::1:30300",
            "[node-0]:1",
            "-node:1",
            "node..chain:1",
            "node_0:1",
            "node 0:1",
            "nöde:1",
        ];
        for address in invalid {
            assert!(parse_node_address(address).is_err(), "{address}");
        }
        assert!(parse_node_address(&format!("{}.x:1", "a".repeat(MAX_LABEL + 1))).is_err(), "label too long");
        assert_eq!(
            parse_node_address(&format!("{}:1", "a.".repeat(200))),
            Err(format!("longer than {MAX_NODE_ADDRESS} bytes"))
        );
    }
}
