//! The consensus driver: runs the node's [`ConsensusEngine`] against the real world.
//!
//! It feeds the engine peers' messages (from the network), the clock, and the results of the work
//! the engine asks for: building a block from the pool when this node leads, re-executing other
//! nodes' proposals, and committing decided blocks through the chain. Execution runs on the
//! blocking pool so the engine keeps answering messages meanwhile. The driver also gossips client
//! transactions to peers, answers and issues block-sync requests, and catches up through
//! [`crate::sync`] when peers are ahead. After every commit it hands the engine the configuration
//! in force for the next height, which is where a scheduled consensus switch happens.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use alloy_primitives::{B256, Bytes};
use bcos_consensus::{BuildRequest, Commit, Engine, Proposal, Target, Validators};
use bcos_sdk::{config::parse_node_address, crypto::NodeKey, pki::RevocationList};
use prometheus::Registry;
use tokio::{
    sync::{broadcast, mpsc, oneshot, watch},
    time::Instant,
};

use crate::{
    chain::{Chain, ChainError, now_ms},
    consensus::{
        proposals::{ExecutedProposal, ProposalError, build, check},
        switch::{ConsensusEngine, ConsensusMessage},
    },
    metrics::ConsensusMetrics,
    network::{Multiaddr, NetworkEvent, NetworkHandle, NodeId, host_multiaddr},
    sync::{self, SyncRequest, SyncResponse},
    txpool::TxPool,
};

/// How often the engine's clock advances.
const TICK: Duration = Duration::from_millis(50);
/// How often a node that made no progress asks its peers for their heads.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Blocks asked for in one sync request.
const SYNC_BATCH: u32 = 64;
/// Client transactions gathered into one gossip batch, and how long a batch may wait.
const GOSSIP_BATCH: usize = 1_000;
const GOSSIP_DELAY: Duration = Duration::from_millis(20);
/// How long a ready transaction waits after it was offered to peers before it is offered again.
const UNCONFIRMED_AFTER: Duration = Duration::from_secs(3);
/// Most transactions accepted from one gossip batch.
const MAX_GOSSIP_BATCH: usize = 10_000;

/// An engine message as bytes on the wire.
pub trait WireMessage: Sized + Clone + Send + 'static {
    /// Encodes the message.
    fn to_wire(&self) -> Bytes;
    /// Decodes a message from a peer, refusing malformed or trailing bytes.
    fn from_wire(bytes: &[u8]) -> Result<Self, String>;
}

/// Blocks a peer may be ahead before this node counts as behind (not ready).
const READY_LAG: u64 = 2;

/// What the driver publishes about the running node: whether it is current with its peers (the
/// readiness probe), whether it leads the current round and whether it is syncing. The status
/// APIs and the probe read it without reaching into the driver's task.
#[derive(Debug, Default)]
pub struct LiveState {
    caught_up: AtomicBool,
    leading: AtomicBool,
    syncing: AtomicBool,
}

impl LiveState {
    /// The state of a node that is its own quorum: always current, always leading.
    pub fn solo() -> Self {
        Self { caught_up: AtomicBool::new(true), leading: AtomicBool::new(true), ..Default::default() }
    }

    /// `Ok` once the node committed a block with its peers or found none ahead of it; an error
    /// saying why not otherwise (starting, or catching up by sync).
    pub fn check(&self) -> Result<(), String> {
        if self.caught_up.load(Ordering::Acquire) { Ok(()) } else { Err("not caught up with peers yet".into()) }
    }

    /// Whether this node leads the round being decided (PBFT view leader, Raft leader).
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Whether it is fetching blocks from a peer.
    pub fn syncing(&self) -> bool {
        self.syncing.load(Ordering::Acquire)
    }

    fn set(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::Release);
    }
}

/// Results of work done off the driver's task.
enum Work {
    Built(BuildRequest, Result<ExecutedProposal, ChainError>),
    Checked(B256, Result<ExecutedProposal, ProposalError>),
    Synced(Result<usize, sync::SyncError>),
}

