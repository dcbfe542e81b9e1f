//! Grey upgrades, planned without I/O: which node is restarted next, when a restarted node counts
//! as done, and what a failure, a pause or a new `spec.version` does to a rollout.
//!
//! The controller observes every node of the chain ([`ObservedNode`]), calls [`step`] with the
//! chain's status, and carries out the [`Effect`]s it returns (delete a Pod, publish an Event).
//! Member StatefulSets use the `OnDelete` strategy and the image of [`deployed_version`], so a
//! node changes version only when this plan deletes its Pod.
//!
//! Rules:
//! - one node at a time: observers first, then consensus nodes, the current leader last;
//! - a consensus node is restarted only while every other consensus node is healthy, so no more
//!   consensus nodes are down than the fault budget allows (a budget of 0, a chain of fewer than
//!   four PBFT or three Raft nodes, still upgrades one node at a time, and the chain stalls while
//!   that node restarts);
//! - a node is done once its Pod is Ready, it reports the new version, it is within
//!   [`CAUGHT_UP_BLOCKS`] of the head, and it has a block the chain committed after its restart;
//! - a node not done within `spec.upgrade.nodeTimeoutSeconds` halts the rollout, and with
//!   `rollbackOnFailure` the changed nodes go back to the previous version, the same way.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::crd::{
    ConsortiumChain, ConsortiumChainStatus, NodeRollout, NodeRolloutState, RolloutPhase, RolloutStatus, UpgradeSpec,
};

/// How far behind the chain's head a node may be and still count as caught up.
pub const CAUGHT_UP_BLOCKS: u64 = 2;

/// One node of the chain as the controller sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNode {
    /// The Pod's name.
    pub name: String,
    /// The Member it belongs to.
    pub member: String,
    /// Whether the registry has it as a consensus node.
    pub consensus: bool,
    /// Whether its Pod is Ready.
    pub ready: bool,
    /// The version tag of its Pod's image.
    pub image_version: Option<String>,
    /// The software version the node reports.
    pub reported_version: Option<String>,
    /// Its head block, when it answers.
    pub height: Option<u64>,
    /// Whether it leads consensus now.
    pub leader: bool,
    /// The version its Member's StatefulSet gives new Pods.
    pub template_version: Option<String>,
    /// The highest chain compatibility version its build executes, when it answers.
    pub max_compatibility_version: Option<u32>,
}

impl ObservedNode {
    /// Ready and caught up, whatever it runs.
    fn healthy(&self, head: u64) -> bool {
        self.ready && self.height.is_some_and(|height| height + CAUGHT_UP_BLOCKS >= head)
    }

    /// Ready, caught up, and running `version` from an image of `version`.
    fn runs(&self, version: &str, head: u64) -> bool {
        self.healthy(head)
            && self.reported_version.as_deref() == Some(version)
            && self.image_version.as_deref() == Some(version)
    }
}

/// What the controller must do for the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Delete this Pod, so its StatefulSet recreates it on the version the rollout targets.
    DeletePod(String),
    /// Publish an Event on the chain.
    Event {
        /// Warning rather than Normal.
        warning: bool,
        /// Its reason.
        reason: &'static str,
        /// Its message.
        note: String,
        /// The node Pod it concerns, if one.
        node: Option<String>,
    },
}

fn event(warning: bool, reason: &'static str, note: String) -> Effect {
    Effect::Event { warning, reason, note, node: None }
}

fn node_event(node: &str, warning: bool, reason: &'static str, note: String) -> Effect {
    Effect::Event { warning, reason, note, node: Some(node.to_owned()) }
}

/// The version member StatefulSets give new Pods: the one a rollout moves nodes to, otherwise the
/// one the chain runs (`spec.version` until the chain's status records one).
pub fn deployed_version(chain: &ConsortiumChain) -> &str {
    let status = chain.status.as_ref();
    match status.and_then(|status| status.rollout.as_ref()) {
        Some(rollout) if rollout.phase.is_active() => rollout.target(),
        _ => status.and_then(|status| status.version.as_deref()).unwrap_or(&chain.spec.version),
    }
}

/// The compatibility version the chain can be raised to: the highest every node executes, once
/// no rollout is under way and every node answers. A node that is down or silent may run an
/// older build, so then there is none.
pub fn compatibility_target(status: &ConsortiumChainStatus, nodes: &[ObservedNode]) -> Option<u32> {
    if nodes.is_empty() || status.rollout.as_ref().is_some_and(|rollout| rollout.phase.is_active()) {
        return None;
    }
    nodes.iter().map(|node| node.max_compatibility_version).collect::<Option<Vec<u32>>>()?.into_iter().min()
}

