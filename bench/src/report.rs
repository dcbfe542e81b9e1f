//! Statistics and the printed report. Everything here is pure: the run's raw observations go in
//! (times relative to the run's start), a [`Summary`] comes out and prints as plain text, one
//! metric group per line with a fixed label column, so it is stable to grep.
//!
//! Definitions (also in `--help`):
//! - The *window* is the measured phase: the transactions scheduled after the warm-up. It runs
//!   from the moment its first batch was sent (W0) to one batch interval after its last batch
//!   was sent (W1).
//! - *sent*, *rejected*, *committed* count window transactions; *achieved* is sent / (W1 - W0).
//! - *sustained* is the commit rate inside the window: benchmark transactions (warm-up or
//!   window) whose confirmation arrived in [W0, W1), divided by W1 - W0. Warm-up keeps the
//!   pipeline full at W0, and the load continues up to W1, so this is the steady-state rate.
//! - *end-to-end* is committed window transactions divided by the span from W0 to the last of
//!   their confirmations; it includes the confirmation tail of the last batches once.
//! - *latency* is confirmation time minus send time for each committed window transaction:
//!   send time is when its batch request started, confirmation time is when the `newHeads`
//!   notification of its block arrived. Percentiles use the nearest-rank method.
//! - *blocks* are those whose head arrived in [W0, W1).

use std::{collections::HashMap, fmt, time::Duration};

/// Parameters of the run, echoed in the report.
#[derive(Debug, Clone)]
pub(crate) struct RunParams {
    /// Offered transactions per second.
    pub(crate) rate: u64,
    /// Seconds of measured load.
    pub(crate) duration: u64,
    /// Seconds of warm-up load.
    pub(crate) warmup: u64,
    /// Sender accounts.
    pub(crate) accounts: usize,
    /// Transactions per batch request.
    pub(crate) batch: usize,
    /// Concurrent batch requests.
    pub(crate) connections: usize,
}

/// One transaction's fate. Times are offsets from the run's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxOutcome {
    /// Whether it belongs to the measured window (not the warm-up).
    pub(crate) measured: bool,
    /// When its batch request started, if it was sent.
    pub(crate) sent_at: Option<Duration>,
    /// Whether the endpoint accepted it.
    pub(crate) accepted: bool,
    /// When the head of its block arrived, if it was seen committed.
    pub(crate) confirmed_at: Option<Duration>,
}

/// One committed block. Times are offsets from the run's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockOutcome {
    /// When its head arrived.
    pub(crate) seen_at: Duration,
    /// All transactions in it.
    pub(crate) tx_count: usize,
}

/// Everything the run observed.
#[derive(Debug, Clone)]
pub(crate) struct RunData {
    /// Every transaction, in send order.
    pub(crate) txs: Vec<TxOutcome>,
    /// Every block committed while tracking.
    pub(crate) blocks: Vec<BlockOutcome>,
    /// The pacer's batch spacing.
    pub(crate) batch_interval: Duration,
    /// The furthest a batch went out behind schedule.
    pub(crate) max_lag: Duration,
    /// Refusals, all phases.
    pub(crate) rejections: Rejections,
}

/// Refusal messages grouped by their shape: digits and hex runs are masked, so "nonce too low:
/// next 5" and "nonce too low: next 7" count as one reason. Each keeps its first message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rejections {
    by_reason: HashMap<String, (u64, String)>,
}

impl Rejections {
    /// Counts one refusal.
    pub(crate) fn record(&mut self, message: &str) {
        let entry = self.by_reason.entry(normalize_reason(message)).or_insert_with(|| (0, message.to_owned()));
        entry.0 += 1;
    }

    /// All refusals counted.
    pub(crate) fn total(&self) -> u64 {
        self.by_reason.values().map(|(n, _)| n).sum()
    }

