use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

/// A chain of nodes that acts out the plan's effects: a deleted Pod comes back on its Member's
/// template version on the next tick (unless that version is broken), and every tick commits a
/// block.
struct Fleet {
    nodes: Vec<ObservedNode>,
    /// (node, version) pairs that never come up; an empty node name means every node.
    broken: Vec<(&'static str, &'static str)>,
    now: Timestamp,
    status: ConsortiumChainStatus,
    upgrade: UpgradeSpec,
    /// Most consensus nodes down at once over the run.
    most_consensus_down: usize,
}

fn node(name: &str, consensus: bool, version: &str) -> ObservedNode {
    ObservedNode {
        name: name.to_owned(),
        member: name.split('-').next().unwrap_or_default().to_owned(),
        consensus,
        ready: true,
        image_version: Some(version.to_owned()),
        reported_version: Some(version.to_owned()),
        height: Some(10),
        leader: false,
        template_version: Some(version.to_owned()),
        max_compatibility_version: Some(1),
    }
}

impl Fleet {
    /// Four consensus nodes (`c` is the leader) and one observer, all on 1.0.0.
    fn new() -> Self {
        let mut nodes = vec![
            node("a-0", true, "1.0.0"),
            node("b-0", true, "1.0.0"),
            node("c-0", true, "1.0.0"),
            node("d-0", true, "1.0.0"),
            node("a-1", false, "1.0.0"),
        ];
        nodes[2].leader = true;
        let status = ConsortiumChainStatus { version: Some("1.0.0".to_owned()), ..Default::default() };
        Self {
            nodes,
            broken: Vec::new(),
            now: Timestamp::UNIX_EPOCH,
            status,
            upgrade: UpgradeSpec::default(),
            most_consensus_down: 0,
        }
    }

    /// The first reconcile of a new `spec`: the rollout starts and the Members' templates follow.
    fn start(&mut self, spec: &str) {
        assert_eq!(reasons(&self.reconcile(spec)), ["UpgradeStarted"]);
    }

    /// One reconcile towards `spec`: the Members' templates follow [`deployed_version`] first, as
    /// the Member controller applies them.
    fn reconcile(&mut self, spec: &str) -> Vec<Effect> {
        let effects = step(&mut self.status, spec, &self.upgrade, &self.nodes, 1, self.now);
        self.sync_templates(spec);
        for effect in &effects {
            if let Effect::DeletePod(name) = effect {
                let node = self.nodes.iter_mut().find(|node| &node.name == name).expect("deleted node exists");
                node.ready = false;
                node.reported_version = None;
                node.height = None;
                node.image_version = node.template_version.clone();
            }
        }
        let down = self.nodes.iter().filter(|node| node.consensus && !node.ready).count();
        self.most_consensus_down = self.most_consensus_down.max(down);
        effects
    }

    fn sync_templates(&mut self, spec: &str) {
        let chain = ConsortiumChain {
            metadata: Default::default(),
            spec: serde_json::from_value(serde_json::json!({
                "chainId": 1,
                "image": {"repository": "bcos/bcos-node"},
                "version": spec,
                "foundingMembers": ["a"],
            }))
            .expect("a valid spec"),
            status: Some(self.status.clone()),
        };
        let deployed = deployed_version(&chain).to_owned();
        for node in &mut self.nodes {
            node.template_version = Some(deployed.clone());
        }
    }

    /// Time passes and a block is committed; restarted nodes come up unless their version is broken.
    fn tick(&mut self, seconds: i64) {
        self.now += SignedDuration::from_secs(seconds);
        let head = self.nodes.iter().filter_map(|node| node.height).max().unwrap_or_default() + 1;
        for node in &mut self.nodes {
            let broken = self.broken.iter().any(|(name, version)| {
                (name.is_empty() || *name == node.name) && node.image_version.as_deref() == Some(*version)
            });
            if !node.ready && !broken {
                node.ready = true;
                node.reported_version = node.image_version.clone();
                // Builds after 1.0.0 execute compatibility version 2.
                let old = node.reported_version.as_deref() == Some("1.0.0");
                node.max_compatibility_version = Some(if old { 1 } else { 2 });
            }
            if node.ready {
                node.height = Some(head);
            }
        }
    }

