//! The operator's own Prometheus metrics: reconciles, failures and durations per controller, and
//! whether this replica leads.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::controller::Error;

/// The operator's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    durations: HistogramVec,
    /// 1 while this replica holds the leader lease.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("bcos_operator_reconciles_total", "Reconciles run, by controller"),
            &["controller"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new("bcos_operator_reconcile_errors_total", "Reconciles that failed, by controller and error kind"),
            &["controller", "error"],
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new("bcos_operator_reconcile_duration_seconds", "Time one reconcile took, by controller")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["controller"],
        )?;
        let leader = IntGauge::new("bcos_operator_leader", "1 while this replica holds the leader lease")?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self { registry, reconciles, failures, durations, leader })
    }

    /// Counts a reconcile of `controller` that started at `started`.
    pub fn reconciled(&self, controller: &str, started: Instant) {
        self.reconciles.with_label_values(&[controller]).inc();
        self.durations.with_label_values(&[controller]).observe(started.elapsed().as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, controller: &str, error: &Error) {
        self.failures.with_label_values(&[controller, error.metric_label()]).inc();
    }
}
