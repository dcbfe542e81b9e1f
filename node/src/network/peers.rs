//! The dial schedule: every allowed peer with a known address that is not connected is dialed,
//! with exponential backoff between attempts.
//!
//! A pure state machine over `Instant`s: the network task feeds it connection events and asks
//! which peers are due.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId};

use super::limits::{BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_RESET_AFTER};

/// Where a dial target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not connected; the next dial is due at this instant.
    Waiting(Instant),
    /// A dial is under way.
    Dialing,
    /// Connected since this instant.
    Connected(Instant),
}

#[derive(Debug, Clone)]
struct Target {
    addr: Multiaddr,
    state: State,
    /// The wait after the next failure.
    backoff: Duration,
    /// No dial before this instant (the peer is banned).
    hold: Option<Instant>,
}

/// The peers to keep connected and when to dial them next.
#[derive(Debug, Default)]
pub(crate) struct Dialer {
    targets: HashMap<PeerId, Target>,
}

impl Dialer {
    /// Replaces the targets. Peers kept keep their state; new ones are due now, or marked
    /// connected if `is_connected` says so.
    pub(crate) fn set_targets(
        &mut self,
        targets: impl IntoIterator<Item = (PeerId, Multiaddr)>,
        is_connected: impl Fn(&PeerId) -> bool,
        now: Instant,
    ) {
        let mut old = std::mem::take(&mut self.targets);
        for (peer, addr) in targets {
            let target = match old.remove(&peer) {
                Some(target) => Target { addr, ..target },
                None => {
                    let state = if is_connected(&peer) { State::Connected(now) } else { State::Waiting(now) };
                    Target { addr, state, backoff: BACKOFF_INITIAL, hold: None }
                }
            };
            self.targets.insert(peer, target);
        }
    }

    /// Whether `peer` is a target.
    #[cfg(test)]
    fn contains(&self, peer: &PeerId) -> bool {
        self.targets.contains_key(peer)
    }