/// Moves the chain's rollout one step towards `spec_version`.
pub fn step(
    status: &mut ConsortiumChainStatus,
    spec_version: &str,
    upgrade: &UpgradeSpec,
    nodes: &[ObservedNode],
    fault_budget: u32,
    now: Timestamp,
) -> Vec<Effect> {
    let mut effects = follow_spec(status, spec_version, nodes, now);
    let Some(rollout) = status.rollout.as_mut().filter(|rollout| rollout.phase.is_active()) else {
        return effects;
    };
    effects.extend(advance(rollout, upgrade, nodes, fault_budget, now));
    match rollout.phase {
        RolloutPhase::Complete => status.version = Some(rollout.to_version.clone()),
        RolloutPhase::RolledBack => status.version = Some(rollout.from_version.clone()),
        _ => {}
    }
    effects
}

/// Starts, retargets or reverses a rollout when `spec.version` differs from what runs.
fn follow_spec(
    status: &mut ConsortiumChainStatus,
    spec_version: &str,
    nodes: &[ObservedNode],
    now: Timestamp,
) -> Vec<Effect> {
    let Some(running) = status.version.clone() else {
        // A new chain: its nodes are created on the spec's version, nothing to roll.
        status.version = Some(spec_version.to_owned());
        return Vec::new();
    };
    match status.rollout.as_mut() {
        Some(rollout) if rollout.phase.is_active() => {
            if spec_version == rollout.to_version
                || (rollout.phase == RolloutPhase::RollingBack && spec_version == rollout.from_version)
            {
                Vec::new()
            } else if spec_version == rollout.from_version {
                rollout.phase = RolloutPhase::RollingBack;
                rollout.message = format!("spec.version set back to {spec_version}: rolling back");
                vec![event(false, "RollbackRequested", rollout.message.clone())]
            } else {
                let note = format!(
                    "spec.version changed to {spec_version} during the rollout to {}: every node goes to {spec_version}",
                    rollout.to_version
                );
                status.rollout = Some(begin(&rollout.from_version.clone(), spec_version, nodes, now));
                vec![event(false, "UpgradeRetargeted", note)]
            }
        }
        Some(rollout) if rollout.phase == RolloutPhase::RolledBack && rollout.to_version == spec_version => {
            // The version failed and was rolled back: it is not tried again until spec.version
            // names another one (or the same one after it was set to something else).
            Vec::new()
        }
        _ if spec_version == running => Vec::new(),
        _ => {
            let rollout = begin(&running, spec_version, nodes, now);
            let note =
                format!("upgrading {} nodes from {running} to {spec_version}, one at a time", rollout.nodes.len());
            status.rollout = Some(rollout);
            vec![event(false, "UpgradeStarted", note)]
        }
    }
}

/// A new rollout: observers first, then consensus nodes, each group by name.
fn begin(from: &str, to: &str, nodes: &[ObservedNode], now: Timestamp) -> RolloutStatus {
    let mut rollout = RolloutStatus {
        from_version: from.to_owned(),
        to_version: to.to_owned(),
        phase: RolloutPhase::Progressing,
        message: String::new(),
        started_at: now.to_string(),
        nodes: Vec::new(),
    };
    track(&mut rollout, nodes);
    rollout
}

/// Adds nodes that appeared (a Member joined) and drops nodes that are gone.
fn track(rollout: &mut RolloutStatus, nodes: &[ObservedNode]) {
    rollout.nodes.retain(|tracked| nodes.iter().any(|node| node.name == tracked.name));
    let mut new: Vec<&ObservedNode> =
        nodes.iter().filter(|node| !rollout.nodes.iter().any(|tracked| tracked.name == node.name)).collect();
    new.sort_by_key(|node| (node.consensus, node.name.clone()));
    rollout.nodes.extend(new.into_iter().map(|node| NodeRollout {
        name: node.name.clone(),
        member: node.member.clone(),
        consensus: node.consensus,
        state: NodeRolloutState::Pending,
        restarted_at: None,
        head_at_restart: None,
        finished_at: None,
    }));
    for tracked in &mut rollout.nodes {
        if let Some(node) = nodes.iter().find(|node| node.name == tracked.name) {
            tracked.consensus = node.consensus;
        }
    }
}