/// Runs the consensus engine of this node.
pub struct Driver {
    engine: ConsensusEngine,
    chain: Arc<Chain>,
    pool: Arc<TxPool>,
    network: NetworkHandle,
    node_id: NodeId,
    metrics: ConsensusMetrics,
    /// The registry's nodes and their addresses as last given to the network.
    registered: Vec<(NodeId, Option<Multiaddr>)>,
    live: Arc<LiveState>,
    executed: HashMap<B256, ExecutedProposal>,
    build_request: Option<BuildRequest>,
    building: bool,
    syncing: bool,
    last_progress: Instant,
    work_tx: mpsc::UnboundedSender<Work>,
    work_rx: mpsc::UnboundedReceiver<Work>,
    /// Subscribed at construction, so no client transaction admitted before `run` is missed.
    admitted: Option<broadcast::Receiver<Bytes>>,
    /// The node's copy of the on-chain revocation list (shared with admission and the RPC), and
    /// how many serials it held when last read.
    revocations: Option<(RevocationList, u64)>,
}

/// Every node the registry lists (consensus and observer), sorted: the peers to admit.
pub fn registered_nodes(chain: &Chain) -> Result<Vec<NodeId>, ChainError> {
    let mut nodes = chain.consensus_nodes()?;
    nodes.extend(chain.observer_nodes()?);
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}

/// [`registered_nodes`] with the address the registry keeps for each, as the network dials it:
/// what [`NetworkHandle::set_peers`] takes.
pub fn registered_peers(chain: &Chain) -> Result<Vec<(NodeId, Option<Multiaddr>)>, ChainError> {
    let nodes = registered_nodes(chain)?;
    let addresses = chain.node_addresses(&nodes)?;
    Ok(nodes
        .into_iter()
        .zip(addresses)
        .map(|(node, address)| (node, address.and_then(|a| registry_multiaddr(&node, &a))))
        .collect())
}

/// The multiaddr of an address from the registry, which checked it when it was set; one that
/// does not convert (only a damaged state could hold it) leaves the node admitted but not dialed.
fn registry_multiaddr(node: &NodeId, address: &str) -> Option<Multiaddr> {
    let converted = parse_node_address(address).ok().and_then(|(host, port)| host_multiaddr(host, port));
    if converted.is_none() {
        tracing::warn!(target: "consensus", %node, address, "registry address cannot be dialed; ignored");
    }
    converted
}

/// The validator set in force for the block after the head.
fn validators(chain: &Chain) -> Result<Validators, ChainError> {
    Validators::new(chain.consensus_nodes()?).ok_or(ChainError::MissingHead(0))
}

impl Driver {
    /// A driver for `engine`, which must start at the height after the chain's head. The
    /// network must have been given [`registered_peers`] already.
    pub fn new(
        engine: ConsensusEngine,
        chain: Arc<Chain>,
        pool: Arc<TxPool>,
        network: NetworkHandle,
        key: &NodeKey,
        registry: &Registry,
    ) -> Result<Self, ChainError> {
        let (work_tx, work_rx) = mpsc::unbounded_channel();
        let registered = registered_peers(&chain)?;
        let admitted = Some(pool.subscribe_admitted());
        let metrics = ConsensusMetrics::register(registry);
        show_engine(&metrics, &engine);
        Ok(Self {
            engine,
            chain,
            pool,
            network,
            node_id: key.node_id(),
            metrics,
            registered,
            live: Arc::default(),
            executed: HashMap::new(),
            build_request: None,
            building: false,
            syncing: false,
            last_progress: Instant::now(),
            work_tx,
            work_rx,
            admitted,
            revocations: None,
        })
    }

    /// What the readiness probe and the status APIs read.
    pub fn live_state(&self) -> Arc<LiveState> {
        self.live.clone()
    }

    /// Publishes into `live` instead of a state of its own, so APIs started before the driver
    /// can already hold it.
    pub fn publishing_into(mut self, live: Arc<LiveState>) -> Self {
        self.live = live;
        self
    }

    /// Refreshes what changes without an event of its own: leadership and sync.
    fn publish(&self) {
        let leading = self.engine.current_leader() == Some(self.node_id);
        self.live.leading.store(leading, Ordering::Release);
        self.live.syncing.store(self.syncing, Ordering::Release);
    }