    /// Reconciles and ticks until nothing is active or `rounds` run out; the Pods deleted, in order.
    fn run(&mut self, spec: &str, rounds: usize) -> Vec<String> {
        let mut deleted = Vec::new();
        for _ in 0..rounds {
            for effect in self.reconcile(spec) {
                if let Effect::DeletePod(name) = effect {
                    deleted.push(name);
                }
            }
            if !self.status.rollout.as_ref().is_some_and(|rollout| rollout.phase.is_active()) {
                break;
            }
            self.tick(5);
        }
        deleted
    }

    fn rollout(&self) -> &RolloutStatus {
        self.status.rollout.as_ref().expect("a rollout")
    }

    fn states(&self) -> Vec<(&str, NodeRolloutState)> {
        self.rollout().nodes.iter().map(|node| (node.name.as_str(), node.state)).collect()
    }
}

fn reasons(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Event { reason, .. } => Some(*reason),
            Effect::DeletePod(_) => None,
        })
        .collect()
}

#[test]
fn a_new_chain_records_its_version_and_rolls_nothing() {
    let mut status = ConsortiumChainStatus::default();
    let effects = step(&mut status, "1.0.0", &UpgradeSpec::default(), &[], 1, Timestamp::UNIX_EPOCH);
    assert!(effects.is_empty());
    assert_eq!(status.version.as_deref(), Some("1.0.0"));
    assert!(status.rollout.is_none());
}

#[test]
fn upgrades_observers_first_then_consensus_nodes_with_the_leader_last_one_at_a_time() {
    let mut fleet = Fleet::new();
    let deleted = fleet.run("1.1.0", 100);
    assert_eq!(deleted, ["a-1", "a-0", "b-0", "d-0", "c-0"]);
    assert_eq!(fleet.most_consensus_down, 1);
    assert_eq!(fleet.rollout().phase, RolloutPhase::Complete);
    assert!(fleet.states().iter().all(|(_, state)| *state == NodeRolloutState::Upgraded));
    assert_eq!(fleet.status.version.as_deref(), Some("1.1.0"));
    assert!(fleet.nodes.iter().all(|node| node.reported_version.as_deref() == Some("1.1.0")));
}

#[test]
fn a_node_is_done_only_once_it_runs_the_new_version_and_has_a_block_committed_after_its_restart() {
    let mut fleet = Fleet::new();
    fleet.start("1.1.0");
    assert_eq!(reasons(&fleet.reconcile("1.1.0")), ["NodeUpgrading"]);
    // Back up and on the new version, but no block committed since: not done.
    let observer = fleet.nodes.iter_mut().find(|node| node.name == "a-1").expect("observer");
    observer.ready = true;
    observer.reported_version = Some("1.1.0".to_owned());
    observer.height = Some(10);
    assert!(fleet.reconcile("1.1.0").is_empty());
    assert_eq!(fleet.states()[0], ("a-1", NodeRolloutState::Upgrading));
    // Ready on the old version (the Pod came from a stale template): not done.
    fleet.nodes.iter_mut().for_each(|node| node.height = Some(11));
    let observer = fleet.nodes.iter_mut().find(|node| node.name == "a-1").expect("observer");
    observer.reported_version = Some("1.0.0".to_owned());
    assert!(fleet.reconcile("1.1.0").is_empty());
    // New version and a new block: done, and the next node starts.
    let observer = fleet.nodes.iter_mut().find(|node| node.name == "a-1").expect("observer");
    observer.reported_version = Some("1.1.0".to_owned());
    assert_eq!(reasons(&fleet.reconcile("1.1.0")), ["NodeUpgraded", "NodeUpgrading"]);
    assert_eq!(fleet.states()[1], ("a-0", NodeRolloutState::Upgrading));
}

#[test]
fn a_consensus_node_waits_while_another_consensus_node_is_unhealthy() {
    let mut fleet = Fleet::new();
    fleet.run("1.1.0", 2);
    // The observer is done; b-0 falls behind on its own.
    fleet.nodes.iter_mut().find(|node| node.name == "b-0").expect("b-0").ready = false;
    fleet.tick(5);
    fleet.nodes.iter_mut().find(|node| node.name == "b-0").expect("b-0").ready = false;
    let effects = fleet.reconcile("1.1.0");
    assert!(!effects.iter().any(|effect| matches!(effect, Effect::DeletePod(_))), "{effects:?}");
    assert!(fleet.rollout().message.contains("b-0"), "{}", fleet.rollout().message);
    // It recovers: the rollout goes on.
    fleet.tick(5);
    assert!(fleet.reconcile("1.1.0").contains(&Effect::DeletePod("a-0".to_owned())));
}