    /// The targets due at `now`, now marked as being dialed.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(PeerId, Multiaddr)> {
        let mut due = Vec::new();
        for (peer, target) in &mut self.targets {
            if matches!(target.state, State::Waiting(at) if at <= now) {
                target.state = State::Dialing;
                due.push((*peer, target.addr.clone()));
            }
        }
        due
    }

    /// The earliest instant a target falls due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.targets
            .values()
            .filter_map(|target| match target.state {
                State::Waiting(at) => Some(at),
                State::Dialing | State::Connected(_) => None,
            })
            .min()
    }

    /// `peer` got its first connection.
    pub(crate) fn connected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(target) = self.targets.get_mut(peer) {
            target.state = State::Connected(now);
        }
    }

    /// `peer` lost its last connection: redial after the backoff, which restarts from
    /// [`BACKOFF_INITIAL`] if the connection had lasted [`BACKOFF_RESET_AFTER`].
    pub(crate) fn disconnected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(target) = self.targets.get_mut(peer) {
            if let State::Connected(since) = target.state
                && now.saturating_duration_since(since) >= BACKOFF_RESET_AFTER
            {
                target.backoff = BACKOFF_INITIAL;
            }
            Self::schedule(target, now);
        }
    }

    /// A dial of `peer` failed; ignored if the peer got connected meanwhile.
    pub(crate) fn dial_failed(&mut self, peer: &PeerId, now: Instant) {
        if let Some(target) = self.targets.get_mut(peer)
            && target.state == State::Dialing
        {
            Self::schedule(target, now);
        }
    }

    /// Holds off dialing `peer` until `until` (it is banned); a connection it has is about to
    /// be closed, and the redial waits for `until` as well.
    pub(crate) fn defer(&mut self, peer: &PeerId, until: Instant) {
        if let Some(target) = self.targets.get_mut(peer) {
            target.hold = Some(until);
            if let State::Waiting(at) = target.state {
                target.state = State::Waiting(at.max(until));
            }
        }
    }

    fn schedule(target: &mut Target, now: Instant) {
        let at = now + target.backoff;
        target.state = State::Waiting(target.hold.take().map_or(at, |hold| at.max(hold)));
        target.backoff = (target.backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use bcos_sdk::crypto::NodeKey;

    use super::*;
    use crate::network::identity::peer_id_of;

    fn peer() -> PeerId {
        peer_id_of(&NodeKey::generate().node_id()).expect("valid")
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("multiaddr")
    }

    #[test]
    fn new_targets_are_due_at_once_and_back_off_exponentially() {
        let t0 = Instant::now();
        let p = peer();
        let mut dialer = Dialer::default();
        dialer.set_targets([(p, addr(1))], |_| false, t0);
        assert_eq!(dialer.next_due(), Some(t0));
        assert_eq!(dialer.due(t0), vec![(p, addr(1))]);
        assert_eq!(dialer.due(t0), vec![], "being dialed");
        assert_eq!(dialer.next_due(), None);

        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            dialer.dial_failed(&p, now);
            let at = dialer.next_due().expect("scheduled");
            waits.push(at - now);
            assert!(dialer.due(at - Duration::from_millis(1)).is_empty(), "not early");
            assert_eq!(dialer.due(at).len(), 1);
            now = at;
        }
        let ms: Vec<u64> = waits.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    }

    #[test]
    fn short_connections_keep_backing_off_long_ones_reset() {
        let t0 = Instant::now();
        let p = peer();
        let mut dialer = Dialer::default();
        dialer.set_targets([(p, addr(1))], |_| false, t0);
        dialer.due(t0);
        dialer.dial_failed(&p, t0); // next wait 500 ms, then 1 s
        dialer.due(t0 + BACKOFF_INITIAL);
        dialer.connected(&p, t0);
        dialer.disconnected(&p, t0 + Duration::from_secs(1));
        assert_eq!(dialer.next_due(), Some(t0 + Duration::from_secs(2)), "a brief connection backs off further");

        dialer.due(t0 + Duration::from_secs(2));
        dialer.connected(&p, t0 + Duration::from_secs(2));
        let later = t0 + Duration::from_secs(2) + BACKOFF_RESET_AFTER;
        dialer.disconnected(&p, later);
        assert_eq!(dialer.next_due(), Some(later + BACKOFF_INITIAL), "a stable connection resets the backoff");
    }

    #[test]
    fn connected_and_removed_targets_are_not_dialed() {
        let t0 = Instant::now();
        let (a, b) = (peer(), peer());
        let mut dialer = Dialer::default();
        dialer.set_targets([(a, addr(1)), (b, addr(2))], |p| *p == a, t0);
        assert_eq!(dialer.due(t0), vec![(b, addr(2))], "a is connected already");
        dialer.dial_failed(&a, t0);
        assert_eq!(dialer.next_due(), None, "a failed dial of a connected peer changes nothing");

        dialer.set_targets([(a, addr(3))], |_| false, t0);
        assert!(!dialer.contains(&b));
        dialer.disconnected(&a, t0);
        assert_eq!(dialer.due(t0 + BACKOFF_INITIAL), vec![(a, addr(3))], "the new address is dialed");
    }

    #[test]
    fn banned_targets_wait() {
        let t0 = Instant::now();
        let p = peer();
        let mut dialer = Dialer::default();
        dialer.set_targets([(p, addr(1))], |_| true, t0);
        let until = t0 + Duration::from_secs(60);
        dialer.defer(&p, until);
        assert_eq!(dialer.next_due(), None, "still connected until the ban closes the connection");
        dialer.disconnected(&p, t0);
        assert_eq!(dialer.next_due(), Some(until), "the redial waits for the ban");
        assert!(dialer.due(until).len() == 1);
        dialer.dial_failed(&p, until);
        assert_eq!(dialer.next_due(), Some(until + BACKOFF_INITIAL * 2), "the hold applies once");
    }
}
