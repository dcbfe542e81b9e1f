//! Readiness and liveness probes (`httpGet` and `tcpSocket`) against the Pod's address, with the
//! kubelet's thresholds.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::OnceLock,
    time::Duration,
};

use anyhow::{Context, bail};
use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::time::Instant;

/// How often a probe without `periodSeconds` runs: faster than the kubelet's 10 s, since tests
/// wait on it.
const DEFAULT_PERIOD: Duration = Duration::from_secs(1);

/// One probe of a running process and its recent results.
pub(super) struct Prober {
    action: Action,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    passing: bool,
    next: Instant,
}

enum Action {
    Http(String),
    Tcp(SocketAddr),
    /// A probe the runner cannot run, and why: it always fails.
    Unsupported(String),
}

impl Prober {
    /// A probe of the process `container` started now at `pod_ip`. A readiness probe starts
    /// failing, a liveness probe passing.
    pub(super) fn new(probe: &Probe, container: &Container, pod_ip: Ipv4Addr, passing: bool) -> Self {
        let seconds = |value: Option<i32>, default: u64| {
            value.and_then(|value| u64::try_from(value).ok()).filter(|&value| value > 0).unwrap_or(default)
        };
        let threshold = |value: Option<i32>, default: u32| {
            value.and_then(|value| u32::try_from(value).ok()).filter(|&value| value > 0).unwrap_or(default)
        };
        let action = action(probe, container, pod_ip).unwrap_or_else(|error| Action::Unsupported(format!("{error:#}")));
        let initial_delay = Duration::from_secs(seconds(probe.initial_delay_seconds, 0));
        Self {
            action,
            period: probe.period_seconds.map_or(DEFAULT_PERIOD, |period| Duration::from_secs(seconds(Some(period), 1))),
            timeout: Duration::from_secs(seconds(probe.timeout_seconds, 1)),
            success_threshold: threshold(probe.success_threshold, 1),
            failure_threshold: threshold(probe.failure_threshold, 3),
            successes: 0,
            failures: 0,
            passing,
            next: Instant::now() + initial_delay,
        }
    }

    /// When the probe is due next.
    pub(super) fn next(&self) -> Instant {
        self.next
    }

    /// Whether the probe passes, by its thresholds.
    pub(super) fn passing(&self) -> bool {
        self.passing
    }

    /// Runs the probe if it is due. Returns the error that turned it from passing to failing, or
    /// `Ok(true)` when it turned passing; `Ok(false)` when nothing changed.
    pub(super) async fn run_if_due(&mut self) -> Result<bool, String> {
        let now = Instant::now();
        if now < self.next {
            return Ok(false);
        }
        self.next = now + self.period;
        match self.check().await {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                if !self.passing && self.successes >= self.success_threshold {
                    self.passing = true;
                    return Ok(true);
                }
            }
            Err(error) => {
                self.successes = 0;
                self.failures += 1;
                if self.passing && self.failures >= self.failure_threshold {
                    self.passing = false;
                    return Err(error);
                }
            }
        }
        Ok(false)
    }

    async fn check(&self) -> Result<(), String> {
        match &self.action {
            Action::Http(url) => {
                let response = client()
                    .get(url)
                    .timeout(self.timeout)
                    .send()
                    .await
                    .map_err(|error| format!("GET {url}: {error}"))?;
                let status = response.status();
                // The kubelet counts 2xx and 3xx as success.
                if status.is_success() || status.is_redirection() {
                    Ok(())
                } else {
                    Err(format!("GET {url}: {status}"))
                }
            }
            Action::Tcp(address) => {
                match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(address)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(format!("connecting to {address}: {error}")),
                    Err(_) => Err(format!("connecting to {address}: timed out")),
                }
            }
            Action::Unsupported(why) => Err(why.clone()),
        }
    }
}

/// The HTTP client of every probe. Like the kubelet's, it opens a connection per probe: one kept
/// from an earlier probe may lead to a process that is gone.
fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::install_tls_provider();
            reqwest::Client::builder()
                .tls_certs_only(Vec::new())
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_else(|error| panic!("a plain HTTP client always builds: {error}"))
        })
        .clone()
}

fn action(probe: &Probe, container: &Container, pod_ip: Ipv4Addr) -> anyhow::Result<Action> {
    if let Some(get) = &probe.http_get {
        let host = get.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let port = port(&get.port, container)?;
        let path = get.path.as_deref().unwrap_or("/");
        let slash = if path.starts_with('/') { "" } else { "/" };
        return Ok(Action::Http(format!("{scheme}://{host}:{port}{slash}{path}")));
    }
    if let Some(socket) = &probe.tcp_socket {
        let host = match &socket.host {
            Some(host) => host.parse().with_context(|| format!("tcpSocket host {host} is not an IPv4 address"))?,
            None => pod_ip,
        };
        return Ok(Action::Tcp(SocketAddr::from((host, port(&socket.port, container)?))));
    }
    bail!("unsupported probe (the pod runner has httpGet and tcpSocket)")
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port(port: &IntOrString, container: &Container) -> anyhow::Result<u16> {
    let number = match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|port| port.name.as_deref() == Some(name.as_str()))
            .map(|port| port.container_port)
            .with_context(|| format!("the container has no port named {name}"))?,
    };
    u16::try_from(number).with_context(|| format!("port {number} is out of range"))
}
