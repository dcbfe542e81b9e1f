//! System contracts: native contracts at reserved addresses with Solidity ABIs.
//!
//! They hold the chain's global configuration in their own EVM storage, so every node reads and
//! changes it through transactions and applies a change at the same height. The committee named
//! in the genesis governs them through the governance contract; [`Role`]s give accounts the
//! rights permissioned chains check.

use std::{fmt, str::FromStr};

use alloy_primitives::{Address, U256, address, keccak256};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Address of the system config contract.
pub const SYSTEM_CONFIG_ADDRESS: Address = address!("0000000000000000000000000000000000001000");

alloy_sol_types::sol!("../contracts/system/ISystemConfig.sol");

/// Address of the node registry contract.
pub const NODE_REGISTRY_ADDRESS: Address = address!("0000000000000000000000000000000000001003");

alloy_sol_types::sol!("../contracts/system/INodeRegistry.sol");

/// Address of the roles and permissions contract.
pub const PERMISSIONS_ADDRESS: Address = address!("0000000000000000000000000000000000001004");

alloy_sol_types::sol!("../contracts/system/IPermissions.sol");

/// Address of the governance contract, the only caller the other system contracts accept for
/// changes that need the committee.
pub const GOVERNANCE_ADDRESS: Address = address!("0000000000000000000000000000000000001005");

alloy_sol_types::sol!(
    #[sol(all_derives)]
    "../contracts/system/IGovernance.sol"
);

/// Address of the certificate revocation list contract.
pub const CERT_REVOCATION_ADDRESS: Address = address!("0000000000000000000000000000000000001006");

alloy_sol_types::sol!("../contracts/system/ICertRevocation.sol");

/// Address of the contract versions registry: grey releases of named contracts behind alias
/// addresses. It exists only from compatibility version 2 (see the interface), so it is not among
/// [`SYSTEM_CONTRACT_ADDRESSES`], which every genesis holds alike.
pub const CONTRACT_VERSIONS_ADDRESS: Address = address!("0000000000000000000000000000000000001007");

alloy_sol_types::sol!(
    #[sol(all_derives)]
    "../contracts/system/IContractVersions.sol"
);

/// Basis points of a whole: a release's share of accounts runs from 0 to this.
pub const BASIS_POINTS: u16 = 10_000;

/// The alias address of the named contract `name`: the last 20 bytes of
/// `keccak256("bcos.contract:" + name)`. Top-level calls of it run the version the caller is
/// routed to.
pub fn contract_alias(name: &str) -> Address {
    Address::from_slice(&keccak256(format!("bcos.contract:{name}"))[12..])
}

/// The routing bucket of `account` for the named contract `name`, below [`BASIS_POINTS`]:
/// `uint256(keccak256(account ++ name)) % 10000`. The account is routed to a release's candidate
/// when its bucket is below the release's share, so widening the share keeps every account that
/// was routed already.
pub fn release_bucket(account: Address, name: &str) -> u16 {
    let mut preimage = account.to_vec();
    preimage.extend_from_slice(name.as_bytes());
    let bucket = U256::from_be_bytes(keccak256(preimage).0) % U256::from(BASIS_POINTS);
    bucket.to::<u16>()
}

/// Every system contract address present since genesis.
pub const SYSTEM_CONTRACT_ADDRESSES: [Address; 5] =
    [SYSTEM_CONFIG_ADDRESS, NODE_REGISTRY_ADDRESS, PERMISSIONS_ADDRESS, GOVERNANCE_ADDRESS, CERT_REVOCATION_ADDRESS];

/// A right an account may hold on a permissioned chain. Committee membership is not a role: it
/// is the governance contract's own list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Role {
    /// Admits nodes that do not vote: adds and removes observer nodes.
    ChainOperator,
    /// Creates contracts.
    Deployer,
    /// Sends transactions other than contract creations.
    Transactor,
    /// Reads everything, the governance audit log included; cannot transact by this role.
    Regulator,
    /// Reads everything, the governance audit log included; cannot transact by this role.
    Auditor,
}

impl Role {
    /// Every role, in the order of their bits on chain.
    pub const ALL: [Self; 5] = [Self::ChainOperator, Self::Deployer, Self::Transactor, Self::Regulator, Self::Auditor];

    /// The name used in genesis and in the permissions contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChainOperator => "chainOperator",
            Self::Deployer => "deployer",
            Self::Transactor => "transactor",
            Self::Regulator => "regulator",
            Self::Auditor => "auditor",
        }
    }

    /// The role's bit in an account's on-chain role mask.
    pub fn bit(self) -> u64 {
        match self {
            Self::ChainOperator => 1 << 0,
            Self::Deployer => 1 << 1,
            Self::Transactor => 1 << 2,
            Self::Regulator => 1 << 3,
            Self::Auditor => 1 << 4,
        }
    }

    /// The roles whose bits are set in `mask`, in [`Role::ALL`] order.
    pub fn from_mask(mask: u64) -> Vec<Self> {
        Self::ALL.into_iter().filter(|role| mask & role.bit() != 0).collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|role| role.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|role| role.as_str()).collect();
            format!("unknown role {s:?}, expected one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_names_and_masks() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(serde_yaml::to_string(&role).expect("yaml").trim(), role.as_str());
        }
        let mask = Role::Deployer.bit() | Role::Auditor.bit();
        assert_eq!(Role::from_mask(mask), vec![Role::Deployer, Role::Auditor]);
        assert!("committee".parse::<Role>().unwrap_err().contains("unknown role \"committee\""));
    }

    #[test]
    fn aliases_and_buckets_follow_their_published_formulas() {
        let expected = keccak256(b"bcos.contract:greeter");
        assert_eq!(contract_alias("greeter").as_slice(), &expected[12..]);
        assert_ne!(contract_alias("greeter"), contract_alias("greeter2"));

        let account = Address::repeat_byte(0x11);
        let mut preimage = [0x11u8; 20].to_vec();
        preimage.extend_from_slice(b"greeter");
        let expected = U256::from_be_bytes(keccak256(&preimage).0) % U256::from(10_000);
        assert_eq!(U256::from(release_bucket(account, "greeter")), expected);
        // Over many accounts the buckets spread across the whole range.
        let buckets: Vec<u16> =
            (0..1000u32).map(|i| release_bucket(Address::from_word(keccak256(i.to_be_bytes())), "greeter")).collect();
        assert!(buckets.iter().all(|bucket| *bucket < BASIS_POINTS));
        let low = buckets.iter().filter(|bucket| **bucket < 3_000).count();
        assert!((200..400).contains(&low), "{low} of 1000 below 30%");
    }
}
