//! PBFT: Byzantine fault tolerant agreement on one block per height among n = 3f + 1 nodes.
//!
//! # Data flow
//!
//! Each height runs in views 0, 1, 2, … The leader of `(height, view)` is
//! [`Validators::at`]`(height + view)`, so leadership rotates with both. A quorum is
//! [`Validators::bft_quorum`] (2f + 1 of 3f + 1): any two quorums share at least one honest node.
//!
//! 1. **Pre-prepare.** The leader of view 0 asks the driver to build a block ([`Ready::build`]),
//!    then broadcasts it signed ([`PrePrepare`]). Later views propose inside a [`NewView`].
//! 2. **Prepare.** A replica accepts the first correctly signed pre-prepare of its current view
//!    from that view's leader, hands the block to the driver to re-execute ([`Ready::check`]), and
//!    when the driver confirms the header broadcasts a signed [`Prepare`] vote. The leader votes for
//!    its own block without a check.
//! 3. **Commit.** A node that accepted the block and sees a quorum of prepares for it in its view is
//!    *prepared*: it keeps the prepares as a [`PreparedCertificate`] and broadcasts a
//!    [`CommitVote`], which signs [`QuorumCertificate::signing_message`].
//! 4. **Decide.** A quorum of commit votes for a block of one view, which the node holds and found
//!    valid, is the block's certificate: the engine puts it in [`Ready::commit`] once, and moves
//!    to the next height when the driver calls [`Engine::committed`]. A node that sees the quorum
//!    but lacks the block waits for the driver's sync to call [`Engine::committed`].
//! 5. **View change.** If a view does not decide within [`view_timeout_ms`] (the base timeout
//!    doubled per view, capped), the node leaves it: it broadcasts a [`ViewChange`] to the next
//!    view carrying its highest prepared certificate (and the block it names). The next leader,
//!    given a quorum of view changes, broadcasts a [`NewView`] holding them and a pre-prepare that
//!    re-proposes the block of the highest-view certificate among them, or a freshly built block
//!    if none has one. Replicas check the proofs before accepting that pre-prepare.
//!
//! # Why it is safe
//!
//! *Within a view* an honest node prepares at most one block: the first pre-prepare of the view
//! it accepts (a second, different one from the leader is [`StepError::Equivocation`] and gets no
//! vote), and it votes only in its current view, which it never re-enters. A certificate needs a
//! quorum of prepares, and two quorums share an honest node, so two certificates of one view for
//! different blocks are impossible. Commit votes come only from prepared nodes, so a quorum of
//! them, in one view, exists for at most that view's one prepared block.
//!
//! *Across views*, suppose block `B` decided in view `v`: a quorum sent commit votes, so at least
//! f + 1 honest nodes were prepared on `B` in `v`. Each keeps its highest certificate and puts it
//! in every later view change, and none of them votes in `v` after leaving it (views only grow),
//! so none can disown `B` afterwards. A view after 0 starts only with a [`NewView`] whose proof
//! is a quorum of valid view changes to it (a bare pre-prepare for it is refused); that quorum
//! overlaps the f + 1 nodes, so the proof holds a certificate of view ≥ `v`. By induction on the
//! views after `v`, every certificate of a view ≥ `v` is for `B`, so the highest one in the proof
//! names `B`, and replicas refuse a new-view proposing anything else. Nothing but `B` can be
//! prepared or decided at that height after `v`, which is also why a node may count commit votes
//! of any view, including views it has left.
//!
//! Votes are counted only from members of the node set with valid signatures, one per node per
//! view (a second vote for another block is refused and the first stands); view changes and
//! certificates inside a new-view are checked the same way, so f Byzantine nodes cannot make up a
//! quorum. A new-view needs no signature of its own: its pre-prepare is signed by the leader and
//! each view change by its sender.
//!
//! A node hands out a block only if it holds it and found it valid (it built it, or re-execution
//! gave its header): the header hash the votes sign does not by itself prove the transactions
//! that came with it.
//!
//! # Durable state
//!
//! The argument above assumes an honest node never forgets what it signed; a crash must not
//! change that. So [`Ready::persist`] carries, for the height being decided:
//!
//! - the **view** the node is in: it never votes in a view below it, which is what lets its view
//!   changes speak for everything it prepared;
//! - what it **signed in that view**: the block (its own proposal as the view's leader, or the
//!   pre-prepare it accepted) and whether it sent its prepare and its commit vote for it;
//! - its highest **prepared certificate**, which its view changes carry, and the blocks these
//!   name, so it can still decide the block and hand it to the next leader.
//!
//! Votes of earlier views need no record: the node never votes in them again, and its certificate
//! speaks for what it prepared there. A write goes out exactly when one of these changes: on
//! entering a view, on proposing, on sending a prepare vote, and on sending a commit vote (which
//! comes with a new certificate). Nothing is written at view 0 of a new height until the node
//! signs something (a restart gives that state anyway: the stored state of the previous height is
//! obsolete and ignored), nor by a node outside the node set, which signs nothing.
//!
//! [`Engine::restore`] puts the node back in its view with its certificate and blocks, bound to
//! what it signed: another pre-prepare of that view gets no vote ([`StepError::Equivocation`]),
//! a leader does not build a second block for a view it proposed in, and its next view change
//! carries the certificate. It sends its view-0 pre-prepare and its votes of the view again: the
//! same statements, which may not have left before the crash. Restarts therefore do not count
//! against the f faults the argument tolerates.
//!
//! # Liveness aids
//!
//! A node that sees view changes to higher views from f + 1 nodes (so from at least one honest
//! node) joins the highest view at least f + 1 of them reached. A node answers a view change to a
//! view below its own with its latest view change (and its new-view, if it leads the view), once
//! per sender and view, so a node that was away catches up within a message. A leader sends its
//! new-view again to a node whose view change to that view arrives after it started the view.
//! Messages for the next [`FUTURE_HEIGHTS`] heights are buffered (at most
//! [`MAX_BUFFERED_PER_PEER`] per sender) and replayed once the node gets there. A node outside the
//! node set follows the votes and commits blocks with their certificates, but never votes or times
//! out.

