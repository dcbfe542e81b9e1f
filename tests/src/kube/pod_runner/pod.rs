//! The kubelet's work for one Pod name: bind, network, volumes, process, probes, restarts,
//! status, graceful deletion.
//!
//! A supervisor task per namespace and name receives every version of the Pod object the watch
//! delivers (or `None` once it is gone) and runs one instance per Pod UID after the other, so a
//! StatefulSet's recreated Pod starts only when its predecessor's process and network namespace
//! are gone.

use std::{
    collections::HashSet, net::Ipv4Addr, os::unix::process::ExitStatusExt, path::PathBuf, process::ExitStatus,
    sync::Arc, time::Duration,
};

use anyhow::Context;
use k8s_openapi::{
    api::core::v1::{
        Binding, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, ObjectReference, Pod, PodCondition, PodIP, PodStatus,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions},
};
use nix::sys::signal::Signal;
use tokio::{
    process::Child,
    sync::watch,
    time::{Instant, sleep_until, timeout},
};

use super::{
    NODE_NAME, PodKey, Shared,
    probe::Prober,
    process::{self, Launch, PodFacts, signal_group},
    volumes::{self, Folders},
};

/// First wait before restarting an exited process or retrying a Pod that cannot start.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest such wait.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran this long before it exited restarts after [`BACKOFF_START`] again.
const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// Grace period of a Pod without `terminationGracePeriodSeconds` (the Kubernetes default).
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Grace for the process of a Pod object that vanished (force-deleted or replaced).
const VANISHED_GRACE: Duration = Duration::from_secs(2);

// Container waiting reasons, as a kubelet gives them.
/// A ConfigMap, Secret or key the container needs is missing, or a volume is unsupported.
const CONFIG_ERROR: &str = "CreateContainerConfigError";
/// The container's command has no host executable.
const CREATE_ERROR: &str = "CreateContainerError";
/// The host process could not be started.
const RUN_ERROR: &str = "RunContainerError";
/// The Pod's network namespace could not be made.
const NETWORK_NOT_READY: &str = "NetworkNotReady";

/// Runs every Pod that ever has this namespace and name, one UID after the other, until the
/// runner stops (`pods` closes).
pub(super) async fn supervise(shared: Arc<Shared>, key: PodKey, mut pods: watch::Receiver<Option<Pod>>) {
    let mut finished: HashSet<String> = HashSet::new();
    loop {
        let pod = loop {
            let runnable = pods.borrow_and_update().clone().filter(|pod| {
                let spec = pod.spec.as_ref();
                let node = spec.and_then(|spec| spec.node_name.as_deref());
                let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                !finished.contains(uid)
                    && node.is_none_or(|node| node == NODE_NAME)
                    && !matches!(phase, Some("Succeeded" | "Failed"))
            });
            if let Some(pod) = runnable {
                break pod;
            }
            if pods.changed().await.is_err() {
                return;
            }
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let instance = Instance::new(shared.clone(), key.clone(), pod);
        if instance.pod.metadata.deletion_timestamp.is_some() {
            // Deleted while no runner ran it: only the final deletion is left to do.
            instance.finish(End::Deleted).await;
        } else {
            instance.run(&mut pods).await;
        }
        finished.insert(uid);
    }
}

/// How a Pod's life on this runner ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// It got a deletion timestamp: the runner finishes the deletion once the process stopped.
    Deleted,
    /// Its object is gone, or replaced by another Pod of the same name.
    Vanished,
}

/// Why a process could not start: a container waiting reason and the error.
struct StartFailure {
    reason: &'static str,
    error: anyhow::Error,
}

fn failure(reason: &'static str) -> impl FnOnce(anyhow::Error) -> StartFailure {
    move |error| StartFailure { reason, error }
}