    /// Runs until `shutdown` turns true or the chain fails. Once the chain needs a newer build
    /// ([`Chain::incompatibility`]) the node takes no further part in consensus and applies no
    /// blocks; it only serves the blocks it has to peers, until shut down.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<NetworkEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ChainError> {
        // Several nodes may share a process (devnet, tests): every line names its node.
        let span = tracing::info_span!("node", id = %short_id(&self.node_id));
        tracing::Instrument::instrument(
            async move {
                match self.run_loop(&mut events, &mut shutdown).await {
                    Err(ChainError::Incompatible(incompatible)) => {
                        tracing::warn!(target: "consensus", %incompatible, "consensus stopped");
                        self.serve_only(events, shutdown).await;
                        Ok(())
                    }
                    other => other,
                }
            },
            span,
        )
        .await
    }

    /// What a node that applies no more blocks still does: answer peers' sync requests from its
    /// chain, which stays valid up to its head.
    async fn serve_only(&self, mut events: mpsc::Receiver<NetworkEvent>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    // An error: the node that would signal shutdown is gone.
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                event = events.recv() => match event {
                    Some(NetworkEvent::SyncRequest { from, bytes, reply }) => self.serve_sync(from, bytes, reply),
                    Some(_) => {}
                    None => return,
                },
            }
        }
    }

    async fn run_loop(
        &mut self,
        events: &mut mpsc::Receiver<NetworkEvent>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ChainError> {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync_timer = tokio::time::interval(SYNC_INTERVAL);
        let mut admitted = self.admitted.take().unwrap_or_else(|| self.pool.subscribe_admitted());
        let mut gossip: Vec<Bytes> = Vec::new();
        let mut gossip_deadline = Instant::now();
        self.drain()?;
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return Ok(());
                    }
                }
                event = events.recv() => match event {
                    Some(event) => self.on_network(event),
                    None => return Ok(()),
                },
                Some(work) = self.work_rx.recv() => self.on_work(work)?,
                _ = ticker.tick() => {
                    self.engine.tick(now_ms());
                    self.metrics.round.set(i64::try_from(self.engine.round()).unwrap_or(i64::MAX));
                    self.publish();
                    self.maybe_build();
                    if !gossip.is_empty() && Instant::now() >= gossip_deadline {
                        self.flush_gossip(&mut gossip);
                    }
                }
                _ = sync_timer.tick() => {
                    self.maybe_sync();
                    self.regossip_unconfirmed();
                }
                received = admitted.recv() => match received {
                    Ok(raw) => {
                        if gossip.is_empty() {
                            gossip_deadline = Instant::now() + GOSSIP_DELAY;
                        }
                        gossip.push(raw);
                        if gossip.len() >= GOSSIP_BATCH {
                            self.flush_gossip(&mut gossip);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(target: "consensus", skipped, "gossip fell behind; peers get those by sync");
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
            self.drain()?;
        }
    }

    /// Offers peers again the ready transactions that have waited [`UNCONFIRMED_AFTER`] since
    /// they were last offered: gossip is best effort, and a transaction restored from the journal
    /// or accepted while this node was cut off reached no one. Blocks committing meanwhile prove
    /// nothing about these: a follower's pool is not what the leader builds from.
    fn regossip_unconfirmed(&self) {
        let mut batch: Vec<Bytes> =
            self.pool.take_unconfirmed(UNCONFIRMED_AFTER, GOSSIP_BATCH).iter().map(|tx| tx.encoded().clone()).collect();
        if !batch.is_empty() {
            tracing::debug!(target: "consensus", count = batch.len(), "offering waiting transactions again");
            self.flush_gossip(&mut batch);
        }
    }

    fn flush_gossip(&self, batch: &mut Vec<Bytes>) {
        let encoded = alloy_rlp::encode(&*batch);
        batch.clear();
        if let Err(e) = self.network.gossip_txs(Bytes::from(encoded)) {
            tracing::debug!(target: "consensus", error = %e, "transaction gossip not sent");
        }
    }

    fn on_network(&mut self, event: NetworkEvent) {
        match event {
            NetworkEvent::Consensus { from, bytes } => match ConsensusMessage::from_wire(&bytes) {
                Ok(message) => {
                    if let Err(e) = self.engine.step(from, message) {
                        let level_bad = e.is_bad_peer();
                        if level_bad {
                            tracing::warn!(target: "consensus", %from, error = %e, "refused consensus message");
                        } else {
                            tracing::trace!(target: "consensus", %from, error = %e, "ignored consensus message");
                        }
                    }
                }
                Err(e) => tracing::warn!(target: "consensus", %from, error = %e, "malformed consensus message"),
            },
            NetworkEvent::Transactions { from, bytes } => {
                let mut slice = bytes.as_ref();
                match <Vec<Bytes> as alloy_rlp::Decodable>::decode(&mut slice) {
                    Ok(batch) if slice.is_empty() && batch.len() <= MAX_GOSSIP_BATCH => {
                        let pool = self.pool.clone();
                        tokio::task::spawn_blocking(move || {
                            let raws: Vec<&[u8]> = batch.iter().map(|raw| raw.as_ref()).collect();
                            pool.submit_many(&raws);
                        });
                    }
                    _ => tracing::warn!(target: "consensus", %from, "malformed transaction gossip"),
                }
            }
            NetworkEvent::SyncRequest { from, bytes, reply } => self.serve_sync(from, bytes, reply),
            NetworkEvent::PeerConnected(_) | NetworkEvent::PeerDisconnected(_) => {}
        }
    }

    fn serve_sync(&self, from: NodeId, bytes: Bytes, reply: oneshot::Sender<Bytes>) {
        let chain = self.chain.clone();
        tokio::task::spawn_blocking(move || {
            let response = SyncRequest::decode(&bytes)
                .map_err(sync::SyncError::from)
                .and_then(|request| sync::serve(&chain, &request));
            match response {
                Ok(response) => {
                    let _ = reply.send(Bytes::from(response.encode()));
                }
                Err(e) => tracing::debug!(target: "sync", %from, error = %e, "sync request not served"),
            }
        });
    }

    /// Stops the driver (with [`ChainError::Incompatible`]) once the next block runs under rules
    /// this build does not know; the chain said why when it committed the block that raised the
    /// version.
    fn check_compatible(&self) -> Result<(), ChainError> {
        self.chain.incompatibility().map_or(Ok(()), |incompatible| Err(incompatible.into()))
    }

    fn on_work(&mut self, work: Work) -> Result<(), ChainError> {
        match work {
            Work::Built(request, result) => {
                self.building = false;
                match result {
                    Ok(executed) if executed.proposal.header.number == request.height => {
                        let proposal = executed.proposal.clone();
                        self.executed.insert(proposal.hash(), executed);
                        self.engine.proposal_built(proposal);
                    }
                    Ok(_) => tracing::debug!(target: "consensus", height = request.height, "built block is stale"),
                    Err(ChainError::HeadMoved { .. }) => {
                        tracing::debug!(target: "consensus", height = request.height, "head moved while building");
                    }
                    Err(e) => return Err(e),
                }
            }
            Work::Checked(hash, result) => match result {
                Ok(executed) => {
                    self.executed.insert(hash, executed);
                    self.engine.proposal_checked(hash, true);
                }
                // Decided meanwhile: the engine has moved on and no longer waits for this answer.
                Err(ProposalError::Chain(ChainError::HeadMoved { .. })) => {}
                Err(ProposalError::Chain(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(target: "consensus", %hash, error = %e, "refusing proposal");
                    self.engine.proposal_checked(hash, false);
                }
            },
            Work::Synced(result) => {
                self.syncing = false;
                match result {
                    Ok(0) => self.live.set(true),
                    Ok(applied) => tracing::info!(target: "sync", applied, "caught up from peers"),
                    // Consensus committed the same height meanwhile.
                    Err(sync::SyncError::Chain(ChainError::HeadMoved { .. })) => {}
                    Err(sync::SyncError::Chain(e)) => return Err(e),
                    Err(e) => tracing::warn!(target: "sync", error = %e, "sync failed"),
                }
                // Blocks applied before a failure count too.
                if self.chain.head()?.number >= self.engine.height() {
                    self.after_commit()?;
                }
            }
        }
        Ok(())
    }

    /// Carries out everything the engine asked for, until it asks for nothing more.
    fn drain(&mut self) -> Result<(), ChainError> {
        loop {
            let ready = self.engine.ready();
            if ready.is_empty() {
                return Ok(());
            }
            if let Some(state) = &ready.persist {
                // Before any message: the messages may be votes this state must remember.
                self.chain.store().save_consensus_state(state)?;
            }
            for (target, message) in ready.messages {
                let bytes = message.to_wire();
                let sent = match target {
                    Target::All => self.network.broadcast_consensus(bytes),
                    Target::Node(to) => self.network.send_consensus(to, bytes),
                };
                if let Err(e) = sent {
                    tracing::debug!(target: "consensus", error = %e, "consensus message not sent");
                }
            }
            if let Some(request) = ready.build {
                self.build_request = Some(request);
                self.maybe_build();
            }
            for proposal in ready.check {
                self.spawn_check(proposal);
            }
            if let Some(commit) = ready.commit {
                self.commit(commit)?;
            }
        }
    }

    /// Starts building the requested block once it is due: a block interval after the head's
    /// timestamp when transactions are ready (at once when a block's worth is), or after a longer
    /// idle interval otherwise, so an idle chain still shows the other nodes its leader is alive.
    /// Timing from the head, not from this node's last block, keeps the interval as leaders
    /// rotate.
    fn maybe_build(&mut self) {
        let Some(request) = self.build_request else { return };
        if self.building {
            return;
        }
        let Ok(head) = self.chain.head() else { return };
        if request.height != head.number + 1 {
            self.build_request = None;
            return;
        }
        let config = self.chain.system_config();
        let ready = self.pool.ready_len() as u64;
        let idle_ms = config.block_interval_ms.max(config.consensus_timeout_ms / 3);
        let due_ms = head.timestamp_ms + if ready > 0 { config.block_interval_ms } else { idle_ms };
        if ready < config.max_txs_per_block && now_ms() < due_ms {
            return;
        }
        self.build_request = None;
        self.building = true;
        let (chain, pool, node_id, tx) = (self.chain.clone(), self.pool.clone(), self.node_id, self.work_tx.clone());
        let max = usize::try_from(config.max_txs_per_block).unwrap_or(usize::MAX);
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Work::Built(request, build(&chain, &pool, node_id, max)));
        });
    }

    fn spawn_check(&mut self, proposal: Proposal) {
        let hash = proposal.hash();
        if self.executed.contains_key(&hash) {
            // Built or checked here already (a re-proposal in a later round).
            self.engine.proposal_checked(hash, true);
            return;
        }
        let (chain, pool, tx) = (self.chain.clone(), self.pool.clone(), self.work_tx.clone());
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Work::Checked(hash, check(&chain, &pool, proposal)));
        });
    }

    fn commit(&mut self, commit: Commit) -> Result<(), ChainError> {
        let hash = commit.proposal.hash();
        let head = self.chain.head()?.number;
        if commit.proposal.header.number != head + 1 {
            // Sync got there first; make sure the engine knows.
            return self.after_commit();
        }
        let executed = match self.executed.remove(&hash) {
            Some(executed) => executed,
            None => match check(&self.chain, &self.pool, commit.proposal) {
                Ok(executed) => executed,
                // Sync committed this height meanwhile.
                Err(ProposalError::Chain(ChainError::HeadMoved { .. })) => return self.after_commit(),
                Err(ProposalError::Chain(e)) => return Err(e),
                Err(e) => {
                    tracing::error!(target: "consensus", %hash, error = %e, "a quorum committed a block this node cannot execute");
                    return Ok(());
                }
            },
        };
        let (number, round, txs) = (commit.qc.number, commit.qc.round, executed.executed.included.len());
        match self.chain.commit(executed.proposal.header, executed.executed, commit.qc, &self.pool) {
            Ok(_) => tracing::debug!(target: "consensus", number, %hash, round, txs, "committed"),
            Err(ChainError::HeadMoved { .. }) => {
                tracing::debug!(target: "consensus", number, "committed by sync first")
            }
            Err(e) => return Err(e),
        }
        self.after_commit()
    }

    /// Moves the engine past the new head, switching engines where the configuration in force
    /// for the next height says so.
    fn after_commit(&mut self) -> Result<(), ChainError> {
        self.check_compatible()?;
        // Committing with the quorum, or after sync reached the best peer's head.
        self.live.set(true);
        self.executed.clear();
        self.last_progress = Instant::now();
        let head = self.chain.head()?.number;
        let config = self.chain.system_config();
        let previous = self.engine.name();
        let validators = validators(&self.chain)?;
        let switched =
            self.engine.advance(head, validators, config.consensus_mode, config.consensus_timeout_ms, now_ms());
        if switched {
            tracing::info!(
                target: "consensus",
                from = previous,
                to = self.engine.name(),
                height = head + 1,
                timeout_ms = config.consensus_timeout_ms,
                "consensus engine replaced"
            );
            self.metrics.switches.inc();
            show_engine(&self.metrics, &self.engine);
        }
        self.follow_registry()?;
        self.follow_revocations()
    }

    /// Keeps `revoked` (already filled from the chain) current after every block, and has the
    /// network drop peers whose certificates a block revoked.
    pub fn follow_revocations_into(mut self, revoked: RevocationList) -> Result<Self, ChainError> {
        self.revocations = Some((revoked, self.chain.revoked_count()?));
        Ok(self)
    }

    /// Re-reads the revocation list when a block added to it and re-checks admitted peers.
    fn follow_revocations(&mut self) -> Result<(), ChainError> {
        let Some((revoked, count)) = &mut self.revocations else { return Ok(()) };
        let now = self.chain.revoked_count()?;
        if now == *count {
            return Ok(());
        }
        *count = now;
        if revoked.replace(self.chain.revoked_serials()?) {
            tracing::info!(target: "consensus", revoked = now, "certificate revocation list changed; re-checking peers");
            let network = self.network.clone();
            tokio::spawn(async move {
                if let Err(e) = network.recheck_certificates().await {
                    tracing::warn!(target: "consensus", error = %e, "peers not re-checked");
                }
            });
        }
        Ok(())
    }

    /// Lets the network admit exactly the nodes the registry lists, and dial those with an
    /// address, once a node or an address changes.
    fn follow_registry(&mut self) -> Result<(), ChainError> {
        let registered = registered_peers(&self.chain)?;
        if registered == self.registered {
            return Ok(());
        }
        tracing::info!(target: "consensus", nodes = registered.len(), "node registry changed; updating admitted peers");
        self.registered = registered.clone();
        let network = self.network.clone();
        tokio::spawn(async move {
            if let Err(e) = network.set_peers(registered).await {
                tracing::warn!(target: "consensus", error = %e, "admitted peers not updated");
            }
        });
        Ok(())
    }

    /// Asks a peer for its head when this node made no progress for a while (an observer: every
    /// time), and fetches what it misses.
    fn maybe_sync(&mut self) {
        // An observer learns of blocks only by sync, so it asks every interval.
        let waiting = self.engine.mode().is_some() && self.last_progress.elapsed() < SYNC_INTERVAL;
        if self.syncing || waiting {
            return;
        }
        let peers = self.network.connected_peers();
        if peers.is_empty() {
            return;
        }
        self.syncing = true;
        let (network, chain, pool, tx) =
            (self.network.clone(), self.chain.clone(), self.pool.clone(), self.work_tx.clone());
        let live = self.live.clone();
        tokio::spawn(async move {
            let result = sync_from(&network, &chain, &pool, &peers, &live).await;
            let _ = tx.send(Work::Synced(result));
        });
    }
}