    /// The `n` most frequent reasons: (shape, count, first message), most frequent first.
    pub(crate) fn top(&self, n: usize) -> Vec<(String, u64, String)> {
        let mut all: Vec<_> =
            self.by_reason.iter().map(|(reason, (count, example))| (reason.clone(), *count, example.clone())).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

/// Masks numbers (`N`) and `0x` hex strings (`0x…`) in an error message.
pub(crate) fn normalize_reason(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '0' && chars.peek().is_some_and(|n| *n == 'x' || *n == 'X') {
            chars.next();
            while chars.next_if(char::is_ascii_hexdigit).is_some() {}
            out.push_str("0x…");
        } else if c.is_ascii_digit() {
            while chars.next_if(char::is_ascii_digit).is_some() {}
            out.push('N');
        } else {
            out.push(c);
        }
    }
    out
}

/// The nearest-rank percentile of sorted values, `per_mille` thousandths (500 = median,
/// 990 = p99): the smallest value with at least that share of values at or below it.
pub(crate) fn percentile(sorted: &[u64], per_mille: u64) -> Option<u64> {
    let n = sorted.len() as u64;
    let rank = (n * per_mille.min(1000)).div_ceil(1000).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

/// Latency distribution, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Latency {
    /// Median.
    pub(crate) p50: u64,
    /// 90th percentile.
    pub(crate) p90: u64,
    /// 99th percentile.
    pub(crate) p99: u64,
    /// Largest.
    pub(crate) max: u64,
}

impl Latency {
    /// The distribution of unsorted samples; `None` without samples.
    pub(crate) fn of(mut samples: Vec<u64>) -> Option<Self> {
        samples.sort_unstable();
        Some(Self {
            p50: percentile(&samples, 500)?,
            p90: percentile(&samples, 900)?,
            p99: percentile(&samples, 990)?,
            max: *samples.last()?,
        })
    }
}

/// The computed statistics (see the module docs for definitions).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    /// Window transactions sent.
    pub(crate) sent: u64,
    /// Window transactions refused.
    pub(crate) rejected: u64,
    /// Window transactions sent per second.
    pub(crate) achieved_tps: f64,
    /// Largest schedule lag.
    pub(crate) max_lag: Duration,
    /// Window transactions accepted and seen committed.
    pub(crate) committed: u64,
    /// Window transactions accepted but never seen committed.
    pub(crate) unconfirmed: u64,
    /// Commit rate inside the window.
    pub(crate) sustained_tps: f64,
    /// Committed window transactions over the span to their last confirmation.
    pub(crate) end_to_end_tps: f64,
    /// Confirmation latency of committed window transactions.
    pub(crate) latency: Option<Latency>,
    /// Blocks whose head arrived inside the window.
    pub(crate) blocks: u64,
    /// Mean spacing of those heads.
    pub(crate) avg_block_interval: Option<Duration>,
    /// Mean transactions per such block.
    pub(crate) avg_txs_per_block: Option<f64>,
}

fn per_second(count: u64, span: Duration) -> f64 {
    if span.is_zero() { 0.0 } else { count as f64 / span.as_secs_f64() }
}

impl Summary {
    /// Computes the statistics of a run.
    pub(crate) fn compute(data: &RunData) -> Self {
        let window: Vec<&TxOutcome> = data.txs.iter().filter(|t| t.measured).collect();
        let sent = window.iter().filter(|t| t.sent_at.is_some()).count() as u64;
        let rejected = window.iter().filter(|t| t.sent_at.is_some() && !t.accepted).count() as u64;
        let w0 = window.iter().filter_map(|t| t.sent_at).min().unwrap_or_default();
        let w1 = window.iter().filter_map(|t| t.sent_at).max().map_or(w0, |last| last + data.batch_interval);
        let span = w1.saturating_sub(w0);
        let in_window = |at: Duration| at >= w0 && at < w1;

        let committed_in_window = data.txs.iter().filter(|t| t.confirmed_at.is_some_and(in_window)).count() as u64;

        let mut latencies = Vec::with_capacity(window.len());
        let mut last_confirmation = w0;
        for t in &window {
            if let (true, Some(sent_at), Some(confirmed_at)) = (t.accepted, t.sent_at, t.confirmed_at) {
                let micros = confirmed_at.saturating_sub(sent_at).as_micros();
                latencies.push(u64::try_from(micros).unwrap_or(u64::MAX));
                last_confirmation = last_confirmation.max(confirmed_at);
            }
        }
        let committed = latencies.len() as u64;
        let accepted = window.iter().filter(|t| t.accepted).count() as u64;

        let blocks: Vec<&BlockOutcome> = data.blocks.iter().filter(|b| in_window(b.seen_at)).collect();
        let avg_block_interval = match (blocks.first(), blocks.last()) {
            (Some(first), Some(last)) if blocks.len() > 1 => {
                let gaps = u32::try_from(blocks.len() - 1).unwrap_or(u32::MAX);
                Some(last.seen_at.saturating_sub(first.seen_at) / gaps)
            }
            _ => None,
        };
        let avg_txs_per_block =
            (!blocks.is_empty()).then(|| blocks.iter().map(|b| b.tx_count as f64).sum::<f64>() / blocks.len() as f64);

        Self {
            sent,
            rejected,
            achieved_tps: per_second(sent, span),
            max_lag: data.max_lag,
            committed,
            unconfirmed: accepted.saturating_sub(committed),
            sustained_tps: per_second(committed_in_window, span),
            end_to_end_tps: per_second(committed, last_confirmation.saturating_sub(w0)),
            latency: Latency::of(latencies),
            blocks: blocks.len() as u64,
            avg_block_interval,
            avg_txs_per_block,
        }
    }
}

