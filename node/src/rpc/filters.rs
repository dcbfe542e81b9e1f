//! Polling filters (`eth_newFilter`, `eth_newBlockFilter`, `eth_getFilterChanges`, ...), which
//! web3.py and ethers.js use over HTTP where WebSocket subscriptions are not available.
//!
//! A filter remembers the last block it reported; a poll returns what was committed since. Filters
//! nobody polls for [`FILTER_IDLE_TIMEOUT`] are dropped, and at most [`MAX_FILTERS`] exist at once.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use alloy_primitives::U256;
use alloy_rpc_types_eth::Filter;
use parking_lot::Mutex;

/// Filters not polled for this long are removed (as geth does).
pub const FILTER_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Most filters alive at once.
pub const MAX_FILTERS: usize = 1024;

/// What a filter follows.
#[derive(Debug, Clone)]
pub enum FilterKind {
    /// New block hashes.
    Blocks,
    /// Logs matching a filter.
    Logs(Box<Filter>),
}

#[derive(Debug)]
struct Installed {
    kind: FilterKind,
    /// Highest block already reported.
    reported_until: u64,
    last_poll: Instant,
}

/// The installed filters of one node.
#[derive(Debug, Default)]
pub struct Filters {
    installed: Mutex<HashMap<U256, Installed>>,
    next_id: Mutex<u64>,
}

/// A poll's answer: the filter's kind and the block range not reported yet.
#[derive(Debug, Clone)]
pub struct Pending {
    /// What the filter follows.
    pub kind: FilterKind,
    /// First block to report.
    pub from: u64,
    /// Last block to report.
    pub to: u64,
}

impl Filters {
    /// Installs a filter that reports from the block after `head`; `None` when too many exist.
    pub fn install(&self, kind: FilterKind, head: u64) -> Option<U256> {
        let mut installed = self.installed.lock();
        let now = Instant::now();
        installed.retain(|_, f| now.duration_since(f.last_poll) < FILTER_IDLE_TIMEOUT);
        if installed.len() >= MAX_FILTERS {
            return None;
        }
        let mut next = self.next_id.lock();
        *next += 1;
        let id = U256::from(*next);
        installed.insert(id, Installed { kind, reported_until: head, last_poll: now });
        Some(id)
    }

    /// Marks everything up to `head` reported and returns the range that was not, or `None` for an
    /// unknown filter.
    pub fn poll(&self, id: U256, head: u64) -> Option<Pending> {
        let mut installed = self.installed.lock();
        let filter = installed.get_mut(&id)?;
        filter.last_poll = Instant::now();
        let pending = Pending { kind: filter.kind.clone(), from: filter.reported_until + 1, to: head };
        filter.reported_until = filter.reported_until.max(head);
        Some(pending)
    }

    /// The filter's kind, without advancing it.
    pub fn kind(&self, id: U256) -> Option<FilterKind> {
        let mut installed = self.installed.lock();
        let filter = installed.get_mut(&id)?;
        filter.last_poll = Instant::now();
        Some(filter.kind.clone())
    }

    /// Removes a filter; `false` when it did not exist.
    pub fn uninstall(&self, id: U256) -> bool {
        self.installed.lock().remove(&id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_report_each_block_once() {
        let filters = Filters::default();
        let id = filters.install(FilterKind::Blocks, 10).expect("installed");
        let first = filters.poll(id, 12).expect("known");
        assert_eq!((first.from, first.to), (11, 12));
        let empty = filters.poll(id, 12).expect("known");
        assert!(empty.from > empty.to);
        assert!(filters.uninstall(id));
        assert!(filters.poll(id, 13).is_none());
        assert!(!filters.uninstall(id));
    }

    #[test]
    fn the_number_of_filters_is_bounded() {
        let filters = Filters::default();
        for _ in 0..MAX_FILTERS {
            filters.install(FilterKind::Blocks, 0).expect("room");
        }
        assert!(filters.install(FilterKind::Blocks, 0).is_none());
    }
}