mod durable;
mod messages;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{B256, Bytes};
use bcos_sdk::{
    crypto::NodeKey,
    types::{QuorumCertificate, Vote},
};

use messages::ProofError;
pub use messages::{
    CommitVote, DecodeError, MAX_MESSAGE_BYTES, MAX_NODES, MAX_TRANSACTIONS, NewView, PbftMessage, PrePrepare, Prepare,
    PreparedCertificate, ViewChange,
};

use crate::{
    BuildRequest, Commit, Engine, EngineConfig, NodeId, Proposal, Ready, RestoreError, StepError, Target, Validators,
};

/// Heights ahead of the current one whose messages are buffered rather than dropped.
pub const FUTURE_HEIGHTS: u64 = 2;

/// Most buffered future-height messages kept per sender.
pub const MAX_BUFFERED_PER_PEER: usize = 64;

/// Prepare and commit votes are kept for views up to this many views ahead of the current one.
pub const VOTE_VIEWS_AHEAD: u64 = 4;

/// Commit votes are kept for views down to this many views behind the current one (a quorum of
/// them decides the block whatever the view).
pub const COMMIT_VIEWS_BEHIND: u64 = 4;

/// View changes and new-views for views further ahead than this are dropped.
pub const MAX_VIEW_AHEAD: u64 = 1024;

/// The view timeout stops doubling after this many views.
pub const MAX_BACKOFF_EXPONENT: u32 = 6;

/// Most blocks kept per height (the current view's, the prepared one, and those named by view
/// changes and commit votes); blocks named by nothing are dropped first.
pub const MAX_CANDIDATES: usize = 64;

/// How long view `view` may run before the node moves on: `base_ms · 2^min(view,
/// MAX_BACKOFF_EXPONENT)`, saturating (a zero base counts as 1 ms).
pub fn view_timeout_ms(base_ms: u64, view: u64) -> u64 {
    let exponent = view.min(u64::from(MAX_BACKOFF_EXPONENT));
    base_ms.max(1).saturating_mul(1 << exponent)
}

/// Where a block stands with this node's execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Not handed to the driver yet.
    Unchecked,
    /// In [`Ready::check`], awaiting [`Engine::proposal_checked`].
    Pending,
    /// Re-execution gave the proposed header (or this node built it).
    Valid,
    /// Re-execution disagreed.
    Invalid,
}

/// A block seen at the current height.
#[derive(Debug, Clone)]
struct Candidate {
    proposal: Proposal,
    check: Check,
}

/// One node's signed vote in a view.
#[derive(Debug, Clone)]
struct Signed {
    hash: B256,
    signature: Bytes,
}

/// Votes of one view by voter.
type ViewVotes = BTreeMap<NodeId, Signed>;

/// What the node knows about the height it is deciding.
#[derive(Debug, Default)]
struct HeightState {
    /// Blocks by hash.
    candidates: BTreeMap<B256, Candidate>,
    /// Prepare votes by view (current and a few ahead).
    prepares: BTreeMap<u64, ViewVotes>,
    /// Commit votes by view (a few behind to a few ahead).
    commits: BTreeMap<u64, ViewVotes>,
    /// Each member's latest view change to a view ≥ the current one.
    view_changes: BTreeMap<NodeId, ViewChange>,
    /// This node's highest prepared certificate at this height.
    prepared: Option<PreparedCertificate>,
    /// This node's latest view change at this height.
    own_view_change: Option<ViewChange>,
    /// For each lagging node, the highest view of its that this node answered.
    answered: BTreeMap<NodeId, u64>,
    /// The block was handed out in [`Ready::commit`].
    decided: bool,
}

/// What the node did in its current view.
#[derive(Debug, Default)]
struct ViewState {
    /// Hash of the pre-prepare accepted in this view.
    accepted: Option<B256>,
    /// This node voted prepare for `accepted`.
    prepare_sent: bool,
    /// This node was prepared and voted commit.
    commit_sent: bool,
    /// As leader, asked the driver for a block.
    build_requested: bool,
    /// As leader of a view after 0 with no block to re-propose: the view changes the new-view
    /// will carry once the block is built.
    new_view_proofs: Option<Vec<ViewChange>>,
    /// As leader of a view after 0: the new-view sent.
    new_view_sent: Option<NewView>,
}

/// The PBFT engine. See the [module documentation](self) for the protocol and its safety
/// argument.
#[derive(Debug)]
pub struct Pbft {
    key: NodeKey,
    id: NodeId,
    validators: Validators,
    base_timeout_ms: u64,
    now_ms: u64,
    height: u64,
    view: u64,
    view_started_ms: u64,
    /// When this node last broadcast its view change (and, as leader, its new-view).
    view_change_sent_ms: u64,
    round: HeightState,
    view_state: ViewState,
    /// Messages for heights after the current one, with their senders, in arrival order.
    buffered: Vec<(NodeId, PbftMessage)>,
    ready: Ready<PbftMessage>,
    /// The durable state last handed out in [`Ready::persist`] (or restored); `None` before the
    /// first write.
    persisted: Option<durable::Durable>,
    /// A call other than [`Engine::restore`] happened.
    started: bool,
}