#[test]
fn no_pod_is_deleted_before_its_statefulset_carries_the_target_version() {
    let mut fleet = Fleet::new();
    // The status gets the rollout, but the Member controller has not applied the template yet.
    let effects = step(&mut fleet.status, "1.1.0", &fleet.upgrade, &fleet.nodes, 1, fleet.now);
    assert_eq!(reasons(&effects), ["UpgradeStarted"]);
    assert!(fleet.rollout().message.contains("StatefulSet"));
    assert!(fleet.states().iter().all(|(_, state)| *state == NodeRolloutState::Pending));
}

#[test]
fn a_broken_version_times_out_and_the_changed_nodes_are_rolled_back() {
    let mut fleet = Fleet::new();
    fleet.broken.push(("", "1.1.0"));
    // The observer takes the broken version and never comes up.
    fleet.start("1.1.0");
    fleet.reconcile("1.1.0");
    fleet.tick(300);
    assert!(fleet.reconcile("1.1.0").is_empty());
    fleet.tick(301);
    let effects = fleet.reconcile("1.1.0");
    assert_eq!(reasons(&effects), ["NodeUpgradeFailed", "RollbackStarted"]);
    assert_eq!(fleet.rollout().phase, RolloutPhase::RollingBack);
    assert_eq!(fleet.states()[0], ("a-1", NodeRolloutState::Failed));
    let deleted = fleet.run("1.1.0", 20);
    assert_eq!(deleted, ["a-1"]);
    assert_eq!(fleet.rollout().phase, RolloutPhase::RolledBack);
    assert_eq!(fleet.states()[0], ("a-1", NodeRolloutState::Reverted));
    assert_eq!(fleet.status.version.as_deref(), Some("1.0.0"));
    assert!(fleet.nodes.iter().all(|node| node.reported_version.as_deref() == Some("1.0.0")));
    // Not tried again while spec.version still names it.
    assert!(fleet.run("1.1.0", 5).is_empty());
    assert_eq!(fleet.rollout().phase, RolloutPhase::RolledBack);
}

#[test]
fn a_version_that_fails_on_a_later_node_reverts_every_changed_node_the_failed_one_first() {
    let mut fleet = Fleet::new();
    fleet.upgrade.node_timeout_seconds = 60;
    // The observer and a-0 upgrade; b-0 then fails on the new version.
    fleet.broken.push(("b-0", "1.1.0"));
    let deleted = fleet.run("1.1.0", 100);
    assert_eq!(deleted, ["a-1", "a-0", "b-0", "b-0", "a-0", "a-1"]);
    assert_eq!(fleet.most_consensus_down, 1);
    assert_eq!(fleet.rollout().phase, RolloutPhase::RolledBack);
    assert_eq!(
        fleet.states(),
        [
            ("a-1", NodeRolloutState::Reverted),
            ("a-0", NodeRolloutState::Reverted),
            ("b-0", NodeRolloutState::Reverted),
            ("c-0", NodeRolloutState::Pending),
            ("d-0", NodeRolloutState::Pending),
        ]
    );
    assert!(fleet.nodes.iter().all(|node| node.reported_version.as_deref() == Some("1.0.0")));
}

#[test]
fn without_rollback_a_failure_halts_and_nothing_more_is_restarted() {
    let mut fleet = Fleet::new();
    fleet.upgrade.rollback_on_failure = false;
    fleet.upgrade.node_timeout_seconds = 60;
    fleet.broken.push(("", "1.1.0"));
    let deleted = fleet.run("1.1.0", 40);
    assert_eq!(deleted, ["a-1"]);
    assert_eq!(fleet.rollout().phase, RolloutPhase::Halted);
    assert!(fleet.rollout().message.contains("a-1"));
    // Setting the version back rolls the failed node back.
    let deleted = fleet.run("1.0.0", 40);
    assert_eq!(deleted, ["a-1"]);
    assert_eq!(fleet.rollout().phase, RolloutPhase::RolledBack);
    assert_eq!(fleet.status.version.as_deref(), Some("1.0.0"));
}

