//! Network metrics, all named `bcos_network_*`.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry, core::Collector};

use super::Protocol;

/// Direction label of messages and bytes received.
pub(crate) const INBOUND: &str = "in";
/// Direction label of messages and bytes sent.
pub(crate) const OUTBOUND: &str = "out";

/// Network metrics.
#[derive(Clone)]
pub(crate) struct NetworkMetrics {
    /// Peers with at least one admitted connection.
    pub(crate) connected_peers: IntGauge,
    /// Messages by protocol and direction (acknowledgements excluded).
    pub(crate) messages: IntCounterVec,
    /// Payload bytes by protocol and direction.
    pub(crate) bytes: IntCounterVec,
    /// Messages received and dropped, by protocol and reason.
    pub(crate) dropped: IntCounterVec,
    /// Connections refused or closed by admission, by reason.
    pub(crate) refused: IntCounterVec,
    /// Messages that could not be delivered to a peer, by protocol and reason.
    pub(crate) send_failures: IntCounterVec,
}

/// Registers `metric`, replacing a network metric of the same name left by an earlier network
/// on the same registry (a restarted network), so the registry exports the live one.
fn register<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    if let Err(prometheus::Error::AlreadyReg) = registry.register(Box::new(metric.clone())) {
        let replaced =
            registry.unregister(Box::new(metric.clone())).and_then(|()| registry.register(Box::new(metric.clone())));
        if let Err(e) = replaced {
            tracing::error!(target: "network", error = %e, "cannot register a network metric");
        }
    }
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("invalid metric {name}: {e}"));
    register(registry, metric)
}

impl NetworkMetrics {
    /// Registers the network metrics.
    pub(crate) fn register(registry: &Registry) -> Self {
        let connected_peers = IntGauge::new("bcos_network_connected_peers", "Peers with an admitted connection")
            .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
        Self {
            connected_peers: register(registry, connected_peers),
            messages: counter_vec(
                registry,
                "bcos_network_messages_total",
                "Network messages by protocol and direction",
                &["protocol", "direction"],
            ),
            bytes: counter_vec(
                registry,
                "bcos_network_bytes_total",
                "Network message payload bytes by protocol and direction",
                &["protocol", "direction"],
            ),
            dropped: counter_vec(
                registry,
                "bcos_network_dropped_messages_total",
                "Received network messages dropped, by protocol and reason",
                &["protocol", "reason"],
            ),
            refused: counter_vec(
                registry,
                "bcos_network_refused_connections_total",
                "Peer connections refused or closed by admission, by reason",
                &["reason"],
            ),
            send_failures: counter_vec(
                registry,
                "bcos_network_send_failures_total",
                "Network messages not delivered to a peer, by protocol and reason",
                &["protocol", "reason"],
            ),
        }
    }

    /// Counts one message of `len` payload bytes.
    pub(crate) fn message(&self, protocol: Protocol, direction: &str, len: usize) {
        self.messages.with_label_values(&[protocol.label(), direction]).inc();
        self.bytes.with_label_values(&[protocol.label(), direction]).inc_by(len as u64);
    }

    /// Counts one dropped inbound message.
    pub(crate) fn drop(&self, protocol: Protocol, reason: &str) {
        self.dropped.with_label_values(&[protocol.label(), reason]).inc();
    }

    /// Counts one refused connection.
    pub(crate) fn refuse(&self, reason: &str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    /// Counts one failed send.
    pub(crate) fn send_failure(&self, protocol: Protocol, reason: &str) {
        self.send_failures.with_label_values(&[protocol.label(), reason]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_registering_replaces_the_metrics() {
        let registry = Registry::new();
        let first = NetworkMetrics::register(&registry);
        first.refuse("not_allowed");
        let second = NetworkMetrics::register(&registry);
        second.refuse("banned");
        let refused = registry
            .gather()
            .into_iter()
            .find(|family| family.name() == "bcos_network_refused_connections_total")
            .expect("registered");
        let reasons: Vec<_> = refused
            .get_metric()
            .iter()
            .flat_map(|m| m.get_label().iter().map(|l| l.value().to_owned()).collect::<Vec<_>>())
            .collect();
        assert_eq!(reasons, ["banned"], "the live metrics are exported");
    }
}