impl Pbft {
    /// An engine deciding `config.height`, in view 0, with its view timer starting at
    /// `config.now_ms`. If it leads view 0 its first [`Ready`] asks for a block.
    pub fn new(config: EngineConfig) -> Self {
        Self::start(config, None)
    }

    /// An engine deciding `config.height`: in view 0 with fresh state, or where `restored` left
    /// off.
    fn start(config: EngineConfig, restored: Option<durable::Restored>) -> Self {
        let id = config.key.node_id();
        let mut pbft = Self {
            key: config.key,
            id,
            validators: config.validators,
            base_timeout_ms: config.timeout_ms,
            now_ms: config.now_ms,
            height: config.height,
            view: 0,
            view_started_ms: config.now_ms,
            view_change_sent_ms: 0,
            round: HeightState::default(),
            view_state: ViewState::default(),
            buffered: Vec::new(),
            ready: Ready::default(),
            persisted: None,
            started: false,
        };
        match restored {
            None => pbft.start_height(),
            Some(restored) => pbft.resume(restored),
        }
        pbft
    }

    /// The configuration this engine would be built with now.
    fn config(&self) -> EngineConfig {
        EngineConfig {
            key: self.key.clone(),
            validators: self.validators.clone(),
            height: self.height,
            timeout_ms: self.base_timeout_ms,
            now_ms: self.now_ms,
        }
    }

    /// The state that must survive a restart, as it is now; `None` while there is nothing to keep
    /// (view 0, nothing signed, nothing prepared: what a restart gives anyway) and for a node
    /// outside the node set, which signs nothing.
    fn durable(&self) -> Option<durable::Durable> {
        if !self.is_member() {
            return None;
        }
        let proposer = self.leader(self.view) == self.id;
        let own = self.view_state.accepted.filter(|_| proposer || self.view_state.prepare_sent).map(|hash| {
            durable::OwnVotes { hash, prepare: self.view_state.prepare_sent, commit: self.view_state.commit_sent }
        });
        let prepared = self.round.prepared.as_ref().map(|c| (c.view, c.hash));
        if self.view == 0 && own.is_none() && prepared.is_none() {
            return None;
        }
        Some(durable::Durable { height: self.height, view: self.view, own, prepared })
    }