fn advance(
    rollout: &mut RolloutStatus,
    upgrade: &UpgradeSpec,
    nodes: &[ObservedNode],
    fault_budget: u32,
    now: Timestamp,
) -> Vec<Effect> {
    track(rollout, nodes);
    let head = nodes.iter().filter_map(|node| node.height).max().unwrap_or_default();
    let mut effects = Vec::new();
    if let Some(index) = rollout
        .nodes
        .iter()
        .position(|node| matches!(node.state, NodeRolloutState::Upgrading | NodeRolloutState::Reverting))
    {
        match check_in_flight(rollout, index, upgrade, nodes, head, now) {
            InFlight::Waiting => return effects,
            InFlight::Done(effect) => effects.push(effect),
            InFlight::Failed(more) => {
                effects.extend(more);
                return effects;
            }
        }
    }
    if rollout.phase == RolloutPhase::Halted {
        return effects;
    }
    if rollout.phase != RolloutPhase::RollingBack {
        match (upgrade.paused, rollout.phase) {
            (true, RolloutPhase::Progressing) => {
                rollout.phase = RolloutPhase::Paused;
                rollout.message = "paused by spec.upgrade.paused".to_owned();
                effects.push(event(false, "UpgradePaused", format!("rollout to {} paused", rollout.to_version)));
                return effects;
            }
            (true, _) => return effects,
            (false, RolloutPhase::Paused) => {
                rollout.phase = RolloutPhase::Progressing;
                effects.push(event(false, "UpgradeResumed", format!("rollout to {} resumed", rollout.to_version)));
            }
            (false, _) => {}
        }
    }
    effects.extend(start_next(rollout, nodes, fault_budget, head, now));
    effects
}

enum InFlight {
    Waiting,
    Done(Effect),
    Failed(Vec<Effect>),
}

/// Whether the node being restarted is done, still within its time, or failed.
fn check_in_flight(
    rollout: &mut RolloutStatus,
    index: usize,
    upgrade: &UpgradeSpec,
    nodes: &[ObservedNode],
    head: u64,
    now: Timestamp,
) -> InFlight {
    let target = rollout.target().to_owned();
    let tracked = &mut rollout.nodes[index];
    let reverting = tracked.state == NodeRolloutState::Reverting;
    let observed = nodes.iter().find(|node| node.name == tracked.name);
    let committed_since =
        |node: &ObservedNode| node.height.zip(tracked.head_at_restart).is_some_and(|(height, before)| height > before);
    if observed.is_some_and(|node| node.runs(&target, head) && committed_since(node)) {
        tracked.state = if reverting { NodeRolloutState::Reverted } else { NodeRolloutState::Upgraded };
        tracked.finished_at = Some(now.to_string());
        let (reason, done) = if reverting { ("NodeReverted", "is back on") } else { ("NodeUpgraded", "runs") };
        let note = format!("{} {done} {target} and is caught up", tracked.name);
        return InFlight::Done(node_event(&tracked.name, false, reason, note));
    }
    let started = tracked.restarted_at.as_deref().and_then(|time| time.parse::<Timestamp>().ok()).unwrap_or(now);
    let timeout = SignedDuration::from_secs(i64::from(upgrade.node_timeout_seconds));
    if now.duration_since(started) <= timeout {
        let name = tracked.name.clone();
        rollout.message = format!("waiting for {name} to run {target}, be ready and catch up");
        return InFlight::Waiting;
    }
    let why = match observed {
        None => "its Pod does not exist".to_owned(),
        Some(node) if !node.ready => "its Pod is not Ready".to_owned(),
        Some(node) if node.reported_version.as_deref() != Some(target.as_str()) => {
            format!("it reports version {}", node.reported_version.as_deref().unwrap_or("nothing"))
        }
        Some(_) => "it has not caught up with the chain".to_owned(),
    };
    let name = tracked.name.clone();
    let seconds = upgrade.node_timeout_seconds;
    if reverting {
        tracked.state = NodeRolloutState::Failed;
        rollout.phase = RolloutPhase::Halted;
        rollout.message = format!("rollback halted: {name} did not come back on {target} within {seconds}s: {why}");
        return InFlight::Failed(vec![node_event(&name, true, "RollbackHalted", rollout.message.clone())]);
    }
    tracked.state = NodeRolloutState::Failed;
    let failure = format!("{name} did not become healthy on {target} within {seconds}s: {why}");
    let mut effects = vec![node_event(&name, true, "NodeUpgradeFailed", failure.clone())];
    if upgrade.rollback_on_failure {
        rollout.phase = RolloutPhase::RollingBack;
        rollout.message = format!("{failure}; rolling back to {}", rollout.from_version);
        effects.push(event(true, "RollbackStarted", rollout.message.clone()));
    } else {
        rollout.phase = RolloutPhase::Halted;
        rollout.message = format!("{failure}; halted (rollbackOnFailure is off)");
        effects.push(event(true, "UpgradeHalted", rollout.message.clone()));
    }
    InFlight::Failed(effects)
}

