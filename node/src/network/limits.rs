//! Limits of the network layer: message sizes, per-peer rates, timeouts, backoff and abuse.
//!
//! The `MAX_*` sizes are the protocol maxima: a node never accepts or sends a larger frame, and a
//! [`Limits`](super::Limits) configuration may lower them but never raise them. Rates are per
//! peer and per protocol, each enforced by two token buckets (messages and bytes).

use std::time::{Duration, Instant};

/// Bytes of the length prefix in front of every frame (big-endian `u32`).
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Largest consensus message: proposals carry whole blocks.
pub const MAX_CONSENSUS_MESSAGE: usize = 16 * 1024 * 1024;
/// Largest batch of gossiped transactions.
pub const MAX_TX_BATCH: usize = 4 * 1024 * 1024;
/// Largest block-sync request.
pub const MAX_SYNC_REQUEST: usize = 1024;
/// Largest block-sync response.
pub const MAX_SYNC_RESPONSE: usize = 64 * 1024 * 1024;

/// Bytes read from a stream at once while a frame is received; a frame's buffer grows by what
/// actually arrives, so a peer announcing a large frame cannot make the node allocate it upfront.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Time to deliver one consensus message (and receive its empty acknowledgement).
pub const CONSENSUS_TIMEOUT: Duration = Duration::from_secs(30);
/// Time to deliver one transaction batch.
pub const TX_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for a sync request to be answered (the response may be large).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Concurrent consensus streams per connection (both directions; an outbound message beyond it
/// fails). With the message limit it bounds what one peer can make the node buffer:
/// 64 × 16 MiB per connection.
pub const CONSENSUS_MAX_STREAMS: usize = 64;
/// Concurrent transaction-gossip streams per connection (16 × 4 MiB buffered at most).
pub const TX_MAX_STREAMS: usize = 16;
/// Concurrent sync streams per connection.
pub const SYNC_MAX_STREAMS: usize = 8;

/// Messages per peer and protocol waiting for a free stream; more are dropped and counted.
pub const OUTBOX_BACKLOG: usize = 4_096;

/// Default per-peer rate of consensus messages.
pub const CONSENSUS_RATE: RateLimit = RateLimit { messages_per_sec: 1_000, bytes_per_sec: 64 * 1024 * 1024 };
/// Default per-peer rate of transaction batches.
pub const TX_RATE: RateLimit = RateLimit { messages_per_sec: 200, bytes_per_sec: 32 * 1024 * 1024 };
/// Default per-peer rate of sync requests.
pub const SYNC_RATE: RateLimit = RateLimit { messages_per_sec: 50, bytes_per_sec: 64 * 1024 };
/// A rate limiter admits bursts of this many seconds' worth of traffic.
pub const BURST_SECS: u32 = 2;

/// First delay before redialing a peer.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Longest delay between two dials of a peer.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the peer's backoff when it closes; shorter ones keep
/// doubling it, so a peer that accepts and drops connections is not redialed in a tight loop.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

/// Violations (oversized, malformed or rate-limited messages) a peer may commit within
/// [`VIOLATION_WINDOW`] before it is disconnected and banned.
pub const MAX_VIOLATIONS: u32 = 32;
/// The window in which violations are counted.
pub const VIOLATION_WINDOW: Duration = Duration::from_secs(10);
/// How long an abusive peer is refused.
pub const BAN_DURATION: Duration = Duration::from_secs(60);

/// Connections being upgraded (TCP accepted, Noise/Yamux not finished) at once.
pub const MAX_PENDING_INCOMING: u32 = 64;
/// Established connections to one peer (a simultaneous dial from both sides makes two).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Time to resolve a peer's DNS name before dialing it.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to establish a connection (TCP, Noise and Yamux).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of liveness pings on each connection.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A ping unanswered for this long closes the connection.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Events buffered for the node before messages are dropped.
pub const EVENT_QUEUE: usize = 8_192;
/// Commands buffered for the network task before sends fail with back-pressure.
pub const COMMAND_QUEUE: usize = 8_192;
/// Peer (dis)connection events held back while the event queue is full; they are never dropped
/// for a full queue, but beyond this many the oldest are (the node's [`connected_peers`] stays
/// exact).
///
/// [`connected_peers`]: super::NetworkHandle::connected_peers
pub const MAX_HELD_PEER_EVENTS: usize = 4_096;
/// Time to bind the listen address.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A per-peer inbound rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages per second.
    pub messages_per_sec: u32,
    /// Payload bytes per second.
    pub bytes_per_sec: u64,
}

