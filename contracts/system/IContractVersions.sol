// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

/// The contract versions registry at 0x0000000000000000000000000000000000001007: grey releases of
/// named contracts, from compatibility version 2 of the chain (below it the address is an empty
/// account, as on older nodes).
///
/// Each name has an alias address, the last 20 bytes of keccak256("bcos.contract:" + name), and a
/// stable version; during a release also a candidate version and the share of accounts, in basis
/// points (0 to 10000), routed to it. A transaction, eth_call or eth_estimateGas whose `to` is an
/// alias runs the implementation its sender resolves to, with that implementation's own storage:
/// the call is redirected, not delegated. Only such top-level calls are routed; a contract calling
/// an alias reaches an empty account, so contracts resolve the implementation here instead.
///
/// An account is routed to the candidate when its bucket, uint256(keccak256(account ++ name)) mod
/// 10000 (the account as 20 bytes, the name as its UTF-8 bytes), is below the share; widening the
/// share keeps every account already routed. Names and versions are 1 to 64 and 1 to 32 bytes of
/// letters, digits, '.', '_', '+' and '-'. Changes are only possible through a committee proposal.
interface IContractVersions {
    /// One version of a named contract.
    struct Version {
        string version;
        address implementation;
    }

    /// Where a named contract's release stands.
    struct Release {
        string name;
        address aliasAddress;
        Version stable;
        /// Empty while no release is in progress.
        Version candidate;
        /// Share of accounts routed to the candidate, in basis points; 0 without a candidate.
        uint16 shareBp;
        /// Every version registered, oldest first.
        Version[] history;
    }

    event ContractRegistered(string name, address aliasAddress, string version, address implementation);
    event ReleaseStarted(string name, string version, address implementation, uint16 shareBp);
    event ShareChanged(string name, string version, uint16 fromShareBp, uint16 toShareBp);
    event ReleasePromoted(string name, string version, address implementation);
    event ReleaseRolledBack(string name, string version, address implementation);

    /// Registers a new name with its first, stable version; the implementation must hold code.
    function register(string calldata name, string calldata version, address implementation)
        external
        returns (int32);
    /// Starts routing `shareBp` of the accounts to a candidate version. A version registered
    /// before may come back with its own implementation only.
    function startRelease(string calldata name, string calldata version, address implementation, uint16 shareBp)
        external
        returns (int32);
    /// Widens or narrows the share routed to the candidate.
    function setShare(string calldata name, uint16 shareBp) external returns (int32);
    /// Makes the candidate the stable version, for every account.
    function promote(string calldata name) external returns (int32);
    /// Drops the candidate: every account goes to the stable version again.
    function rollback(string calldata name) external returns (int32);
    /// The implementation and version `account` is routed to.
    function resolve(string calldata name, address account)
        external
        view
        returns (address implementation, string memory version);
    /// A named contract's versions and release.
    function versionsOf(string calldata name) external view returns (Release memory);
    /// Every registered name, in the order registered.
    function names() external view returns (string[] memory);
    /// The alias address of a name (registered or not).
    function aliasOf(string calldata name) external pure returns (address);
}
