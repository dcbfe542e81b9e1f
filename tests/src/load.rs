//! A steady load of signed transfers against a [`Cluster`], for checking that faults lose and
//! duplicate nothing.
//!
//! [`Load::start`] deploys an ERC-20 token from one funded account and gives tokens to a few
//! sender accounts, then a background task sends, one every [`Load::INTERVAL`], transfers from
//! those senders in turn: native transfers on even nonces, ERC-20 transfers on odd ones, to a few
//! fixed recipients. Each transfer goes to one of the target nodes (round robin; the test moves
//! the targets away from nodes before it kills, pauses or isolates them). A transfer counts as
//! sent once a node accepts it, or answers that it already knows it or that its nonce is used;
//! otherwise the very same signed transaction is offered again, to the next target. So every
//! sender's nonces are gapless and each nonce has exactly one transaction.
//!
//! [`Load::check`] stops the load, waits until every sent transfer is committed, and checks that
//! each appears exactly once in the chain, succeeded, and that the recipients' balances on every
//! node are the sums of what was sent to them.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::{
    consensus::TxEip1559,
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, TxKind, U256},
    providers::{Provider, ProviderBuilder, RootProvider},
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
};
use anyhow::{Context, ensure};
use bcos_sdk::crypto::AccountKey;
use tokio::task::JoinHandle;

use crate::{Cluster, ClusterSpec, checks::REQUEST_TIMEOUT, cluster::CHAIN_ID, erc20::ERC20, wait_for};

/// JSON-RPC error codes of the node's pool that mean the transaction is already there or in.
const TX_ALREADY_KNOWN: i64 = -32008;
const TX_NONCE_TOO_LOW: i64 = -32009;

/// Number of sender accounts (funded accounts 1..=SENDERS; account 0 owns the token).
const SENDERS: usize = 4;
/// Number of recipients.
const RECIPIENTS: usize = 3;

/// Which asset a transfer moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// Native value.
    Native,
    /// The load's ERC-20 token.
    Token,
}

/// One transfer a node acknowledged.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Transaction hash.
    pub hash: B256,
    /// Sender.
    pub from: Address,
    /// Sender's nonce.
    pub nonce: u64,
    /// What it moves.
    pub asset: Asset,
    /// Recipient.
    pub to: Address,
    /// Amount.
    pub amount: U256,
}

struct Shared {
    targets: Mutex<Vec<String>>,
    sent: Mutex<Vec<Sent>>,
    stop: AtomicBool,
    refusals: AtomicU64,
}

/// The background load; see the module docs.
pub struct Load {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    token: Address,
    recipients: Vec<Address>,
}

/// What [`Load::check`] found.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    /// Transfers acknowledged and found committed exactly once.
    pub committed: usize,
    /// Attempts refused or unanswered, each retried.
    pub retries: u64,
}

impl Load {
    /// Time between two transfers.
    pub const INTERVAL: Duration = Duration::from_millis(100);

    /// Starts a cluster, waits for its first blocks, and starts a load against every node.
    pub async fn on_new_cluster(spec: ClusterSpec, patience: Duration) -> anyhow::Result<(Cluster, Self)> {
        let cluster = Cluster::start(spec).await?;
        cluster.wait_height(&cluster.all(), 2, patience).await?;
        let load = Self::start(&cluster, 0, &cluster.all()).await?;
        load.wait_sent(8, patience).await?;
        Ok((cluster, load))
    }

