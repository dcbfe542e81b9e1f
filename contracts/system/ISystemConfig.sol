// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

/// The system config contract at 0x0000000000000000000000000000000000001000.
/// Values are decimal strings except `consensus_mode` (`pbft` or `raft`).
/// A change made in block N is in force from block N+1, or from the block it was scheduled for.
/// Changes are made only by the governance contract (0x…1005), that is by a committee proposal.
interface ISystemConfig {
    /// Emitted on every accepted change.
    event ConfigChanged(string key, string value, uint256 enableNumber);

    /// Reads a value by key, with the block number from which it is in force.
    function getValueByKey(string calldata key) external view returns (string memory value, uint256 enableNumber);
    /// Changes a value from the next block; only the governance contract may call it.
    function setValueByKey(string calldata key, string calldata value) external returns (int32);
    /// Schedules a change from block `enableNumber`, which must be after the block this call is
    /// in (for example a consensus switch at a chosen height); replaces a change still pending for
    /// the key. Only the governance contract may call it.
    function setValueByKeyAt(string calldata key, string calldata value, uint256 enableNumber) external returns (int32);
    /// Target time between blocks.
    function blockIntervalMs() external view returns (uint64);
    /// Most transactions one block may hold.
    function maxTxsPerBlock() external view returns (uint64);
    /// Most gas one block may use.
    function blockGasLimit() external view returns (uint64);
    /// The consensus algorithm: `pbft` or `raft`.
    function consensusMode() external view returns (string memory);
    /// Base consensus timeout (PBFT view timeout, Raft election timeout), in milliseconds.
    function consensusTimeoutMs() external view returns (uint64);
    /// The protocol version every node must support.
    function compatibilityVersion() external view returns (uint32);
}