    /// Picks up the height where a previous run left it: in its view, bound to what it signed
    /// there, with its prepared certificate. Sends again what it signed in the view (the same
    /// statements: it may have crashed before they left), and asks for a block only if it leads
    /// view 0 and has not proposed yet.
    fn resume(&mut self, restored: durable::Restored) {
        let durable::Restored { view, own, prepared, blocks } = restored;
        self.round = HeightState::default();
        self.view = view;
        self.view_started_ms = self.now_ms;
        self.view_state = ViewState::default();
        for proposal in blocks {
            let hash = proposal.hash();
            // The node signed a prepare for each, so each was valid; except a leader's own
            // re-proposal it had not checked yet.
            let voted =
                prepared.as_ref().is_some_and(|c| c.hash == hash) || own.is_some_and(|o| o.hash == hash && o.prepare);
            let check = if voted { Check::Valid } else { Check::Unchecked };
            self.round.candidates.insert(hash, Candidate { proposal, check });
        }
        self.round.prepared = prepared;
        let proposer = self.leader(view) == self.id;
        match own {
            Some(own) => {
                let hash = own.hash;
                self.view_state.accepted = Some(hash);
                // A leader proposes once per view: never ask for a second block.
                self.view_state.build_requested = proposer;
                if proposer
                    && view == 0
                    && let Some(candidate) = self.round.candidates.get(&hash)
                {
                    let pre_prepare = PrePrepare::new(&self.key, self.height, 0, candidate.proposal.clone());
                    self.broadcast(PbftMessage::PrePrepare(pre_prepare));
                }
                if own.prepare {
                    let prepare = Prepare::new(&self.key, self.height, view, hash);
                    let signed = Signed { hash, signature: prepare.signature.clone() };
                    self.round.prepares.entry(view).or_default().insert(self.id, signed);
                    self.view_state.prepare_sent = true;
                    self.broadcast(PbftMessage::Prepare(prepare));
                } else {
                    self.request_check(hash);
                }
                if own.commit {
                    let commit = CommitVote::new(&self.key, self.height, view, hash);
                    let signed = Signed { hash, signature: commit.signature.clone() };
                    self.round.commits.entry(view).or_default().insert(self.id, signed);
                    self.view_state.commit_sent = true;
                    self.broadcast(PbftMessage::Commit(commit));
                }
            }
            None if view == 0 && proposer => {
                self.view_state.build_requested = true;
                self.ready.build = Some(BuildRequest { height: self.height, round: 0 });
            }
            None => {}
        }
        self.persisted = self.durable();
        self.progress();
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The leader of `view` at the current height.
    pub fn leader(&self, view: u64) -> NodeId {
        self.validators.at(self.height.wrapping_add(view))
    }

    /// When the current view times out, on the driver's clock.
    pub fn view_deadline_ms(&self) -> u64 {
        self.view_started_ms.saturating_add(view_timeout_ms(self.base_timeout_ms, self.view))
    }

    fn quorum(&self) -> usize {
        self.validators.bft_quorum()
    }

    fn is_member(&self) -> bool {
        self.validators.contains(&self.id)
    }

    fn broadcast(&mut self, message: PbftMessage) {
        self.ready.messages.push((Target::All, message));
    }

    fn send(&mut self, to: NodeId, message: PbftMessage) {
        self.ready.messages.push((Target::Node(to), message));
    }

    /// Enters view 0 of `self.height` with fresh state; the leader asks for a block.
    fn start_height(&mut self) {
        self.round = HeightState::default();
        self.view = 0;
        self.view_started_ms = self.now_ms;
        self.view_state = ViewState::default();
        if self.leader(0) == self.id {
            self.view_state.build_requested = true;
            self.ready.build = Some(BuildRequest { height: self.height, round: 0 });
        }
    }

    /// Moves to a later `view` of the current height. The node never votes in an earlier view
    /// again, which is what lets its view changes speak for everything it prepared.
    fn enter_view(&mut self, view: u64) {
        if view <= self.view {
            return;
        }
        self.view = view;
        self.view_started_ms = self.now_ms;
        self.view_state = ViewState::default();
        self.round.prepares.retain(|&v, _| v >= view);
        let lowest_commit_view = view.saturating_sub(COMMIT_VIEWS_BEHIND);
        self.round.commits.retain(|&v, _| v >= lowest_commit_view);
        self.round.view_changes.retain(|_, vc| vc.new_view >= view);
        self.prune_candidates();
    }

    /// Leaves the current view for `view` and says so with a view change carrying this node's
    /// highest prepared certificate: the statement new leaders rely on to re-propose a block that
    /// may have been decided.
    fn start_view_change(&mut self, view: u64) {
        if view <= self.view {
            return;
        }
        self.enter_view(view);
        if !self.is_member() {
            return;
        }
        let view_change = ViewChange::new(&self.key, self.height, view, self.round.prepared.clone());
        let proposal = self.prepared_block(&view_change);
        self.broadcast(PbftMessage::ViewChange { view_change: view_change.clone(), proposal });
        self.view_change_sent_ms = self.now_ms;
        self.round.view_changes.insert(self.id, view_change.clone());
        self.round.own_view_change = Some(view_change);
    }

    /// While this node's view change waits for its view to start, says it again (and, as that
    /// view's leader, its new-view) every base timeout: a peer whose connection was down when it
    /// first went out would otherwise wait for a longer timeout of its own. Repeating a signed
    /// statement changes nothing else.
    fn repeat_view_change(&mut self) {
        let Some(own) = self.round.own_view_change.clone() else { return };
        let waiting = own.new_view == self.view && self.view_state.accepted.is_none() && !self.round.decided;
        if !waiting || self.now_ms < self.view_change_sent_ms.saturating_add(self.base_timeout_ms) {
            return;
        }
        self.view_change_sent_ms = self.now_ms;
        let proposal = self.prepared_block(&own);
        self.broadcast(PbftMessage::ViewChange { view_change: own, proposal });
        if let Some(new_view) = self.view_state.new_view_sent.clone() {
            self.broadcast(PbftMessage::NewView(new_view));
        }
    }

    /// The block a view change's certificate names, if this node holds it.
    fn prepared_block(&self, view_change: &ViewChange) -> Option<Proposal> {
        let hash = view_change.prepared.as_ref()?.hash;
        self.round.candidates.get(&hash).map(|c| c.proposal.clone())
    }

    /// Drops blocks nothing refers to any more.
    fn prune_candidates(&mut self) {
        let round = &self.round;
        let mut pinned: BTreeSet<B256> = BTreeSet::new();
        pinned.extend(self.view_state.accepted);
        pinned.extend(round.prepared.as_ref().map(|c| c.hash));
        pinned.extend(round.view_changes.values().filter_map(|vc| vc.prepared.as_ref().map(|c| c.hash)));
        pinned.extend(round.commits.values().flat_map(|votes| votes.values().map(|s| s.hash)));
        self.round.candidates.retain(|hash, _| pinned.contains(hash));
    }

    /// Records a block seen at this height, unless the store is full of blocks still referred
    /// to; `must_keep` blocks (the view's accepted one) are stored regardless.
    fn store_candidate(&mut self, proposal: Proposal, hash: B256, must_keep: bool) {
        if self.round.candidates.contains_key(&hash) {
            return;
        }
        if self.round.candidates.len() >= MAX_CANDIDATES {
            self.prune_candidates();
            if self.round.candidates.len() >= MAX_CANDIDATES && !must_keep {
                tracing::debug!(target: "consensus", %hash, "pbft: block store full; block dropped");
                return;
            }
        }
        self.round.candidates.insert(hash, Candidate { proposal, check: Check::Unchecked });
    }

    /// Asks the driver to re-execute a stored block, unless it has been asked already.
    fn request_check(&mut self, hash: B256) {
        if let Some(candidate) = self.round.candidates.get_mut(&hash)
            && candidate.check == Check::Unchecked
        {
            candidate.check = Check::Pending;
            self.ready.check.push(candidate.proposal.clone());
        }
    }

    /// Takes the view's pre-prepare: the only block this node will vote for in this view.
    fn accept_pre_prepare(&mut self, proposal: Proposal, hash: B256) {
        self.view_state.accepted = Some(hash);
        self.store_candidate(proposal, hash, true);
        self.request_check(hash);
    }

    fn check_proposal_height(&self, from: NodeId, proposal: &Proposal) -> Result<(), StepError> {
        if proposal.header.number != self.height {
            return Err(StepError::Invalid {
                from,
                reason: format!("proposal for height {} at height {}", proposal.header.number, self.height),
            });
        }
        Ok(())
    }

    /// Keeps a message for a later height, within the per-sender bound.
    fn buffer(&mut self, from: NodeId, message: PbftMessage) -> Result<(), StepError> {
        let held = self.buffered.iter().filter(|(sender, _)| *sender == from).count();
        if held >= MAX_BUFFERED_PER_PEER {
            return Err(StepError::OutOfWindow { height: message.height(), round: message.view() });
        }
        self.buffered.push((from, message));
        Ok(())
    }

    fn on_pre_prepare(&mut self, from: NodeId, pre_prepare: PrePrepare) -> Result<(), StepError> {
        let (height, view) = (pre_prepare.height, pre_prepare.view);
        if view < self.view {
            return Err(StepError::OutOfWindow { height, round: view });
        }
        if view != 0 {
            return Err(StepError::Invalid {
                from,
                reason: format!("bare pre-prepare for view {view}; needs a new-view"),
            });
        }
        if from != self.leader(view) {
            return Err(StepError::NotLeader { from, height, round: view });
        }
        self.check_proposal_height(from, &pre_prepare.proposal)?;
        let hash = pre_prepare.proposal.hash();
        if self.view_state.accepted == Some(hash) {
            return Ok(());
        }
        if !pre_prepare.verify(&from) {
            return Err(StepError::BadSignature(from));
        }
        if self.view_state.accepted.is_some() {
            return Err(StepError::Equivocation { from, height, round: view });
        }
        self.accept_pre_prepare(pre_prepare.proposal, hash);
        Ok(())
    }

    fn on_prepare(&mut self, from: NodeId, prepare: Prepare) -> Result<(), StepError> {
        let (height, view) = (prepare.height, prepare.view);
        if view < self.view || view > self.view.saturating_add(VOTE_VIEWS_AHEAD) {
            return Err(StepError::OutOfWindow { height, round: view });
        }
        if is_repeat(self.round.prepares.get(&view), from, prepare.hash, &prepare.signature) {
            return Ok(());
        }
        if !prepare.verify(&from) {
            return Err(StepError::BadSignature(from));
        }
        record_vote(self.round.prepares.entry(view).or_default(), from, prepare.hash, prepare.signature, "prepare")
    }

    fn on_commit(&mut self, from: NodeId, commit: CommitVote) -> Result<(), StepError> {
        let (height, view) = (commit.height, commit.view);
        if view < self.view.saturating_sub(COMMIT_VIEWS_BEHIND) || view > self.view.saturating_add(VOTE_VIEWS_AHEAD) {
            return Err(StepError::OutOfWindow { height, round: view });
        }
        if is_repeat(self.round.commits.get(&view), from, commit.hash, &commit.signature) {
            return Ok(());
        }
        if !commit.verify(&from) {
            return Err(StepError::BadSignature(from));
        }
        record_vote(self.round.commits.entry(view).or_default(), from, commit.hash, commit.signature, "commit")
    }

    fn on_view_change(
        &mut self,
        from: NodeId,
        view_change: ViewChange,
        proposal: Option<Proposal>,
    ) -> Result<(), StepError> {
        let (height, view) = (view_change.height, view_change.new_view);
        if view_change.node_id != from {
            return Err(StepError::Invalid { from, reason: "view change signed for another node".into() });
        }
        if view == 0 {
            return Err(StepError::Invalid { from, reason: "view change to view 0".into() });
        }
        if view < self.view {
            self.help_lagging(from, view);
            return Err(StepError::OutOfWindow { height, round: view });
        }
        if view > self.view.saturating_add(MAX_VIEW_AHEAD) {
            return Err(StepError::OutOfWindow { height, round: view });
        }
        if self.round.view_changes.get(&from) == Some(&view_change) {
            return Ok(());
        }
        view_change.verify(&self.validators, self.quorum()).map_err(|e| proof_error(from, e))?;
        if let Some(block) = proposal {
            let hash = block.hash();
            if view_change.prepared.as_ref().map(|c| c.hash) != Some(hash) {
                return Err(StepError::Invalid {
                    from,
                    reason: "view change carries a block it did not prepare".into(),
                });
            }
            self.check_proposal_height(from, &block)?;
            self.store_candidate(block, hash, false);
        }
        if self.round.view_changes.get(&from).is_some_and(|held| held.new_view >= view) {
            return Ok(());
        }
        self.round.view_changes.insert(from, view_change);
        // A node that joins the view after its leader started it gets the new-view (once).
        if view == self.view
            && let Some(new_view) = self.view_state.new_view_sent.clone()
        {
            self.send(from, PbftMessage::NewView(new_view));
        }
        Ok(())
    }

    /// Answers a view change to a view below ours with what got us to our view, so the sender
    /// can follow (by the f + 1 rule, or straight from the new-view).
    /// Answers each sender at most once per view it reports, so stale view changes cannot make
    /// this node send more than it receives.
    fn help_lagging(&mut self, to: NodeId, their_view: u64) {
        if self.round.answered.get(&to).is_some_and(|&answered| answered >= their_view) {
            return;
        }
        self.round.answered.insert(to, their_view);
        if let Some(own) = self.round.own_view_change.clone()
            && own.new_view > their_view
        {
            let proposal = self.prepared_block(&own);
            self.send(to, PbftMessage::ViewChange { view_change: own, proposal });
        }
        if let Some(new_view) = self.view_state.new_view_sent.clone() {
            self.send(to, PbftMessage::NewView(new_view));
        }
    }

    fn on_new_view(&mut self, from: NodeId, new_view: NewView) -> Result<(), StepError> {
        let (height, view) = (new_view.height, new_view.view);
        if view == 0 {
            return Err(StepError::Invalid { from, reason: "new view for view 0".into() });
        }
        if view < self.view || view > self.view.saturating_add(MAX_VIEW_AHEAD) {
            return Err(StepError::OutOfWindow { height, round: view });
        }
        if from != self.leader(view) {
            return Err(StepError::NotLeader { from, height, round: view });
        }
        let pre_prepare = &new_view.pre_prepare;
        if pre_prepare.height != height || pre_prepare.view != view {
            return Err(StepError::Invalid { from, reason: "new view carries a pre-prepare for another round".into() });
        }
        self.check_proposal_height(from, &pre_prepare.proposal)?;
        let hash = pre_prepare.proposal.hash();
        if view == self.view && self.view_state.accepted == Some(hash) {
            return Ok(());
        }
        if !pre_prepare.verify(&from) {
            return Err(StepError::BadSignature(from));
        }
        if view == self.view && self.view_state.accepted.is_some() {
            return Err(StepError::Equivocation { from, height, round: view });
        }
        // The safety rule: the block must be the highest prepared one the proof shows, if any.
        if let Some(required) = self.verify_new_view_proof(from, &new_view)?
            && required != hash
        {
            return Err(StepError::Invalid {
                from,
                reason: format!("new view proposes {hash} but {required} was prepared"),
            });
        }
        if view > self.view {
            self.enter_view(view);
        }
        self.accept_pre_prepare(new_view.pre_prepare.proposal, hash);
        Ok(())
    }

    /// Checks a new-view's proof — a quorum of distinct members' valid view changes to its view —
    /// and returns the hash of the highest-view prepared certificate in it, which the view must
    /// re-propose.
    fn verify_new_view_proof(&self, from: NodeId, new_view: &NewView) -> Result<Option<B256>, StepError> {
        let invalid = |reason: String| StepError::Invalid { from, reason };
        if new_view.view_changes.len() > self.validators.len() {
            return Err(invalid("new view carries more view changes than there are nodes".into()));
        }
        let mut signers: Vec<NodeId> = Vec::with_capacity(new_view.view_changes.len());
        for view_change in &new_view.view_changes {
            if view_change.height != new_view.height || view_change.new_view != new_view.view {
                return Err(invalid("new view carries a view change to another round".into()));
            }
            if signers.contains(&view_change.node_id) {
                return Err(invalid(format!("new view counts {} twice", view_change.node_id)));
            }
            view_change.verify(&self.validators, self.quorum()).map_err(|e| {
                invalid(format!("new view carries a bad view change: {}", proof_error(view_change.node_id, e)))
            })?;
            signers.push(view_change.node_id);
        }
        if signers.len() < self.quorum() {
            return Err(invalid(format!("new view has {} view changes, {} needed", signers.len(), self.quorum())));
        }
        highest_prepared(&new_view.view_changes).map(|c| c.map(|c| c.hash)).map_err(|reason| invalid(reason.into()))
    }

    /// Does everything the node's state now allows, until nothing changes.
    fn progress(&mut self) {
        // Each pass either settles or moves to a higher view, so this ends; the bound is a guard.
        for _ in 0..8 {
            if self.round.decided {
                return;
            }
            self.vote_prepare();
            self.vote_commit();
            if self.decide() {
                return;
            }
            self.lead_new_view();
            if !self.join_view_change() {
                return;
            }
        }
    }

    /// Votes for the view's block once it checked out.
    fn vote_prepare(&mut self) {
        let Some(hash) = self.view_state.accepted else { return };
        if self.view_state.prepare_sent || !self.is_member() {
            return;
        }
        if self.round.candidates.get(&hash).map(|c| c.check) != Some(Check::Valid) {
            return;
        }
        let prepare = Prepare::new(&self.key, self.height, self.view, hash);
        let own = Signed { hash, signature: prepare.signature.clone() };
        self.round.prepares.entry(self.view).or_default().insert(self.id, own);
        self.view_state.prepare_sent = true;
        self.broadcast(PbftMessage::Prepare(prepare));
    }

    /// Once a quorum prepared the block this node prepared, keeps their votes as its certificate
    /// and votes commit.
    fn vote_commit(&mut self) {
        let Some(hash) = self.view_state.accepted else { return };
        if !self.view_state.prepare_sent || self.view_state.commit_sent {
            return;
        }
        let quorum = self.quorum();
        let Some(votes) = self.round.prepares.get(&self.view) else { return };
        let votes: Vec<Vote> = votes
            .iter()
            .filter(|(_, vote)| vote.hash == hash)
            .take(quorum)
            .map(|(node_id, vote)| Vote { node_id: *node_id, signature: vote.signature.clone() })
            .collect();
        if votes.len() < quorum {
            return;
        }
        self.round.prepared = Some(PreparedCertificate { view: self.view, hash, votes });
        let commit = CommitVote::new(&self.key, self.height, self.view, hash);
        let own = Signed { hash, signature: commit.signature.clone() };
        self.round.commits.entry(self.view).or_default().insert(self.id, own);
        self.view_state.commit_sent = true;
        self.broadcast(PbftMessage::Commit(commit));
    }

    /// Hands out the block once a quorum of one view committed it and this node holds it and
    /// found it valid; returns whether it did.
    fn decide(&mut self) -> bool {
        let quorum = self.quorum();
        let mut found = None;
        'views: for (&view, votes) in &self.round.commits {
            for vote in votes.values() {
                if votes.values().filter(|v| v.hash == vote.hash).count() >= quorum {
                    found = Some((view, vote.hash));
                    break 'views;
                }
            }
        }
        let Some((view, hash)) = found else { return false };
        match self.round.candidates.get(&hash).map(|c| c.check) {
            Some(Check::Valid) => {}
            Some(Check::Unchecked) => {
                self.request_check(hash);
                return false;
            }
            // Without the block (or with one this node cannot execute) the driver's sync must
            // bring it; see `Engine::committed`.
            _ => return false,
        }
        let Some(candidate) = self.round.candidates.get(&hash) else { return false };
        let votes = self
            .round
            .commits
            .get(&view)
            .into_iter()
            .flat_map(|votes| votes.iter())
            .filter(|(_, vote)| vote.hash == hash)
            .take(quorum)
            .map(|(node_id, vote)| Vote { node_id: *node_id, signature: vote.signature.clone() })
            .collect();
        let qc = QuorumCertificate { block_hash: hash, number: self.height, round: view, votes };
        self.ready.commit = Some(Commit { proposal: candidate.proposal.clone(), qc });
        self.round.decided = true;
        true
    }