    /// Deploys the token through node `setup_via`, funds the senders, and starts sending to
    /// `targets`.
    pub async fn start(cluster: &Cluster, setup_via: usize, targets: &[usize]) -> anyhow::Result<Self> {
        let accounts = cluster.funded_accounts();
        ensure!(accounts.len() > SENDERS, "not enough funded accounts");
        let owner = PrivateKeySigner::from_slice(&accounts[0].secret())?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(owner))
            .connect_client(crate::rpc_client(cluster.endpoints(setup_via)?.http.parse()?));
        let token = ERC20::deploy(&provider, "Load".into(), "LOD".into(), U256::from(1_000_000_000_000u64)).await?;
        let senders: Vec<AccountKey> = accounts.into_iter().skip(1).take(SENDERS).collect();
        let mut last = None;
        for sender in &senders {
            last = Some(token.transfer(sender.address(), U256::from(1_000_000_000u64)).send().await?);
        }
        if let Some(pending) = last {
            let receipt = pending.with_timeout(Some(Duration::from_secs(60))).get_receipt().await?;
            ensure!(receipt.status(), "funding the senders failed");
        }
        let recipients: Vec<Address> = (0..RECIPIENTS).map(|_| AccountKey::generate().address()).collect();
        let shared = Arc::new(Shared {
            targets: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            refusals: AtomicU64::new(0),
        });
        let mut load =
            Self { shared: shared.clone(), task: None, token: *token.address(), recipients: recipients.clone() };
        load.set_targets(cluster, targets)?;
        load.task = Some(tokio::spawn(run(shared, senders, *token.address(), recipients)));
        Ok(load)
    }

    /// Sends from now on only to `targets` (which must be running).
    pub fn set_targets(&self, cluster: &Cluster, targets: &[usize]) -> anyhow::Result<()> {
        let urls = targets.iter().map(|&i| Ok(cluster.endpoints(i)?.http.clone())).collect::<anyhow::Result<_>>()?;
        *self.shared.targets.lock().unwrap_or_else(PoisonError::into_inner) = urls;
        Ok(())
    }

    /// Every transfer acknowledged so far, in order.
    pub fn transfers(&self) -> Vec<Sent> {
        self.shared.sent.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Transfers acknowledged so far.
    pub fn sent(&self) -> usize {
        self.shared.sent.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Waits until `more` further transfers are acknowledged.
    pub async fn wait_sent(&self, more: usize, timeout: Duration) -> anyhow::Result<()> {
        let goal = self.sent() + more;
        wait_for(&format!("{goal} acknowledged transfers"), timeout, || async {
            Ok((self.sent() >= goal).then_some(()))
        })
        .await
    }

    /// Stops sending (idempotent); an attempt under way finishes first.
    pub async fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the load, waits up to `timeout` for every acknowledged transfer to commit on
    /// `nodes`, and checks that each is in the chain exactly once, succeeded, and that the
    /// recipients' balances on every node of `nodes` add up.
    pub async fn check(&mut self, cluster: &Cluster, nodes: &[usize], timeout: Duration) -> anyhow::Result<LoadReport> {
        self.stop().await;
        let sent = self.shared.sent.lock().unwrap_or_else(PoisonError::into_inner).clone();
        ensure!(!sent.is_empty(), "the load sent nothing");
        // Nonces are gapless per sender, so each sender's last transfer commits last.
        let mut last: HashMap<Address, &Sent> = HashMap::new();
        for s in &sent {
            last.insert(s.from, s);
        }
        let first = nodes.first().copied().context("no nodes")?;
        let provider = cluster.provider(first)?;
        for s in last.values() {
            wait_for(&format!("transfer {} (nonce {} of {})", s.hash, s.nonce, s.from), timeout, || async {
                let receipt = tokio::time::timeout(REQUEST_TIMEOUT, provider.get_transaction_receipt(s.hash)).await;
                Ok(receipt.ok().and_then(Result::ok).flatten())
            })
            .await?;
        }
        let head = cluster.height(first).await?;
        let blocks = cluster.assert_same_chain(nodes, head, timeout).await?;
        let mut seen: HashMap<B256, usize> = HashMap::new();
        for block in &blocks {
            for hash in &block.transactions {
                *seen.entry(*hash).or_default() += 1;
            }
        }
        let mut native: HashMap<Address, U256> = HashMap::new();
        let mut tokens: HashMap<Address, U256> = HashMap::new();
        for s in &sent {
            let count = seen.get(&s.hash).copied().unwrap_or_default();
            ensure!(count == 1, "transfer {} (nonce {} of {}) is in the chain {count} times", s.hash, s.nonce, s.from);
            let receipt = provider.get_transaction_receipt(s.hash).await?.context("receipt of a committed transfer")?;
            ensure!(receipt.status(), "transfer {} failed", s.hash);
            let totals = if s.asset == Asset::Native { &mut native } else { &mut tokens };
            *totals.entry(s.to).or_default() += s.amount;
        }
        for &i in nodes {
            let provider = cluster.provider(i)?;
            let token = ERC20::new(self.token, &provider);
            for recipient in &self.recipients {
                let balance = provider.get_balance(*recipient).await?;
                ensure!(
                    balance == native.get(recipient).copied().unwrap_or_default(),
                    "native balance of {recipient} on node {i}: {balance}"
                );
                let held = token.balanceOf(*recipient).call().await?;
                ensure!(
                    held == tokens.get(recipient).copied().unwrap_or_default(),
                    "token balance of {recipient} on node {i}: {held}"
                );
            }
        }
        Ok(LoadReport { committed: sent.len(), retries: self.shared.refusals.load(Ordering::SeqCst) })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A signed transfer waiting to be acknowledged.
struct Pending {
    raw: Bytes,
    sent: Sent,
}

fn next_transfer(sender: &AccountKey, nonce: u64, token: Address, recipients: &[Address]) -> Pending {
    let to = recipients[usize::try_from(nonce).unwrap_or_default() % recipients.len()];
    let amount = U256::from(1 + nonce);
    let (asset, tx) = if nonce.is_multiple_of(2) {
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: 21_000,
            to: TxKind::Call(to),
            value: amount,
            ..Default::default()
        };
        (Asset::Native, tx)
    } else {
        let input = ERC20::transferCall { to, amount }.abi_encode();
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: 100_000,
            to: TxKind::Call(token),
            input: input.into(),
            ..Default::default()
        };
        (Asset::Token, tx)
    };
    let raw = sender.sign_transaction(tx);
    let hash = alloy::primitives::keccak256(&raw);
    Pending { raw, sent: Sent { hash, from: sender.address(), nonce, asset, to, amount } }
}

async fn run(shared: Arc<Shared>, senders: Vec<AccountKey>, token: Address, recipients: Vec<Address>) {
    let mut nonces = vec![0u64; senders.len()];
    let mut pending: Vec<Option<Pending>> = senders.iter().map(|_| None).collect();
    let mut providers: HashMap<String, RootProvider> = HashMap::new();
    let mut ticker = tokio::time::interval(Load::INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0usize;
    while !shared.stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        let s = turn % senders.len();
        let targets = shared.targets.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if targets.is_empty() {
            continue;
        }
        let url = &targets[(turn / senders.len()) % targets.len()];
        turn += 1;
        let transfer = pending[s].get_or_insert_with(|| next_transfer(&senders[s], nonces[s], token, &recipients));
        let provider = match providers.get(url) {
            Some(provider) => provider.clone(),
            None => match url.parse() {
                Ok(parsed) => {
                    providers.entry(url.clone()).or_insert_with(|| RootProvider::new(crate::rpc_client(parsed))).clone()
                }
                Err(_) => continue,
            },
        };
        let acknowledged = match tokio::time::timeout(REQUEST_TIMEOUT, provider.send_raw_transaction(&transfer.raw))
            .await
        {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => e.as_error_resp().is_some_and(|p| p.code == TX_ALREADY_KNOWN || p.code == TX_NONCE_TOO_LOW),
            Err(_) => false,
        };
        if acknowledged {
            if let Some(done) = pending[s].take() {
                shared.sent.lock().unwrap_or_else(PoisonError::into_inner).push(done.sent);
            }
            nonces[s] += 1;
        } else {
            shared.refusals.fetch_add(1, Ordering::SeqCst);
        }
    }
}