/// The first bytes of a node id, enough to tell nodes apart in logs.
fn short_id(id: &NodeId) -> String {
    format!("{:x}", id).chars().take(8).collect()
}

fn show_engine(metrics: &ConsensusMetrics, engine: &ConsensusEngine) {
    for name in ["pbft", "raft", "observer"] {
        metrics.engine.with_label_values(&[name]).set(i64::from(name == engine.name()));
    }
    metrics.engine_since_height.set(i64::try_from(engine.since_height()).unwrap_or(i64::MAX));
}

/// Finds the highest peer of this chain and applies the blocks it has beyond this node's head.
async fn sync_from(
    network: &NetworkHandle,
    chain: &Arc<Chain>,
    pool: &Arc<TxPool>,
    peers: &[NodeId],
    live: &LiveState,
) -> Result<usize, sync::SyncError> {
    let mut best: Option<(NodeId, u64)> = None;
    for peer in peers {
        let Ok(bytes) = network.request_sync(*peer, Bytes::from(SyncRequest::Status.encode())).await else { continue };
        if let Ok(SyncResponse::Status { height, genesis_hash, .. }) = SyncResponse::decode(&bytes)
            && genesis_hash == chain.genesis_hash()
            && best.is_none_or(|(_, h)| height > h)
        {
            best = Some((*peer, height));
        }
    }
    let Some((peer, height)) = best else { return Ok(0) };
    if height > chain.head()?.number + READY_LAG {
        live.set(false);
    }
    let mut applied = 0;
    loop {
        let head = chain.head()?.number;
        if head >= height {
            return Ok(applied);
        }
        let request = SyncRequest::Blocks { from: head + 1, max: SYNC_BATCH };
        let Ok(bytes) = network.request_sync(peer, Bytes::from(request.encode())).await else { return Ok(applied) };
        let SyncResponse::Blocks(blocks) = SyncResponse::decode(&bytes)? else { return Ok(applied) };
        if blocks.is_empty() {
            return Ok(applied);
        }
        let (chain, pool) = (chain.clone(), pool.clone());
        let result = tokio::task::spawn_blocking(move || sync::apply(&chain, &pool, blocks)).await.map_err(|e| {
            sync::SyncError::Chain(ChainError::Execution(crate::executor::ExecutionError::Evm(e.to_string())))
        })?;
        applied += result?;
    }
}