    /// As leader of a view after 0 holding a quorum of view changes to it: re-proposes the highest
    /// prepared block among them, or asks for a new block when none was prepared.
    fn lead_new_view(&mut self) {
        if self.view == 0
            || self.leader(self.view) != self.id
            || self.view_state.new_view_sent.is_some()
            || self.view_state.build_requested
        {
            return;
        }
        // View changes whose block this node lacks are left out: any quorum proves the view.
        let proofs: Vec<ViewChange> = self
            .round
            .view_changes
            .values()
            .filter(|vc| vc.new_view == self.view)
            .filter(|vc| vc.prepared.as_ref().is_none_or(|c| self.round.candidates.contains_key(&c.hash)))
            .cloned()
            .collect();
        if proofs.len() < self.quorum() {
            return;
        }
        match highest_prepared(&proofs) {
            Ok(Some(certificate)) => {
                let hash = certificate.hash;
                if let Some(candidate) = self.round.candidates.get(&hash) {
                    let proposal = candidate.proposal.clone();
                    self.send_new_view(proofs, proposal, hash);
                }
            }
            Ok(None) => {
                self.view_state.build_requested = true;
                self.view_state.new_view_proofs = Some(proofs);
                self.ready.build = Some(BuildRequest { height: self.height, round: self.view });
            }
            // Conflicting certificates of one view need more than f faulty nodes; wait for the
            // next view rather than pick one.
            Err(reason) => tracing::warn!(target: "consensus", height = self.height, view = self.view, reason, "pbft"),
        }
    }

