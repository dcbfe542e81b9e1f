// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

/// The governance contract at 0x0000000000000000000000000000000000001005: the committee named in
/// the genesis governs the chain by threshold vote. A member proposes a call of another system
/// contract (its own approval counts at once); other members vote; when the approvals reach the
/// threshold the call runs in that same transaction with this contract as the caller. Changing
/// the system config, the consensus nodes, roles, the revocation list or the committee itself is
/// only possible this way. Every step is recorded in an audit log that committee members,
/// regulators and auditors can read.
interface IGovernance {
    /// Where a proposal stands. `Expired`: its last block passed before it reached the threshold.
    enum ProposalStatus {
        /// Open for votes.
        Pending,
        /// Reached the threshold and its call succeeded.
        Executed,
        /// Reached the threshold but its call reverted (`result` says why).
        Failed,
        /// So many members rejected it that the threshold is out of reach.
        Rejected,
        /// Its last voting block passed without a decision.
        Expired
    }

    /// A proposal with its votes counted among the current committee.
    struct Proposal {
        uint256 id;
        address proposer;
        address target;
        bytes data;
        uint64 createdAtBlock;
        uint64 expiresAtBlock;
        ProposalStatus status;
        uint32 approvals;
        uint32 rejections;
        /// Why the call reverted, for a `Failed` proposal.
        string result;
    }

    /// One governance action.
    struct AuditEntry {
        uint64 blockNumber;
        address actor;
        string action;
        string details;
    }

    event ProposalCreated(uint256 indexed id, address indexed proposer, address target, uint64 expiresAtBlock);
    event Voted(uint256 indexed id, address indexed voter, bool approve);
    event ProposalExecuted(uint256 indexed id);
    event ProposalFailed(uint256 indexed id, string reason);
    event ProposalRejected(uint256 indexed id);
    event ProposalExpired(uint256 indexed id);
    event MemberAdded(address indexed member);
    event MemberRemoved(address indexed member);
    event ThresholdChanged(uint32 threshold);

    /// Proposes that this contract calls `target` (a system contract) with `data`; votes are
    /// taken up to and including block `expiresAtBlock`. Only committee members; returns the
    /// proposal's id (from 1). The proposer's approval counts, so with a threshold of 1 the call
    /// runs at once.
    function propose(address target, bytes calldata data, uint64 expiresAtBlock) external returns (uint256 id);
    /// A committee member's vote on a pending proposal; each member votes once. Returns the
    /// proposal's status after the vote: `Executed` or `Failed` when this vote reached the
    /// threshold, `Rejected` when the threshold can no longer be reached.
    function vote(uint256 id, bool approve) external returns (ProposalStatus);
    /// A proposal by id.
    function proposal(uint256 id) external view returns (Proposal memory);
    /// Number of proposals made (the latest id).
    function proposalCount() external view returns (uint256);
    /// The committee members.
    function committee() external view returns (address[] memory);
    /// Approvals a proposal needs.
    function threshold() external view returns (uint32);
    /// Adds a committee member; only through a proposal.
    function addMember(address member) external returns (int32);
    /// Removes a committee member; only through a proposal, and never below the threshold.
    function removeMember(address member) external returns (int32);
    /// Sets the approvals a proposal needs (1 to the committee size); only through a proposal.
    function setThreshold(uint32 newThreshold) external returns (int32);
    /// Number of audit log entries.
    function auditLogLength() external view returns (uint256);
    /// Up to `count` (at most 100) audit log entries from index `start`; only committee members,
    /// regulators and auditors may read them.
    function auditLog(uint256 start, uint256 count) external view returns (AuditEntry[] memory);
}
