//! System contracts: native contracts at reserved addresses with Solidity ABIs.
//!
//! They hold the chain's global configuration in their own EVM storage, so every node reads and
//! changes it through transactions and applies a change at the same height. The committee named
//! in the genesis governs them through the governance contract; [`Role`]s give accounts the
//! rights permissioned chains check.

use std::{fmt, str::FromStr};

use alloy_primitives::{Address, address};
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

/// Every system contract address.
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
}
