//! The genesis file: chain id, initial system config, consensus nodes, the governing committee,
//! roles and permissions, accounts.

use std::{collections::BTreeMap, fmt, path::Path, str::FromStr};

use alloy_primitives::{Address, B256, Bytes, U256};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, FieldError, invalid, load_yaml, parse_node_address, parse_yaml, to_yaml, write_yaml};
use crate::{
    pki::{CertRole, IssuedCert},
    types::system::Role,
};

/// The consensus algorithm in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConsensusMode {
    /// Practical Byzantine fault tolerance: tolerates f faulty of 3f+1 nodes.
    Pbft,
    /// Raft: tolerates f crashed of 2f+1 nodes, no byzantine faults.
    Raft,
}

impl ConsensusMode {
    /// The name used in configuration and in the system config contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pbft => "pbft",
            Self::Raft => "raft",
        }
    }

    /// The numeric code stored on chain.
    pub fn code(self) -> u64 {
        match self {
            Self::Pbft => 0,
            Self::Raft => 1,
        }
    }

    /// The mode for an on-chain code.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Self::Pbft),
            1 => Some(Self::Raft),
            _ => None,
        }
    }
}

impl fmt::Display for ConsensusMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsensusMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pbft" => Ok(Self::Pbft),
            "raft" => Ok(Self::Raft),
            other => Err(format!("unknown consensus mode {other:?}, expected \"pbft\" or \"raft\"")),
        }
    }
}

/// Chain-wide settings kept in the system config contract; genesis gives their first values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemConfig {
    /// Target time between blocks, in milliseconds.
    pub block_interval_ms: u64,
    /// Most transactions in one block; a block is sealed early when it is reached.
    pub max_txs_per_block: u64,
    /// Most gas one block may use; also the most one transaction may ask for.
    pub block_gas_limit: u64,
    /// The consensus algorithm.
    pub consensus_mode: ConsensusMode,
    /// The protocol version every node must support.
    pub compatibility_version: u32,
    /// Base consensus timeout in milliseconds: the PBFT view timeout (doubling with each failed
    /// view) and the Raft election timeout.
    #[serde(default = "SystemConfig::default_consensus_timeout_ms")]
    pub consensus_timeout_ms: u64,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            block_interval_ms: 500,
            max_txs_per_block: 10_000,
            block_gas_limit: 1_000_000_000,
            consensus_mode: ConsensusMode::Pbft,
            compatibility_version: 1,
            consensus_timeout_ms: Self::default_consensus_timeout_ms(),
        }
    }
}

/// Bounds enforced on genesis values and on every on-chain change.
impl SystemConfig {
    /// Allowed block interval, in milliseconds.
    pub const BLOCK_INTERVAL_MS: std::ops::RangeInclusive<u64> = 50..=60_000;
    /// Allowed transactions per block.
    pub const MAX_TXS_PER_BLOCK: std::ops::RangeInclusive<u64> = 1..=100_000;
    /// Allowed consensus timeout, in milliseconds.
    pub const CONSENSUS_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 200..=600_000;
    /// Allowed block gas limit.
    pub const BLOCK_GAS_LIMIT: std::ops::RangeInclusive<u64> = 1_000_000..=100_000_000_000;

    fn default_consensus_timeout_ms() -> u64 {
        3_000
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        if !Self::CONSENSUS_TIMEOUT_MS.contains(&self.consensus_timeout_ms) {
            return Err(FieldError::new("systemConfig.consensusTimeoutMs", range_message(&Self::CONSENSUS_TIMEOUT_MS)));
        }
        if !Self::BLOCK_INTERVAL_MS.contains(&self.block_interval_ms) {
            return Err(FieldError::new("systemConfig.blockIntervalMs", range_message(&Self::BLOCK_INTERVAL_MS)));
        }
        if !Self::MAX_TXS_PER_BLOCK.contains(&self.max_txs_per_block) {
            return Err(FieldError::new("systemConfig.maxTxsPerBlock", range_message(&Self::MAX_TXS_PER_BLOCK)));
        }
        if !Self::BLOCK_GAS_LIMIT.contains(&self.block_gas_limit) {
            return Err(FieldError::new("systemConfig.blockGasLimit", range_message(&Self::BLOCK_GAS_LIMIT)));
        }
        if self.compatibility_version == 0 {
            return Err(FieldError::new("systemConfig.compatibilityVersion", "must be at least 1"));
        }
        Ok(())
    }
}

fn is_empty_bytes(bytes: &Bytes) -> bool {
    bytes.is_empty()
}

fn range_message(range: &std::ops::RangeInclusive<u64>) -> String {
    format!("must be between {} and {}", range.start(), range.end())
}

