//! System contracts: native contracts at reserved addresses with Solidity ABIs.
//!
//! They hold the chain's global configuration in their own EVM storage, so every node reads and
//! changes it through transactions and applies a change at the same height.

use alloy_primitives::{Address, address};

/// Address of the system config contract.
pub const SYSTEM_CONFIG_ADDRESS: Address = address!("0000000000000000000000000000000000001000");

alloy_sol_types::sol!("../contracts/system/ISystemConfig.sol");

/// Address of the node registry contract.
pub const NODE_REGISTRY_ADDRESS: Address = address!("0000000000000000000000000000000000001003");

alloy_sol_types::sol!("../contracts/system/INodeRegistry.sol");
