// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

/// The node registry at 0x0000000000000000000000000000000000001003: which nodes vote on blocks
/// (consensus nodes) and which only receive and verify them (observer nodes). Node ids are the
/// nodes' Ed25519 public keys. A change made in block N is in force from block N+1: block N+1 is
/// agreed on, and its certificate checked, by the consensus nodes listed after block N.
/// The governance contract (0x…1005, a committee proposal) may make every change; an account with
/// the `chainOperator` role may add new nodes as observers and remove observers.
/// A registered node may have a peer-to-peer address (`host:port`) that every node dials, besides
/// the peers in its node.yaml; it is set by whoever may add the node in its current role.
interface INodeRegistry {
    /// Emitted on every change of role; `role` is `consensus`, `observer` or `removed`.
    event NodeChanged(bytes32 indexed nodeId, string role);
    /// Emitted when a node's peer-to-peer address is set or cleared (`p2pAddress` empty); not
    /// when the node is removed, which removes its address too.
    event NodeAddressChanged(bytes32 indexed nodeId, string p2pAddress);

    /// The consensus nodes in force for the next block.
    function consensusNodes() external view returns (bytes32[] memory);
    /// The observer nodes.
    function observerNodes() external view returns (bytes32[] memory);
    /// Makes a node (new, or an observer) a consensus node; only the governance contract.
    function addConsensusNode(bytes32 nodeId) external returns (int32);
    /// Makes a node (new, or a consensus node) an observer: the governance contract, or a chain
    /// operator for a node that is not a consensus node.
    function addObserverNode(bytes32 nodeId) external returns (int32);
    /// Removes a node from the chain: the governance contract, or a chain operator for an
    /// observer. The last consensus node cannot be removed.
    function removeNode(bytes32 nodeId) external returns (int32);
    /// Sets the peer-to-peer address of a registered node: `host:port`, with an IPv4 address, an
    /// IPv6 address in brackets or a DNS name, and a port from 1 to 65535; the empty string clears
    /// it. The governance contract, or a chain operator for an observer.
    function setNodeAddress(bytes32 nodeId, string calldata p2pAddress) external returns (int32);
    /// The peer-to-peer address of a node; empty when it has none or is not registered.
    function nodeAddress(bytes32 nodeId) external view returns (string memory);
}