/// An account present at genesis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenesisAccount {
    /// Balance in wei (the chain needs none to transact; chains that want balances set them here).
    #[serde(default)]
    #[schemars(with = "String")]
    pub balance: U256,
    /// Starting nonce.
    #[serde(default)]
    pub nonce: u64,
    /// Runtime bytecode, for contracts present at genesis.
    #[serde(default, skip_serializing_if = "is_empty_bytes")]
    #[schemars(with = "String")]
    pub code: Bytes,
    /// Storage slots of a contract present at genesis.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub storage: BTreeMap<B256, B256>,
}

/// The governing committee at genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Committee {
    /// Member accounts; each may propose and vote.
    #[schemars(with = "Vec<String>")]
    pub members: Vec<Address>,
    /// Approvals a proposal needs, 1 to the number of members.
    pub threshold: u32,
}

impl Committee {
    /// Most members a committee may have; bounds what one vote reads to count approvals.
    pub const MAX_MEMBERS: usize = 100;

    /// A committee of one that decides alone (single-operator chains such as the devnet).
    pub fn single(member: Address) -> Self {
        Self { members: vec![member], threshold: 1 }
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.members.is_empty() {
            return Err(FieldError::new("committee.members", "at least one member is required"));
        }
        if self.members.len() > Self::MAX_MEMBERS {
            return Err(FieldError::new("committee.members", format!("at most {} members", Self::MAX_MEMBERS)));
        }
        if self.members.contains(&Address::ZERO) {
            return Err(FieldError::new("committee.members", "the zero address cannot be a member"));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.members.iter().find(|member| !seen.insert(**member)) {
            return Err(FieldError::new("committee.members", format!("member {dup} is listed twice")));
        }
        if self.threshold == 0 || self.threshold as usize > self.members.len() {
            return Err(FieldError::new(
                "committee.threshold",
                format!("must be between 1 and {} (the number of members)", self.members.len()),
            ));
        }
        Ok(())
    }
}

/// Roles and permission checks at genesis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permissions {
    /// Whether contract creations need the `deployer` role and other transactions (except calls
    /// of system contracts) the `transactor` role. Off, anyone may transact.
    #[serde(default)]
    pub enabled: bool,
    /// Initial role holders: account to roles.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, Vec<Role>>")]
    pub roles: BTreeMap<Address, Vec<Role>>,
}

impl Permissions {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn validate(&self) -> Result<(), FieldError> {
        for (account, roles) in &self.roles {
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = roles.iter().find(|role| !seen.insert(**role)) {
                return Err(FieldError::new("permissions.roles", format!("{account} lists {dup} twice")));
            }
        }
        Ok(())
    }
}

/// The genesis file. Every node of a chain must use byte-for-byte the same values: the genesis
/// block hash derived from them identifies the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Genesis {
    /// EIP-155 chain id every transaction must be signed for.
    pub chain_id: u64,
    /// Genesis timestamp in milliseconds since the Unix epoch.
    #[serde(default)]
    pub timestamp_ms: u64,
    /// First values of the system config contract.
    pub system_config: SystemConfig,
    /// Node ids (Ed25519 public keys) of the initial consensus nodes.
    #[schemars(with = "Vec<String>")]
    pub consensus_nodes: Vec<B256>,
    /// Node ids of the initial observer nodes, which receive and verify blocks but never vote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub observer_nodes: Vec<B256>,
    /// Peer-to-peer addresses (`host:port`) of nodes listed above, which every node dials;
    /// later set and cleared through the node registry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub node_addresses: BTreeMap<B256, String>,
    /// The chain CA certificate (PEM) every node and SDK certificate must chain to. Without it
    /// peers are admitted by node id alone, which only in-process test chains do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// The committee that governs the chain by threshold vote (system config, consensus nodes,
    /// roles, certificate revocation, the committee itself).
    pub committee: Committee,
    /// Whether transactions are checked against roles, and who holds which role at genesis.
    #[serde(default, skip_serializing_if = "Permissions::is_default")]
    pub permissions: Permissions,
    /// Accounts present at genesis.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, GenesisAccount>")]
    pub alloc: BTreeMap<Address, GenesisAccount>,
}