/// One Pod (one UID) on this runner.
struct Instance {
    shared: Arc<Shared>,
    key: PodKey,
    /// The latest version of the Pod object.
    pod: Pod,
    uid: String,
    api: Api<Pod>,
    /// The Pod's own folder, for its ConfigMap, Secret and emptyDir volumes.
    folder: PathBuf,
    log: PathBuf,
    /// The Pod's network namespace and address, once it has them.
    network: Option<(String, Ipv4Addr)>,
    /// When the runner took the Pod: its start time and when it was scheduled and initialised.
    accepted: Time,
    phase: &'static str,
    state: ContainerState,
    last_state: Option<ContainerStateTerminated>,
    restarts: i32,
    ready: bool,
    ready_changed: Time,
    /// The status last written to the API server.
    reported: Option<PodStatus>,
}

impl Instance {
    fn new(shared: Arc<Shared>, key: PodKey, pod: Pod) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api = Api::namespaced(shared.client.clone(), &key.namespace);
        let folder = shared.config.root.join("pods").join(format!("{}_{}_{uid}", key.namespace, key.name));
        let log = shared.log_file(&key);
        let now = Time(Timestamp::now());
        Self {
            shared,
            key,
            pod,
            uid,
            api,
            folder,
            log,
            network: None,
            accepted: now.clone(),
            phase: "Pending",
            state: waiting("ContainerCreating", None),
            last_state: None,
            restarts: 0,
            ready: false,
            ready_changed: now,
            reported: None,
        }
    }

    async fn run(mut self, pods: &mut watch::Receiver<Option<Pod>>) {
        self.note("accepted");
        let end = self.live(pods).await;
        self.finish(end).await;
    }

    /// Binds, attaches and runs the Pod until it is deleted or vanishes.
    async fn live(&mut self, pods: &mut watch::Receiver<Option<Pod>>) -> End {
        let mut backoff = Backoff::default();
        while let Err(error) = self.bind().await {
            self.note(&format!("binding to node {NODE_NAME} failed: {error:#}"));
            if let Some(end) = self.pause(pods, backoff.next()).await {
                return end;
            }
        }
        while let Err(error) = self.attach().await {
            self.note(&format!("{error:#}"));
            self.state = waiting(NETWORK_NOT_READY, Some(format!("{error:#}")));
            self.report().await;
            if let Some(end) = self.pause(pods, backoff.next()).await {
                return end;
            }
        }
        backoff = Backoff::default();
        loop {
            let (mut child, pid, container) = match self.start().await {
                Ok(started) => started,
                Err(StartFailure { reason, error }) => {
                    self.note(&format!("cannot start: {reason}: {error:#}"));
                    self.state = waiting(reason, Some(format!("{error:#}")));
                    self.report().await;
                    if let Some(end) = self.pause(pods, backoff.next()).await {
                        return end;
                    }
                    continue;
                }
            };
            let started = Instant::now();
            let (exit, end) = self.watch(&mut child, pid, &container, pods).await;
            // Whatever the process left behind goes with it, as with a container.
            signal_group(pid, Signal::SIGKILL);
            self.shared.forget_process(&self.key);
            self.terminated(exit);
            if let Some(end) = end {
                return end;
            }
            let succeeded = exit.is_some_and(|exit| exit.success());
            let policy = self.pod.spec.as_ref().and_then(|spec| spec.restart_policy.as_deref()).unwrap_or("Always");
            if policy == "Never" || (policy == "OnFailure" && succeeded) {
                self.phase = if succeeded { "Succeeded" } else { "Failed" };
                self.report().await;
                loop {
                    if let Some(end) = self.pause(pods, Duration::from_secs(3600)).await {
                        return end;
                    }
                }
            }
            if started.elapsed() >= BACKOFF_RESET {
                backoff = Backoff::default();
            }
            let delay = backoff.next();
            self.restarts += 1;
            self.state = waiting("CrashLoopBackOff", Some(format!("back-off {delay:?} restarting the exited process")));
            self.report().await;
            if let Some(end) = self.pause(pods, delay).await {
                return end;
            }
        }
    }

    /// Stops using the Pod's network and folder and, for a deleted Pod, finishes the deletion.
    async fn finish(self, end: End) {
        let shared = self.shared.clone();
        let key = self.key.clone();
        match tokio::task::spawn_blocking(move || shared.network.detach(&key)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => self.note(&format!("removing the network: {error:#}")),
            Err(error) => self.note(&format!("removing the network: {error}")),
        }
        if let Err(error) = std::fs::remove_dir_all(&self.folder)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            self.note(&format!("removing {}: {error}", self.folder.display()));
        }
        if end == End::Deleted {
            // The kubelet's last word: grace period 0 removes the object at once.
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
                ..DeleteParams::default()
            };
            match self.api.delete(&self.key.name, &params).await {
                Ok(_) => {}
                // Gone already, or replaced by a Pod of the same name.
                Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => {}
                Err(error) => self.note(&format!("deleting the Pod: {error}")),
            }
        }
        self.note(&format!("stopped ({end:?})"));
    }

    async fn bind(&self) -> anyhow::Result<()> {
        if self.pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).is_some() {
            return Ok(());
        }
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(self.key.name.clone()),
                namespace: Some(self.key.namespace.clone()),
                // Binds this Pod only, never a successor of the same name.
                uid: Some(self.uid.clone()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Node".to_owned()),
                name: Some(NODE_NAME.to_owned()),
                ..ObjectReference::default()
            },
        };
        let bound = self
            .api
            .create_subresource::<_, serde_json::Value>("binding", &self.key.name, &PostParams::default(), &binding)
            .await;
        match bound {
            // Conflict: bound already (to this node, or the Pod would not have reached us).
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    async fn attach(&mut self) -> anyhow::Result<()> {
        let spec = self.pod.spec.as_ref();
        let hostname = spec.and_then(|spec| spec.hostname.clone());
        let subdomain = spec.and_then(|spec| spec.subdomain.clone());
        let shared = self.shared.clone();
        let key = self.key.clone();
        let attached =
            tokio::task::spawn_blocking(move || shared.network.attach(&key, hostname.as_deref(), subdomain.as_deref()))
                .await
                .context("attaching the network")??;
        self.note(&format!("network namespace {}, address {}", attached.0, attached.1));
        self.network = Some(attached);
        Ok(())
    }

    /// Prepares and starts the first container's process; returns it, its pid and the container.
    async fn start(&mut self) -> Result<(Child, u32, Container), StartFailure> {
        let (netns, pod_ip) =
            self.network.clone().context("the Pod has no network yet").map_err(failure(NETWORK_NOT_READY))?;
        let container = self.container().map_err(failure(CONFIG_ERROR))?;
        let client = &self.shared.client;
        let facts = PodFacts { pod: &self.pod, pod_ip, host_ip: self.shared.network.gateway(), node_name: NODE_NAME };
        let env = process::environment(client, &container, &facts).await.map_err(failure(CONFIG_ERROR))?;
        let folders = Folders { pod: &self.folder, claims: &self.shared.config.root.join("claims") };
        let mounts = volumes::prepare(client, &self.pod, &container, &folders).await.map_err(failure(CONFIG_ERROR))?;
        let (program, args) =
            process::program(&container, &env, &self.shared.config.executables).map_err(failure(CREATE_ERROR))?;
        let spec = self.pod.spec.as_ref();
        let hostname = spec.and_then(|spec| spec.hostname.clone()).unwrap_or_else(|| self.key.name.clone());
        let launch = Launch { program, args, env, working_dir: container.working_dir.clone(), mounts };
        self.note(&format!("starting {}", command_line(&launch)));
        let (child, pid) = self
            .shared
            .spawn(&self.key, || process::spawn(&netns, &hostname, &launch, &self.log))
            .map_err(failure(RUN_ERROR))?;
        self.phase = "Running";
        self.state = ContainerState {
            running: Some(ContainerStateRunning { started_at: Some(Time(Timestamp::now())) }),
            ..ContainerState::default()
        };
        Ok((child, pid, container))
    }

    fn container(&self) -> anyhow::Result<Container> {
        self.pod.spec.as_ref().and_then(|spec| spec.containers.first()).cloned().context("the Pod has no container")
    }

    /// Probes the running process until it exits (its exit status), a failing liveness probe
    /// stops it (the same), or the Pod ends (the status and how it ended).
    async fn watch(
        &mut self,
        child: &mut Child,
        pid: u32,
        container: &Container,
        pods: &mut watch::Receiver<Option<Pod>>,
    ) -> (Option<ExitStatus>, Option<End>) {
        let pod_ip = self.network.as_ref().map_or(Ipv4Addr::UNSPECIFIED, |network| network.1);
        let mut readiness =
            container.readiness_probe.as_ref().map(|probe| Prober::new(probe, container, pod_ip, false));
        let mut liveness = container.liveness_probe.as_ref().map(|probe| Prober::new(probe, container, pod_ip, true));
        self.set_ready(readiness.is_none());
        self.report().await;
        loop {
            let due = [readiness.as_ref(), liveness.as_ref()].into_iter().flatten().map(Prober::next).min();
            let due = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                exit = child.wait() => return (exit.ok(), None),
                changed = pods.changed() => {
                    let end = if changed.is_err() { Some(End::Vanished) } else { self.observe(pods) };
                    if let Some(end) = end {
                        let grace = if end == End::Deleted { self.grace() } else { VANISHED_GRACE };
                        return (self.stop(child, pid, grace).await, Some(end));
                    }
                }
                () = sleep_until(due) => {
                    if let Some(probe) = readiness.as_mut() {
                        match probe.run_if_due().await {
                            Ok(true) => self.note("readiness probe passes"),
                            Err(error) => self.note(&format!("readiness probe fails: {error}")),
                            Ok(false) => {}
                        }
                        self.set_ready(probe.passing());
                    }
                    if let Some(probe) = liveness.as_mut()
                        && let Err(error) = probe.run_if_due().await
                    {
                        self.note(&format!("liveness probe fails, restarting: {error}"));
                        self.set_ready(false);
                        return (self.stop(child, pid, self.grace()).await, None);
                    }
                    self.report().await;
                }
            }
        }
    }

    /// SIGTERM, then SIGKILL once `grace` has passed.
    async fn stop(&self, child: &mut Child, pid: u32, grace: Duration) -> Option<ExitStatus> {
        signal_group(pid, Signal::SIGTERM);
        match timeout(grace, child.wait()).await {
            Ok(exit) => exit.ok(),
            Err(_) => {
                self.note(&format!("still running {grace:?} after SIGTERM: SIGKILL"));
                signal_group(pid, Signal::SIGKILL);
                child.wait().await.ok()
            }
        }
    }

    /// Waits `duration` unless the Pod ends meanwhile.
    async fn pause(&mut self, pods: &mut watch::Receiver<Option<Pod>>, duration: Duration) -> Option<End> {
        let deadline = Instant::now() + duration;
        loop {
            tokio::select! {
                () = sleep_until(deadline) => return None,
                changed = pods.changed() => {
                    if changed.is_err() {
                        return Some(End::Vanished);
                    }
                    if let Some(end) = self.observe(pods) {
                        return Some(end);
                    }
                }
            }
        }
    }

    /// Takes the latest Pod object; tells whether the Pod ended.
    fn observe(&mut self, pods: &mut watch::Receiver<Option<Pod>>) -> Option<End> {
        let latest = pods.borrow_and_update().clone();
        match latest {
            Some(pod) if pod.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                let deleted = pod.metadata.deletion_timestamp.is_some();
                self.pod = pod;
                deleted.then_some(End::Deleted)
            }
            _ => Some(End::Vanished),
        }
    }

    /// The grace period of the Pod's deletion, or else of its spec.
    fn grace(&self) -> Duration {
        let seconds = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref()?.termination_grace_period_seconds);
        seconds.and_then(|seconds| u64::try_from(seconds).ok()).map_or(DEFAULT_GRACE, Duration::from_secs)
    }

    fn set_ready(&mut self, ready: bool) {
        if ready != self.ready {
            self.ready = ready;
            self.ready_changed = Time(Timestamp::now());
        }
    }

    fn terminated(&mut self, exit: Option<ExitStatus>) {
        let started_at = self.state.running.as_ref().and_then(|running| running.started_at.clone());
        // Like a container runtime: 128 + the signal for a killed process.
        let exit_code = exit.and_then(|exit| exit.code().or_else(|| exit.signal().map(|signal| 128 + signal)));
        let exit_code = exit_code.unwrap_or(-1);
        let terminated = ContainerStateTerminated {
            exit_code,
            signal: exit.and_then(|exit| exit.signal()),
            reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.to_owned()),
            started_at,
            finished_at: Some(Time(Timestamp::now())),
            ..ContainerStateTerminated::default()
        };
        self.note(&format!("process exited with code {exit_code}"));
        self.set_ready(false);
        self.state = ContainerState { terminated: Some(terminated.clone()), ..ContainerState::default() };
        self.last_state = Some(terminated);
    }

    fn status(&self) -> PodStatus {
        let condition = |type_: &str, status: bool, at: &Time| PodCondition {
            type_: type_.to_owned(),
            status: if status { "True" } else { "False" }.to_owned(),
            last_transition_time: Some(at.clone()),
            ..PodCondition::default()
        };
        let pod_ip = self.network.as_ref().map(|network| network.1.to_string());
        let container = self.container().ok();
        let container_statuses = container.map(|container| {
            let image = container.image.unwrap_or_default();
            vec![ContainerStatus {
                name: container.name,
                image_id: image.clone(),
                image,
                ready: self.ready,
                started: Some(self.state.running.is_some()),
                restart_count: self.restarts,
                state: Some(self.state.clone()),
                last_state: self
                    .last_state
                    .clone()
                    .map(|terminated| ContainerState { terminated: Some(terminated), ..ContainerState::default() }),
                ..ContainerStatus::default()
            }]
        });
        PodStatus {
            phase: Some(self.phase.to_owned()),
            host_ip: Some(self.shared.network.gateway().to_string()),
            pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
            pod_ip,
            start_time: Some(self.accepted.clone()),
            conditions: Some(vec![
                condition("PodScheduled", true, &self.accepted),
                condition("Initialized", true, &self.accepted),
                condition("ContainersReady", self.ready, &self.ready_changed),
                condition("Ready", self.ready, &self.ready_changed),
            ]),
            container_statuses,
            ..PodStatus::default()
        }
    }

    /// Writes the status to the API server if it changed since the last write.
    async fn report(&mut self) {
        let status = self.status();
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        let patch = Patch::Merge(serde_json::json!({ "status": &status }));
        match self.api.patch_status(&self.key.name, &PatchParams::default(), &patch).await {
            Ok(_) => self.reported = Some(status),
            // Gone: the watch tells the supervisor.
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(error) => self.note(&format!("writing the Pod's status: {error}")),
        }
    }

    /// Appends a line about the Pod to its log, between the lines of its process.
    fn note(&self, message: &str) {
        use std::io::Write;
        let line = format!("[pod-runner {}] {}: {message}\n", Timestamp::now(), self.uid);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut log| log.write_all(line.as_bytes()));
        if let Err(error) = written {
            eprintln!("pod runner: {}: {message} (and writing {}: {error})", self.key, self.log.display());
        }
    }
}

/// `program args...` for the log, with long arguments (inline scripts) cut short.
fn command_line(launch: &Launch) -> String {
    const LONGEST: usize = 60;
    let mut line = launch.program.display().to_string();
    for arg in &launch.args {
        line.push(' ');
        match arg.char_indices().nth(LONGEST) {
            Some((end, _)) => line.push_str(&format!("{}…", &arg[..end]).replace('\n', " ")),
            None => line.push_str(&arg.replace('\n', " ")),
        }
    }
    line
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.to_owned()), message }),
        ..ContainerState::default()
    }
}

/// The kubelet's restart backoff: doubling from [`BACKOFF_START`] up to [`BACKOFF_MAX`].
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_START }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(BACKOFF_MAX);
        delay
    }
}
