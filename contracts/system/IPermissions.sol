// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

/// Roles and permissions at 0x0000000000000000000000000000000000001004. Roles: `chainOperator`
/// (adds and removes observer nodes), `deployer` (creates contracts), `transactor` (sends any
/// other transaction), `regulator` and `auditor` (read the governance audit log; no right to
/// transact). While permissions are enabled, a contract creation needs `deployer` and any other
/// transaction needs `transactor`, except calls of the system contracts, which check their own
/// authority. Roles and the switch change only through a governance proposal.
interface IPermissions {
    event RoleGranted(address indexed account, string role);
    event RoleRevoked(address indexed account, string role);
    event PermissionsEnabled(bool enabled);

    /// Whether transactions and deployments are checked against roles.
    function permissionsEnabled() external view returns (bool);
    /// Whether `account` holds `role`.
    function hasRole(address account, string calldata role) external view returns (bool);
    /// The roles `account` holds.
    function rolesOf(address account) external view returns (string[] memory);
    /// Grants a role; only the governance contract.
    function grantRole(address account, string calldata role) external returns (int32);
    /// Revokes a role; only the governance contract.
    function revokeRole(address account, string calldata role) external returns (int32);
    /// Switches the checks on or off; only the governance contract.
    function setPermissionsEnabled(bool enabled) external returns (int32);
}