    fn send_new_view(&mut self, view_changes: Vec<ViewChange>, proposal: Proposal, hash: B256) {
        let pre_prepare = PrePrepare::new(&self.key, self.height, self.view, proposal.clone());
        let new_view = NewView { height: self.height, view: self.view, view_changes, pre_prepare };
        self.view_state.new_view_sent = Some(new_view.clone());
        self.broadcast(PbftMessage::NewView(new_view));
        self.accept_pre_prepare(proposal, hash);
    }

    /// The f + 1 rule: when more than f nodes announced views above ours, at least one honest
    /// node did, so join the highest view that f + 1 of them reached. Returns whether it moved.
    fn join_view_change(&mut self) -> bool {
        let mut ahead: Vec<u64> =
            self.round.view_changes.values().map(|vc| vc.new_view).filter(|&view| view > self.view).collect();
        ahead.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&target) = ahead.get(self.validators.max_faulty()) else { return false };
        self.start_view_change(target);
        true
    }

    fn handle(&mut self, from: NodeId, message: PbftMessage) -> Result<(), StepError> {
        if !self.validators.contains(&from) {
            return Err(StepError::NotAMember(from));
        }
        let (height, view) = (message.height(), message.view());
        if height < self.height || height > self.height.saturating_add(FUTURE_HEIGHTS) {
            return Err(StepError::OutOfWindow { height, round: view });
        }
        if height > self.height {
            return self.buffer(from, message);
        }
        if self.round.decided {
            return Err(StepError::OutOfWindow { height, round: view });
        }
        match message {
            PbftMessage::PrePrepare(m) => self.on_pre_prepare(from, m),
            PbftMessage::Prepare(m) => self.on_prepare(from, m),
            PbftMessage::Commit(m) => self.on_commit(from, m),
            PbftMessage::ViewChange { view_change, proposal } => self.on_view_change(from, view_change, proposal),
            PbftMessage::NewView(m) => self.on_new_view(from, m),
        }
    }
}