/// Restarts the next node, or finishes the rollout when none is left.
fn start_next(
    rollout: &mut RolloutStatus,
    nodes: &[ObservedNode],
    fault_budget: u32,
    head: u64,
    now: Timestamp,
) -> Vec<Effect> {
    let rolling_back = rollout.phase == RolloutPhase::RollingBack;
    let target = rollout.target().to_owned();
    let mut effects = Vec::new();
    loop {
        let Some(index) = next_node(rollout, nodes, rolling_back) else {
            return finish(rollout, effects);
        };
        let Some(node) = nodes.iter().find(|node| node.name == rollout.nodes[index].name) else {
            return effects;
        };
        if node.runs(&target, head) {
            // Created on the target version already (a Member that joined during the rollout).
            let tracked = &mut rollout.nodes[index];
            tracked.state = if rolling_back { NodeRolloutState::Reverted } else { NodeRolloutState::Upgraded };
            tracked.finished_at = Some(now.to_string());
            continue;
        }
        if node.template_version.as_deref() != Some(target.as_str()) {
            rollout.message = format!("waiting for member {}'s StatefulSet to carry version {target}", node.member);
            return effects;
        }
        if node.consensus {
            let down = nodes
                .iter()
                .filter(|other| other.consensus && other.name != node.name && !other.healthy(head))
                .map(|other| other.name.as_str())
                .collect::<Vec<_>>();
            if !down.is_empty() && down.len() + 1 > fault_budget.max(1) as usize {
                rollout.message = format!(
                    "waiting before restarting {}: consensus nodes not healthy ({}) and the fault budget is {fault_budget}",
                    node.name,
                    down.join(", ")
                );
                return effects;
            }
        }
        let tracked = &mut rollout.nodes[index];
        tracked.state = if rolling_back { NodeRolloutState::Reverting } else { NodeRolloutState::Upgrading };
        tracked.restarted_at = Some(now.to_string());
        tracked.head_at_restart = Some(head);
        tracked.finished_at = None;
        rollout.message = format!("restarting {} on {target}", tracked.name);
        let (reason, verb) = if rolling_back { ("NodeReverting", "back to") } else { ("NodeUpgrading", "on") };
        effects.push(node_event(&tracked.name, false, reason, format!("restarting {} {verb} {target}", tracked.name)));
        effects.push(Effect::DeletePod(tracked.name.clone()));
        return effects;
    }
}

/// The next node to restart: upgrading, pending observers, then pending consensus nodes with the
/// leader last; rolling back, the failed node, then the upgraded ones in reverse order, then any
/// other node on another image.
fn next_node(rollout: &RolloutStatus, nodes: &[ObservedNode], rolling_back: bool) -> Option<usize> {
    let is_leader = |name: &str| nodes.iter().any(|node| node.name == name && node.leader);
    if rolling_back {
        let failed = rollout.nodes.iter().position(|node| node.state == NodeRolloutState::Failed);
        let target = rollout.target();
        // Whatever the record says, a node on another image has to come back too.
        let elsewhere = |tracked: &NodeRollout| {
            nodes
                .iter()
                .any(|node| node.name == tracked.name && node.image_version.as_deref().is_some_and(|v| v != target))
        };
        return failed
            .or_else(|| rollout.nodes.iter().rposition(|node| node.state == NodeRolloutState::Upgraded))
            .or_else(|| rollout.nodes.iter().position(elsewhere));
    }
    let pending = |consensus: bool, leader: bool| {
        rollout.nodes.iter().position(|node| {
            node.state == NodeRolloutState::Pending && node.consensus == consensus && is_leader(&node.name) == leader
        })
    };
    pending(false, false)
        .or_else(|| pending(false, true))
        .or_else(|| pending(true, false))
        .or_else(|| pending(true, true))
}

fn finish(rollout: &mut RolloutStatus, mut effects: Vec<Effect>) -> Vec<Effect> {
    if rollout.phase == RolloutPhase::RollingBack {
        rollout.phase = RolloutPhase::RolledBack;
        rollout.message = format!(
            "every changed node runs {} again; {} is not retried until spec.version changes",
            rollout.from_version, rollout.to_version
        );
        effects.push(event(true, "RolledBack", rollout.message.clone()));
    } else {
        rollout.phase = RolloutPhase::Complete;
        rollout.message = format!("every node runs {}", rollout.to_version);
        effects.push(event(false, "UpgradeComplete", rollout.message.clone()));
    }
    effects
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