/// A token bucket: `capacity` tokens, refilled at `per_sec`.
#[derive(Debug, Clone)]
struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(capacity: f64, per_sec: f64, now: Instant) -> Self {
        Self { capacity, per_sec, tokens: capacity, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
    }
}

/// Two token buckets, messages and bytes: a message passes only if both have room.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    messages: TokenBucket,
    bytes: TokenBucket,
}

impl RateLimiter {
    /// A full limiter for `rate`; the byte bucket holds at least one `max_message`, so a single
    /// message of the largest allowed size always fits a rested limiter.
    pub(crate) fn new(rate: RateLimit, max_message: usize, now: Instant) -> Self {
        let messages = f64::from(rate.messages_per_sec);
        let bytes = rate.bytes_per_sec as f64;
        let burst = f64::from(BURST_SECS);
        Self {
            messages: TokenBucket::new((messages * burst).max(1.0), messages, now),
            bytes: TokenBucket::new((bytes * burst).max(max_message as f64), bytes, now),
        }
    }

    /// Takes one message of `len` bytes; `false` (and nothing taken) if over the rate.
    pub(crate) fn try_acquire(&mut self, now: Instant, len: usize) -> bool {
        self.messages.refill(now);
        self.bytes.refill(now);
        let len = len as f64;
        if self.messages.tokens < 1.0 || self.bytes.tokens < len {
            return false;
        }
        self.messages.tokens -= 1.0;
        self.bytes.tokens -= len;
        true
    }
}

/// Violations of one peer within a sliding window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Violations {
    window_start: Option<Instant>,
    count: u32,
}

impl Violations {
    /// Records one violation at `now`; `true` once the peer has reached [`MAX_VIOLATIONS`] within
    /// [`VIOLATION_WINDOW`] (the count restarts then).
    pub(crate) fn record(&mut self, now: Instant) -> bool {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < VIOLATION_WINDOW => {
                self.count = self.count.saturating_add(1);
            }
            _ => {
                self.window_start = Some(now);
                self.count = 1;
            }
        }
        if self.count >= MAX_VIOLATIONS {
            *self = Self::default();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_admits_burst_then_refills() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(RateLimit { messages_per_sec: 10, bytes_per_sec: 1000 }, 100, start);
        // Burst: 2 s worth of messages.
        for _ in 0..20 {
            assert!(limiter.try_acquire(start, 10));
        }
        assert!(!limiter.try_acquire(start, 10), "burst exhausted");
        // 100 ms later one message is back.
        let later = start + Duration::from_millis(100);
        assert!(limiter.try_acquire(later, 10));
        assert!(!limiter.try_acquire(later, 10));
    }

    #[test]
    fn rate_limiter_bounds_bytes_and_admits_one_max_message() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(RateLimit { messages_per_sec: 100, bytes_per_sec: 10 }, 1000, start);
        assert!(limiter.try_acquire(start, 1000), "a full limiter takes one maximal message");
        assert!(!limiter.try_acquire(start, 1), "no bytes left");
        // A refused message takes nothing: the message bucket is untouched.
        assert!(limiter.try_acquire(start + Duration::from_secs(1), 10));
    }

    #[test]
    fn violations_trip_within_window_only() {
        let start = Instant::now();
        let mut violations = Violations::default();
        for i in 1..MAX_VIOLATIONS {
            assert!(!violations.record(start), "violation {i}");
        }
        assert!(violations.record(start), "the last one trips");
        // Spread out beyond the window, they never trip.
        let mut violations = Violations::default();
        for i in 0..(MAX_VIOLATIONS * 2) {
            assert!(!violations.record(start + VIOLATION_WINDOW * i));
        }
    }
}