/// Records `voter`'s vote in a view; a second vote for another block is refused (the first
/// stands), a repeat is ignored.
/// Whether `voter` already cast exactly this vote (so it needs no second signature check).
fn is_repeat(votes: Option<&ViewVotes>, voter: NodeId, hash: B256, signature: &Bytes) -> bool {
    votes.and_then(|votes| votes.get(&voter)).is_some_and(|held| held.hash == hash && held.signature == *signature)
}

fn record_vote(
    votes: &mut ViewVotes,
    voter: NodeId,
    hash: B256,
    signature: Bytes,
    kind: &str,
) -> Result<(), StepError> {
    match votes.get(&voter) {
        Some(held) if held.hash == hash => Ok(()),
        Some(_) => Err(StepError::Invalid { from: voter, reason: format!("two {kind} votes in one view") }),
        None => {
            votes.insert(voter, Signed { hash, signature });
            Ok(())
        }
    }
}

/// The highest-view prepared certificate among view changes; an error if two of that view name
/// different blocks (impossible with at most f faulty nodes).
fn highest_prepared(view_changes: &[ViewChange]) -> Result<Option<&PreparedCertificate>, &'static str> {
    let mut best: Option<&PreparedCertificate> = None;
    for certificate in view_changes.iter().filter_map(|vc| vc.prepared.as_ref()) {
        match best {
            Some(held) if held.view > certificate.view => {}
            Some(held) if held.view == certificate.view && held.hash != certificate.hash => {
                return Err("two prepared certificates of one view name different blocks");
            }
            _ => best = Some(certificate),
        }
    }
    Ok(best)
}