/// The printable report: parameters, summary and the top refusal reasons.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    /// The run's parameters.
    pub(crate) params: &'a RunParams,
    /// Its statistics.
    pub(crate) summary: &'a Summary,
    /// Most frequent refusals (shape, count, example).
    pub(crate) rejections: Vec<(String, u64, String)>,
}

/// Width of the label column.
const LABEL: usize = 20;

fn ms(micros: u64) -> u64 {
    (micros + 500) / 1000
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, s) = (self.params, self.summary);
        writeln!(
            f,
            "{:<LABEL$}{} tx/s   duration {} s (+{} s warm-up)   accounts {}   batch {}   connections {}",
            "offered rate", p.rate, p.duration, p.warmup, p.accounts, p.batch, p.connections
        )?;
        writeln!(
            f,
            "{:<LABEL$}{} (achieved {:.0} tx/s, max lag {} ms)   rejected {}",
            "sent",
            s.sent,
            s.achieved_tps,
            s.max_lag.as_millis(),
            s.rejected
        )?;
        writeln!(
            f,
            "{:<LABEL$}{} in window   sustained {:.0} tx/s   end-to-end {:.0} tx/s   unconfirmed {}",
            "committed", s.committed, s.sustained_tps, s.end_to_end_tps, s.unconfirmed
        )?;
        match s.latency {
            Some(l) => writeln!(
                f,
                "{:<LABEL$}p50 {}   p90 {}   p99 {}   max {}",
                "latency (ms)",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.max)
            )?,
            None => writeln!(f, "{:<LABEL$}n/a (nothing committed)", "latency (ms)")?,
        }
        let interval = s.avg_block_interval.map_or_else(|| "n/a".to_owned(), |d| format!("{} ms", d.as_millis()));
        let per_block = s.avg_txs_per_block.map_or_else(|| "n/a".to_owned(), |n| format!("{n:.0}"));
        writeln!(f, "{:<LABEL$}{}   avg interval {}   avg txs/block {}", "blocks", s.blocks, interval, per_block)?;
        for (reason, count, example) in &self.rejections {
            writeln!(f, "{:<LABEL$}{count}   {reason}   (e.g. {example:?})", "rejection")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms_d(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 500), Some(50));
        assert_eq!(percentile(&v, 900), Some(90));
        assert_eq!(percentile(&v, 990), Some(99));
        assert_eq!(percentile(&v, 1000), Some(100));
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&[7], 990), Some(7));
        assert_eq!(percentile(&[], 500), None);
        // Ten values: p50 is the 5th, p99 rounds the rank up to the 10th.
        let v: Vec<u64> = (1..=10).map(|x| x * 10).collect();
        assert_eq!(percentile(&v, 500), Some(50));
        assert_eq!(percentile(&v, 990), Some(100));
        assert_eq!(percentile(&v, 910), Some(100));
        assert_eq!(percentile(&v, 900), Some(90));
    }

    #[test]
    fn latency_sorts_its_samples() {
        let l = Latency::of(vec![5, 1, 4, 2, 3]).expect("samples");
        assert_eq!(l, Latency { p50: 3, p90: 5, p99: 5, max: 5 });
        assert_eq!(Latency::of(Vec::new()), None);
    }

    #[test]
    fn reasons_group_by_shape() {
        assert_eq!(
            normalize_reason("nonce too high: next nonce 5, tx nonce 1200"),
            "nonce too high: next nonce N, tx nonce N"
        );
        assert_eq!(normalize_reason("known transaction 0xABCdef12"), "known transaction 0x…");
        assert_eq!(normalize_reason("txpool is full"), "txpool is full");
        let mut r = Rejections::default();
        r.record("nonce too low: 3");
        r.record("nonce too low: 4");
        r.record("txpool is full");
        assert_eq!(r.total(), 3);
        assert_eq!(
            r.top(5),
            vec![
                ("nonce too low: N".to_owned(), 2, "nonce too low: 3".to_owned()),
                ("txpool is full".to_owned(), 1, "txpool is full".to_owned()),
            ]
        );
        assert_eq!(r.top(1).len(), 1);
    }

    fn tx(measured: bool, sent: u64, accepted: bool, confirmed: Option<u64>) -> TxOutcome {
        TxOutcome { measured, sent_at: Some(ms_d(sent)), accepted, confirmed_at: confirmed.map(ms_d) }
    }

    /// Warm-up of one second, a window of two seconds sending 1 tx per 100 ms, each confirmed
    /// 300 ms after sending except one rejected and one lost; blocks every 500 ms.
    fn sample() -> RunData {
        let mut txs = Vec::new();
        for i in 0..10 {
            txs.push(tx(false, i * 100, true, Some(i * 100 + 300)));
        }
        for i in 10..30 {
            let sent = i * 100;
            let t = match i {
                15 => tx(true, sent, false, None),
                16 => tx(true, sent, true, None),
                _ => tx(true, sent, true, Some(sent + 300)),
            };
            txs.push(t);
        }
        let blocks = (1..=8).map(|k| BlockOutcome { seen_at: ms_d(k * 500), tx_count: 5 }).collect();
        RunData { txs, blocks, batch_interval: ms_d(100), max_lag: ms_d(3), rejections: Rejections::default() }
    }

    #[test]
    fn summary_follows_the_documented_definitions() {
        let s = Summary::compute(&sample());
        assert_eq!(s.sent, 20);
        assert_eq!(s.rejected, 1);
        // Window: W0 = 1000 ms, W1 = 2900 + 100 = 3000 ms.
        assert!((s.achieved_tps - 10.0).abs() < 1e-9, "{}", s.achieved_tps);
        assert_eq!(s.committed, 18);
        assert_eq!(s.unconfirmed, 1);
        // Confirmations in [1000, 3000): warm-up txs 7..9 (1000..1200) and window txs 10..26
        // (1300..2900) except 15 and 16: 3 + 15 = 18 over 2 s.
        assert!((s.sustained_tps - 9.0).abs() < 1e-9, "{}", s.sustained_tps);
        // 18 committed over W0 .. last confirmation (3200 ms).
        assert!((s.end_to_end_tps - 18.0 / 2.2).abs() < 1e-9, "{}", s.end_to_end_tps);
        assert_eq!(s.latency, Some(Latency { p50: 300_000, p90: 300_000, p99: 300_000, max: 300_000 }));
        // Heads at 1000, 1500, 2000, 2500 fall in [1000, 3000).
        assert_eq!(s.blocks, 4);
        assert_eq!(s.avg_block_interval, Some(ms_d(500)));
        assert_eq!(s.avg_txs_per_block, Some(5.0));
    }

    #[test]
    fn summary_of_an_empty_run_is_all_zero() {
        let data = RunData {
            txs: vec![TxOutcome { measured: true, sent_at: None, accepted: false, confirmed_at: None }],
            blocks: Vec::new(),
            batch_interval: ms_d(20),
            max_lag: Duration::ZERO,
            rejections: Rejections::default(),
        };
        let s = Summary::compute(&data);
        assert_eq!((s.sent, s.committed, s.blocks), (0, 0, 0));
        assert_eq!(s.achieved_tps, 0.0);
        assert_eq!(s.latency, None);
        assert_eq!(s.avg_block_interval, None);
    }

    #[test]
    fn report_lines_are_stable() {
        let params = RunParams { rate: 10, duration: 2, warmup: 1, accounts: 3, batch: 1, connections: 2 };
        let summary = Summary::compute(&sample());
        let text = Report {
            params: &params,
            summary: &summary,
            rejections: vec![("txpool is full".into(), 1, "txpool is full".into())],
        }
        .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "offered rate        10 tx/s   duration 2 s (+1 s warm-up)   accounts 3   batch 1   connections 2",
                "sent                20 (achieved 10 tx/s, max lag 3 ms)   rejected 1",
                "committed           18 in window   sustained 9 tx/s   end-to-end 8 tx/s   unconfirmed 1",
                "latency (ms)        p50 300   p90 300   p99 300   max 300",
                "blocks              4   avg interval 500 ms   avg txs/block 5",
                "rejection           1   txpool is full   (e.g. \"txpool is full\")",
            ]
        );
    }
}
