//! Chain settings driven by the resource: when `spec.consensus` differs from the system config
//! on chain, the operator proposes the change with its governance key. A consensus mode change is
//! scheduled [`SWITCH_AHEAD`] blocks after the current head, so every node switches at the same
//! height; the other settings take effect from the next block, as the contract does. Once every
//! node runs a build that executes a higher compatibility version (and no rollout is under way),
//! the operator raises the chain's to it, which turns on the features that version brings; it
//! never lowers it.

use alloy_primitives::U256;
use bcos_sdk::{
    governance::{GovernanceError, Governor, ProposalOutcome},
    types::system::{ISystemConfig, SYSTEM_CONFIG_ADDRESS},
};

use crate::crd::{ConsensusSpec, ConsortiumChainStatus, PendingProposal};

/// How far ahead of the head a consensus switch is scheduled: the proposal must commit before
/// that height, with room for a slow commit on a loaded chain.
pub const SWITCH_AHEAD: u64 = 10;
/// Blocks a settings proposal stays open for the committee's votes.
const PROPOSAL_LIFETIME: u64 = 100_000;
/// The system config key of the execution rules in force.
const COMPATIBILITY_KEY: &str = "compatibility_version";
/// The system config's refusal of a switch height that is no longer in the future.
const TOO_LATE: &str = "is not after the current block";

/// One system config value the spec sets.
struct Setting {
    key: &'static str,
    wanted: String,
    /// Proposed only when above the value on chain (the compatibility version never goes down).
    raise_only: bool,
}

fn settings(spec: &ConsensusSpec) -> [Setting; 4] {
    [
        Setting { key: "block_interval_ms", wanted: spec.block_interval_ms.to_string(), raise_only: false },
        Setting { key: "consensus_timeout_ms", wanted: spec.timeout_ms.to_string(), raise_only: false },
        Setting { key: "max_txs_per_block", wanted: spec.max_txs_per_block.to_string(), raise_only: false },
        Setting { key: "block_gas_limit", wanted: spec.block_gas_limit.to_string(), raise_only: false },
    ]
}

/// What a reconcile did about the settings, for Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A consensus switch was scheduled (or its proposal awaits votes).
    SwitchScheduled {
        /// The new mode.
        mode: String,
        /// The height it takes effect at.
        height: u64,
        /// Whether it awaits committee votes.
        pending_votes: bool,
    },
    /// A setting was changed (or its proposal awaits votes).
    SettingChanged {
        /// The system config key.
        key: String,
        /// The new value.
        value: String,
        /// Whether it awaits committee votes.
        pending_votes: bool,
    },
    /// A proposal failed on chain.
    Refused {
        /// What was proposed.
        what: String,
        /// The contract's reason.
        reason: String,
    },
}

/// Brings the on-chain consensus settings to `spec` and the compatibility version up to
/// `compatibility_target`, one proposal per call, and records a pending switch (mode and height)
/// in `status`.
pub async fn reconcile(
    governor: &mut Governor,
    spec: &ConsensusSpec,
    compatibility_target: Option<u32>,
    status: &mut ConsortiumChainStatus,
) -> Result<Option<Change>, GovernanceError> {
    let height = governor.status().await?.height;
    let wanted_mode = match spec.mode {
        crate::crd::ConsensusMode::Pbft => "pbft",
        crate::crd::ConsensusMode::Raft => "raft",
    };
    let (mode, enable_at) = latest(governor, "consensus_mode").await?;
    if mode == wanted_mode {
        let scheduled = enable_at > height;
        status.pending_consensus_mode = scheduled.then(|| mode.clone());
        status.consensus_switch_height = (enable_at > 0).then_some(enable_at);
    }
    if let Some(pending) = &status.pending_change {
        if pending.expires_at_block >= height {
            return Ok(None);
        }
        status.pending_change = None;
    }
    if mode != wanted_mode {
        let at = height + SWITCH_AHEAD;
        let call = ISystemConfig::setValueByKeyAtCall {
            key: "consensus_mode".into(),
            value: wanted_mode.into(),
            enableNumber: U256::from(at),
        };
        let outcome = governor.propose(SYSTEM_CONFIG_ADDRESS, &call, PROPOSAL_LIFETIME).await?;
        return Ok(Some(match outcome {
            ProposalOutcome::Failed { reason, .. } if reason.contains(TOO_LATE) => {
                // Committed past the height it chose: the next reconcile schedules it again.
                return Ok(None);
            }
            ProposalOutcome::Failed { reason, .. } => {
                Change::Refused { what: format!("switching to {wanted_mode} at block {at}"), reason }
            }
            ProposalOutcome::Executed { .. } => {
                status.pending_consensus_mode = Some(wanted_mode.to_owned());
                status.consensus_switch_height = Some(at);
                Change::SwitchScheduled { mode: wanted_mode.to_owned(), height: at, pending_votes: false }
            }
            ProposalOutcome::Pending { id, expires_at_block } => {
                status.pending_change = Some(PendingProposal {
                    id: id.to_string(),
                    action: format!("switch to {wanted_mode} at block {at}"),
                    expires_at_block,
                });
                Change::SwitchScheduled { mode: wanted_mode.to_owned(), height: at, pending_votes: true }
            }
        }));
    }
    let raise = compatibility_target.map(|target| Setting {
        key: COMPATIBILITY_KEY,
        wanted: target.to_string(),
        raise_only: true,
    });
    for setting in settings(spec).into_iter().chain(raise) {
        let (value, _) = latest(governor, setting.key).await?;
        let lower = || match (value.parse::<u32>(), setting.wanted.parse::<u32>()) {
            (Ok(current), Ok(wanted)) => wanted <= current,
            _ => true,
        };
        if value == setting.wanted || (setting.raise_only && lower()) {
            continue;
        }
        let call = ISystemConfig::setValueByKeyCall { key: setting.key.into(), value: setting.wanted.clone() };
        let outcome = governor.propose(SYSTEM_CONFIG_ADDRESS, &call, PROPOSAL_LIFETIME).await?;
        return Ok(Some(match outcome {
            ProposalOutcome::Failed { reason, .. } => {
                Change::Refused { what: format!("setting {} to {}", setting.key, setting.wanted), reason }
            }
            ProposalOutcome::Executed { .. } => {
                Change::SettingChanged { key: setting.key.into(), value: setting.wanted, pending_votes: false }
            }
            ProposalOutcome::Pending { id, expires_at_block } => {
                status.pending_change = Some(PendingProposal {
                    id: id.to_string(),
                    action: format!("set {} to {}", setting.key, setting.wanted),
                    expires_at_block,
                });
                Change::SettingChanged { key: setting.key.into(), value: setting.wanted, pending_votes: true }
            }
        }));
    }
    Ok(None)
}

/// A key's latest value on chain (scheduled or in force) and the block it applies from.
async fn latest(governor: &mut Governor, key: &str) -> Result<(String, u64), GovernanceError> {
    let answer = governor.view(SYSTEM_CONFIG_ADDRESS, &ISystemConfig::getValueByKeyCall { key: key.into() }).await?;
    Ok((answer.value, u64::try_from(answer.enableNumber).unwrap_or(u64::MAX)))
}