fn proof_error(from: NodeId, error: ProofError) -> StepError {
    match error {
        ProofError::NotAMember(node) => StepError::NotAMember(node),
        ProofError::BadSignature(node) => StepError::BadSignature(node),
        ProofError::Invalid(reason) => StepError::Invalid { from, reason: reason.into() },
    }
}

impl Engine for Pbft {
    type Message = PbftMessage;

    /// Restores the view, votes and prepared certificate stored at the configured height;
    /// ignores a state for a lower height.
    fn restore(&mut self, durable: &[u8]) -> Result<(), RestoreError> {
        if self.started {
            return Err(RestoreError::AlreadyStarted);
        }
        let Some(restored) = durable::decode(durable, self.id, self.height, &self.validators)? else {
            tracing::debug!(target: "consensus", height = self.height, "pbft: stored state is for a lower height");
            return Ok(());
        };
        tracing::info!(
            target: "consensus",
            height = self.height,
            view = restored.view,
            prepared = restored.prepared.as_ref().map(|c| c.view),
            "pbft: restored durable state"
        );
        *self = Self::start(self.config(), Some(restored));
        Ok(())
    }

    /// Fires the view timeout: if the view has not decided by [`Pbft::view_deadline_ms`], the
    /// node moves to the next view with a view change. A node outside the node set has no say,
    /// so it never times out; it follows new-views and view changes.
    fn tick(&mut self, now_ms: u64) {
        self.started = true;
        self.now_ms = self.now_ms.max(now_ms);
        if self.is_member() && !self.round.decided && self.now_ms >= self.view_deadline_ms() {
            self.start_view_change(self.view.saturating_add(1));
        }
        self.repeat_view_change();
        self.progress();
    }

    fn step(&mut self, from: NodeId, message: PbftMessage) -> Result<(), StepError> {
        self.started = true;
        let result = self.handle(from, message);
        self.progress();
        result
    }

    /// Proposes the block the driver built for the current view (a late block for an earlier view
    /// or height is dropped).
    fn proposal_built(&mut self, proposal: Proposal) {
        self.started = true;
        let stale = !self.view_state.build_requested
            || self.view_state.accepted.is_some()
            || self.round.decided
            || proposal.header.number != self.height;
        if stale {
            tracing::debug!(target: "consensus", height = self.height, view = self.view, "pbft: built block not wanted");
            return;
        }
        let hash = proposal.hash();
        self.store_candidate(proposal.clone(), hash, true);
        if let Some(candidate) = self.round.candidates.get_mut(&hash) {
            candidate.check = Check::Valid;
        }
        if self.view == 0 {
            let pre_prepare = PrePrepare::new(&self.key, self.height, 0, proposal.clone());
            self.broadcast(PbftMessage::PrePrepare(pre_prepare));
            self.accept_pre_prepare(proposal, hash);
        } else if let Some(proofs) = self.view_state.new_view_proofs.take() {
            self.send_new_view(proofs, proposal, hash);
        }
        self.progress();
    }

    fn proposal_checked(&mut self, hash: B256, valid: bool) {
        self.started = true;
        if let Some(candidate) = self.round.candidates.get_mut(&hash)
            && candidate.check == Check::Pending
        {
            candidate.check = if valid { Check::Valid } else { Check::Invalid };
        }
        self.progress();
    }

    /// Moves to `height + 1` (view 0) with `validators`, whether this engine decided `height` or
    /// sync brought it; replays buffered messages for the new height. Ignored for heights
    /// already past.
    fn committed(&mut self, height: u64, validators: Validators) {
        self.started = true;
        if height < self.height {
            return;
        }
        self.height = height.saturating_add(1);
        self.validators = validators;
        self.start_height();
        let buffered = std::mem::take(&mut self.buffered);
        let (now, later): (Vec<_>, Vec<_>) = buffered
            .into_iter()
            .filter(|(_, m)| m.height() >= self.height)
            .partition(|(_, m)| m.height() == self.height);
        self.buffered = later;
        for (from, message) in now {
            if let Err(error) = self.handle(from, message) {
                tracing::debug!(target: "consensus", %from, %error, "pbft: buffered message refused");
            }
        }
        self.progress();
    }

    /// Takes what is queued; adds the durable state when the view, this node's votes or its
    /// prepared certificate changed since it was last handed out.
    fn ready(&mut self) -> Ready<PbftMessage> {
        self.started = true;
        let mut ready = std::mem::take(&mut self.ready);
        if let Some(now) = self.durable()
            && self.persisted.as_ref() != Some(&now)
        {
            ready.persist = Some(durable::encode(self, &now));
            self.persisted = Some(now);
        }
        ready
    }

    fn height(&self) -> u64 {
        self.height
    }

    fn round(&self) -> u64 {
        self.view
    }

    fn current_leader(&self) -> Option<NodeId> {
        Some(self.leader(self.view))
    }
}