impl Genesis {
    /// Loads and validates a genesis file.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let genesis: Self = load_yaml(file)?;
        genesis.validate().map_err(|e| invalid(file, e))?;
        Ok(genesis)
    }

    /// Writes the genesis file.
    pub fn save(&self, file: &Path) -> Result<(), ConfigError> {
        write_yaml(file, self)
    }

    /// Parses and validates genesis YAML held in memory (a ConfigMap); `name` names it in errors.
    pub fn parse(text: &str, name: &Path) -> Result<Self, ConfigError> {
        let genesis: Self = parse_yaml(name, text)?;
        genesis.validate().map_err(|e| invalid(name, e))?;
        Ok(genesis)
    }

    /// Validates the genesis and renders it as YAML, as [`load`](Self::load) reads it; `name`
    /// names it in errors.
    pub fn to_yaml(&self, name: &Path) -> Result<String, ConfigError> {
        self.validate().map_err(|e| invalid(name, e))?;
        to_yaml(name, self)
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.chain_id == 0 {
            return Err(FieldError::new("chainId", "must not be 0"));
        }
        self.system_config.validate()?;
        if self.consensus_nodes.is_empty() {
            return Err(FieldError::new("consensusNodes", "at least one consensus node is required"));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.consensus_nodes.iter().find(|id| !seen.insert(**id)) {
            return Err(FieldError::new("consensusNodes", format!("node {dup} is listed twice")));
        }
        if let Some(dup) = self.observer_nodes.iter().find(|id| !seen.insert(**id)) {
            return Err(FieldError::new("observerNodes", format!("node {dup} is listed twice or is a consensus node")));
        }
        for (node, address) in &self.node_addresses {
            if !seen.contains(node) {
                return Err(FieldError::new(
                    "nodeAddresses",
                    format!("node {node} is neither a consensus nor an observer node"),
                ));
            }
            parse_node_address(address).map_err(|reason| {
                FieldError::new("nodeAddresses", format!("address {address:?} of node {node}: {reason}"))
            })?;
        }
        self.committee.validate()?;
        self.permissions.validate()?;
        if let Some(pem) = &self.ca_cert {
            IssuedCert::from_pem(pem, CertRole::ChainCa, "caCert")
                .map_err(|e| FieldError::new("caCert", e.to_string()))?;
        }
        Ok(())
    }

    /// The chain CA certificate in DER, if genesis names one.
    pub fn ca_cert_der(&self) -> Option<Vec<u8>> {
        let pem = self.ca_cert.as_deref()?;
        IssuedCert::from_pem(pem, CertRole::ChainCa, "caCert").ok().map(|cert| cert.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    const VALID: &str = r#"
chainId: 20200
systemConfig:
  blockIntervalMs: 500
  maxTxsPerBlock: 1000
  blockGasLimit: 30000000
  consensusMode: pbft
  compatibilityVersion: 1
consensusNodes: ["0x0101010101010101010101010101010101010101010101010101010101010101"]
committee:
  members: ["0x000000000000000000000000000000000000dEaD"]
  threshold: 1
alloc:
  "0x000000000000000000000000000000000000bEEF": { balance: "0x10" }
"#;

    fn parse(text: &str) -> Result<Genesis, ConfigError> {
        let genesis: Genesis = parse_yaml(Path::new("genesis.yaml"), text)?;
        genesis.validate().map_err(|e| invalid(Path::new("genesis.yaml"), e))?;
        Ok(genesis)
    }

    #[test]
    fn parses_a_valid_genesis() {
        let genesis = parse(VALID).expect("valid");
        assert_eq!(genesis.chain_id, 20200);
        assert_eq!(genesis.system_config.consensus_mode, ConsensusMode::Pbft);
        assert_eq!(genesis.alloc.values().next().map(|a| a.balance), Some(U256::from(16)));
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let err = parse(&VALID.replace("consensusMode: pbft", "consensusMode: paxos")).unwrap_err().to_string();
        assert!(err.starts_with("genesis.yaml: systemConfig.consensusMode: unknown variant `paxos`"), "{err}");
        let err = parse(&VALID.replace("blockIntervalMs: 500", "blockIntervalMs: 5")).unwrap_err().to_string();
        assert_eq!(err, "genesis.yaml: systemConfig.blockIntervalMs: must be between 50 and 60000");
        let err = parse(&VALID.replace("chainId: 20200", "chainId: 20200\nchainID: 1")).unwrap_err().to_string();
        assert!(err.starts_with("genesis.yaml: chainID: unknown field `chainID`"), "{err}");
        let err = parse(&VALID.replace("chainId: 20200\n", "")).unwrap_err().to_string();
        assert!(err.contains("missing field `chainId`"), "{err}");
    }

    #[test]
    fn observers_are_optional_and_never_also_consensus_nodes() {
        assert!(parse(VALID).expect("valid").observer_nodes.is_empty());
        let consensus = "0x0101010101010101010101010101010101010101010101010101010101010101";
        let observer = "0x0202020202020202020202020202020202020202020202020202020202020202";
        let with = |list: &str| VALID.replace("committee:", &format!("observerNodes: [{list}]\ncommittee:"));
        let genesis = parse(&with(&format!("\"{observer}\""))).expect("valid");
        assert_eq!(genesis.observer_nodes, vec![B256::repeat_byte(2)]);
        let err = parse(&with(&format!("\"{consensus}\""))).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("genesis.yaml: observerNodes: node {consensus} is listed twice or is a consensus node")
        );
    }

    #[test]
    fn node_addresses_belong_to_listed_nodes_and_are_host_port() {
        let consensus = "0x0101010101010101010101010101010101010101010101010101010101010101";
        let stranger = "0x0303030303030303030303030303030303030303030303030303030303030303";
        let with = |map: &str| VALID.replace("committee:", &format!("nodeAddresses: {{{map}}}\ncommittee:"));
        let genesis = parse(&with(&format!("\"{consensus}\": \"node-0.chain:30300\""))).expect("valid");
        assert_eq!(genesis.node_addresses, [(B256::repeat_byte(1), "node-0.chain:30300".to_owned())].into());
        let err = parse(&with(&format!("\"{stranger}\": \"node-3:30300\""))).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("genesis.yaml: nodeAddresses: node {stranger} is neither a consensus nor an observer node")
        );
        let err = parse(&with(&format!("\"{consensus}\": \"node-0\""))).unwrap_err().to_string();
        assert_eq!(err, format!("genesis.yaml: nodeAddresses: address \"node-0\" of node {consensus}: not host:port"));
    }

    #[test]
    fn the_committee_needs_distinct_members_and_a_reachable_threshold() {
        let genesis = parse(VALID).expect("valid");
        let dead: Address = "0x000000000000000000000000000000000000dEaD".parse().expect("address");
        assert_eq!(genesis.committee, Committee::single(dead));
        assert_eq!(genesis.permissions, Permissions::default(), "permissions are optional and off");
        let committee = |text: &str| {
            VALID.replace(
                "committee:\n  members: [\"0x000000000000000000000000000000000000dEaD\"]\n  threshold: 1",
                text,
            )
        };
        let cases = [
            ("committee: { members: [], threshold: 1 }", "committee.members: at least one member is required"),
            (
                "committee: { members: [\"0x0000000000000000000000000000000000000000\"], threshold: 1 }",
                "committee.members: the zero address cannot be a member",
            ),
            (
                "committee: { members: [\"0x000000000000000000000000000000000000dEaD\", \"0x000000000000000000000000000000000000dead\"], threshold: 1 }",
                "committee.members: member 0x000000000000000000000000000000000000dEaD is listed twice",
            ),
            (
                "committee: { members: [\"0x000000000000000000000000000000000000dEaD\"], threshold: 2 }",
                "committee.threshold: must be between 1 and 1 (the number of members)",
            ),
            (
                "committee: { members: [\"0x000000000000000000000000000000000000dEaD\"], threshold: 0 }",
                "committee.threshold: must be between 1 and 1 (the number of members)",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&committee(text)).unwrap_err().to_string();
            assert_eq!(err, format!("genesis.yaml: {expected}"), "{text}");
        }
        let err = parse(&VALID.replace("  threshold: 1\n", "")).unwrap_err().to_string();
        assert!(err.contains("missing field `threshold`"), "{err}");
    }

    #[test]
    fn permissions_name_role_holders_by_role_name() {
        let holder = "0x000000000000000000000000000000000000bEEF";
        let text =
            format!("{VALID}permissions:\n  enabled: true\n  roles:\n    \"{holder}\": [deployer, transactor]\n");
        let genesis = parse(&text).expect("valid");
        assert!(genesis.permissions.enabled);
        let roles: Vec<(Address, Vec<Role>)> = genesis.permissions.roles.into_iter().collect();
        assert_eq!(roles, vec![(holder.parse().expect("address"), vec![Role::Deployer, Role::Transactor])]);

        let err = parse(&text.replace("[deployer, transactor]", "[deployer, deployer]")).unwrap_err().to_string();
        assert_eq!(err, format!("genesis.yaml: permissions.roles: {holder} lists deployer twice"));
        let err = parse(&text.replace("[deployer, transactor]", "[committee]")).unwrap_err().to_string();
        assert!(err.starts_with("genesis.yaml: permissions.roles"), "{err}");
        assert!(err.contains("unknown variant `committee`"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = Genesis::load(Path::new("/nonexistent/genesis.yaml")).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/genesis.yaml: cannot read"), "{err}");
    }
}