#[test]
fn pausing_stops_after_the_node_in_flight_and_resuming_goes_on() {
    let mut fleet = Fleet::new();
    fleet.start("1.1.0");
    fleet.reconcile("1.1.0");
    fleet.upgrade.paused = true;
    fleet.tick(5);
    let effects = fleet.reconcile("1.1.0");
    assert_eq!(reasons(&effects), ["NodeUpgraded", "UpgradePaused"]);
    assert_eq!(fleet.rollout().phase, RolloutPhase::Paused);
    fleet.tick(5);
    assert!(fleet.reconcile("1.1.0").is_empty());
    fleet.upgrade.paused = false;
    let effects = fleet.reconcile("1.1.0");
    assert_eq!(reasons(&effects), ["UpgradeResumed", "NodeUpgrading"]);
    assert!(effects.contains(&Effect::DeletePod("a-0".to_owned())));
}

#[test]
fn a_new_version_during_a_rollout_takes_every_node_to_it() {
    let mut fleet = Fleet::new();
    fleet.run("1.1.0", 4);
    let effects = fleet.reconcile("1.2.0");
    assert_eq!(reasons(&effects)[0], "UpgradeRetargeted");
    assert_eq!(fleet.rollout().from_version, "1.0.0");
    fleet.tick(5);
    fleet.run("1.2.0", 100);
    assert_eq!(fleet.rollout().phase, RolloutPhase::Complete);
    assert_eq!(fleet.status.version.as_deref(), Some("1.2.0"));
    assert!(fleet.nodes.iter().all(|node| node.reported_version.as_deref() == Some("1.2.0")));
}

#[test]
fn nodes_that_join_during_a_rollout_on_the_new_version_are_not_restarted() {
    let mut fleet = Fleet::new();
    fleet.run("1.1.0", 2);
    let mut joined = node("e-0", false, "1.1.0");
    joined.height = fleet.nodes[0].height;
    fleet.nodes.push(joined);
    let deleted = fleet.run("1.1.0", 100);
    assert!(!deleted.contains(&"e-0".to_owned()));
    assert_eq!(fleet.rollout().phase, RolloutPhase::Complete);
    assert!(fleet.states().contains(&("e-0", NodeRolloutState::Upgraded)));
}

#[test]
fn the_compatibility_version_is_raised_only_once_every_node_runs_a_build_that_executes_it() {
    let mut fleet = Fleet::new();
    assert_eq!(compatibility_target(&fleet.status, &fleet.nodes), Some(1));
    fleet.start("1.1.0");
    while fleet.rollout().phase.is_active() {
        assert_eq!(compatibility_target(&fleet.status, &fleet.nodes), None, "not during the rollout");
        fleet.tick(5);
        fleet.reconcile("1.1.0");
    }
    assert_eq!(fleet.rollout().phase, RolloutPhase::Complete);
    assert_eq!(compatibility_target(&fleet.status, &fleet.nodes), Some(2), "{:?}", fleet.nodes);
    // A node that does not answer may run anything: no raise.
    fleet.nodes[0].max_compatibility_version = None;
    assert_eq!(compatibility_target(&fleet.status, &fleet.nodes), None);
}

#[test]
fn a_rollback_also_reverts_a_node_on_the_new_image_that_the_record_lost() {
    let mut fleet = Fleet::new();
    fleet.upgrade.node_timeout_seconds = 60;
    fleet.broken.push(("b-0", "1.1.0"));
    fleet.start("1.1.0");
    // The observer and a-0 upgrade, b-0 fails; once the rollback starts, the record of a-0 is lost
    // (an older status written back).
    while fleet.rollout().phase != RolloutPhase::RollingBack {
        fleet.tick(5);
        fleet.reconcile("1.1.0");
    }
    let a0 = fleet.status.rollout.as_mut().and_then(|rollout| rollout.nodes.iter_mut().find(|node| node.name == "a-0"));
    let a0 = a0.expect("a-0 tracked");
    assert_eq!(a0.state, NodeRolloutState::Upgraded);
    a0.state = NodeRolloutState::Pending;
    fleet.run("1.1.0", 200);
    assert_eq!(fleet.rollout().phase, RolloutPhase::RolledBack);
    assert!(fleet.nodes.iter().all(|node| node.reported_version.as_deref() == Some("1.0.0")), "{:?}", fleet.nodes);
}
