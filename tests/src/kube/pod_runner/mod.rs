//! The pod runner: the kubelet (and scheduler) of a test control plane.
//!
//! A watch on every Pod of the API server feeds one supervisor task per namespace and name
//! ([`pod`]), so a slow Pod never holds up another. Each supervisor binds its Pod to this runner's
//! Node, gives it a network namespace ([`network`]), materialises its volumes ([`volumes`]), runs
//! its first container's command as a host process ([`process`]), probes it ([`probe`]) and
//! writes the Pod's status back.
//!
//! Under the runner's root: `logs/<namespace>_<pod>.log` (the process's output across restarts,
//! with the runner's own notes), `pods/<namespace>_<pod>_<uid>/` (a Pod's ConfigMap, Secret and
//! emptyDir volumes, removed with the Pod) and `claims/<namespace>/<claim>/` (persistent volume
//! claims, kept for the runner's life).

mod network;
mod pod;
mod probe;
mod process;
mod volumes;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{Node, Pod},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use nix::sys::signal::Signal;
use tokio::{
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use self::network::Network;

/// The Node every Pod is bound to.
const NODE_NAME: &str = "pod-runner";

/// Where a [`PodRunner`] keeps its files and which host executables stand for which commands.
#[derive(Debug, Clone)]
pub struct PodRunnerConfig {
    /// Folder for logs, volumes and claims (see the module docs); created if missing.
    pub root: PathBuf,
    /// Host executable for each command name a container may run (`"bcos-node"` →
    /// `target/debug/bcos-node`). A container's command is looked up as written and by its file
    /// name; without a command, the image's name (`bcos/bcos-node:v1` → `bcos-node`) stands for
    /// the image's entrypoint. Absolute commands that exist and commands on the PATH need no entry.
    pub executables: HashMap<String, PathBuf>,
}

/// Runs every Pod of an API server as a host process, as a kubelet would run its containers.
/// Needs root. Dropping it kills every process and removes every network namespace it made.
pub struct PodRunner {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl PodRunner {
    /// Registers the runner's Node and starts running Pods (must run inside a Tokio runtime,
    /// which does the work).
    pub async fn start(client: Client, config: PodRunnerConfig) -> anyhow::Result<Self> {
        for folder in ["logs", "pods", "claims"] {
            let path = config.root.join(folder);
            std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        let network = tokio::task::spawn_blocking(Network::create).await.context("creating the Pod network")??;
        if let Err(error) = register_node(&client, &network).await {
            network.close();
            return Err(error);
        }
        let shared = Arc::new(Shared { client, config, network, processes: Mutex::default() });
        let task = tokio::spawn(run_pods(shared.clone()));
        Ok(Self { shared, task })
    }

    /// The address of Pod `namespace/name` while it has a network namespace; the test process
    /// reaches it directly. A Pod keeps its address across recreations under the same name.
    pub fn pod_ip(&self, namespace: &str, name: &str) -> Option<IpAddr> {
        self.shared.network.address(&PodKey::new(namespace, name)).map(IpAddr::V4)
    }

    /// The log of Pod `namespace/name`: its process's stdout and stderr across restarts and
    /// recreations, with the runner's notes about it.
    pub fn log_file(&self, namespace: &str, name: &str) -> PathBuf {
        self.shared.log_file(&PodKey::new(namespace, name))
    }

    /// Kills the process of Pod `namespace/name` with SIGKILL, as a crash would; the runner then
    /// restarts it as its restart policy says.
    pub fn kill(&self, namespace: &str, name: &str) -> anyhow::Result<()> {
        let key = PodKey::new(namespace, name);
        match self.shared.processes().pids.get(&key) {
            Some(&pid) => {
                process::signal_group(pid, Signal::SIGKILL);
                Ok(())
            }
            None => bail!("Pod {key} has no running process"),
        }
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        self.task.abort();
        {
            let mut processes = self.shared.processes();
            processes.closed = true;
            for &pid in processes.pids.values() {
                process::signal_group(pid, Signal::SIGKILL);
            }
        }
        self.shared.network.close();
    }
}

/// What every supervisor shares.
struct Shared {
    client: Client,
    config: PodRunnerConfig,
    network: Network,
    processes: Mutex<Processes>,
}

#[derive(Default)]
struct Processes {
    /// Set when the runner stops: no process may start after its cleanup.
    closed: bool,
    /// The running process of each Pod (the leader of its process group).
    pids: HashMap<PodKey, u32>,
}

impl Shared {
    fn processes(&self) -> MutexGuard<'_, Processes> {
        self.processes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log_file(&self, key: &PodKey) -> PathBuf {
        self.config.root.join("logs").join(format!("{}_{}.log", key.namespace, key.name))
    }

    /// Starts a Pod's process with `spawn` and records it, unless the runner is stopping.
    fn spawn(
        &self,
        key: &PodKey,
        spawn: impl FnOnce() -> anyhow::Result<tokio::process::Child>,
    ) -> anyhow::Result<(tokio::process::Child, u32)> {
        let mut processes = self.processes();
        if processes.closed {
            bail!("the pod runner is stopping");
        }
        let child = spawn()?;
        let pid = child.id().context("the process is gone already")?;
        processes.pids.insert(key.clone(), pid);
        Ok((child, pid))
    }

    fn forget_process(&self, key: &PodKey) {
        self.processes().pids.remove(key);
    }
}

/// A Pod's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PodKey {
    namespace: String,
    name: String,
}

impl PodKey {
    fn new(namespace: &str, name: &str) -> Self {
        Self { namespace: namespace.to_owned(), name: name.to_owned() }
    }

    fn of(pod: &Pod) -> Option<Self> {
        Some(Self::new(pod.metadata.namespace.as_deref()?, pod.metadata.name.as_deref()?))
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Creates the runner's Node, Ready, with the bridge's address as its own.
async fn register_node(client: &Client, network: &Network) -> anyhow::Result<()> {
    let nodes = Api::<Node>::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(NODE_NAME.to_owned()),
            labels: Some([("kubernetes.io/hostname".to_owned(), NODE_NAME.to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(error) => return Err(error).context("creating the pod runner's Node"),
    }
    let now = Time(Timestamp::now());
    let capacity = serde_json::json!({ "cpu": "2", "memory": "4Gi", "pods": "110" });
    let status = serde_json::json!({ "status": {
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "the pod runner runs Pods",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "addresses": [
            { "type": "InternalIP", "address": network.gateway().to_string() },
            { "type": "Hostname", "address": NODE_NAME },
        ],
        "capacity": capacity,
        "allocatable": capacity,
    }});
    nodes
        .patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(status))
        .await
        .context("marking the pod runner's Node Ready")?;
    Ok(())
}

/// Feeds every Pod the watch reports to its supervisor, starting supervisors as names appear.
/// Supervisors stay for the runner's life: a name may come back (a StatefulSet's Pods do).
async fn run_pods(shared: Arc<Shared>) {
    let mut supervisors: HashMap<PodKey, watch::Sender<Option<Pod>>> = HashMap::new();
    // Dropped with this task, which aborts every supervisor.
    let mut tasks = JoinSet::new();
    // Pods of a relist so far: those missing once it is done were deleted meanwhile.
    let mut relisted: Option<HashSet<PodKey>> = None;
    let mut events =
        watcher(Api::<Pod>::all(shared.client.clone()), watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let (key, pod) = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                let Some(key) = PodKey::of(&pod) else { continue };
                if let Some(relisted) = relisted.as_mut() {
                    relisted.insert(key.clone());
                }
                (key, Some(pod))
            }
            Ok(watcher::Event::Delete(pod)) => {
                let Some(key) = PodKey::of(&pod) else { continue };
                (key, None)
            }
            Ok(watcher::Event::Init) => {
                relisted = Some(HashSet::new());
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(relisted) = relisted.take() {
                    for (key, supervisor) in &supervisors {
                        if !relisted.contains(key) {
                            supervisor.send_replace(None);
                        }
                    }
                }
                continue;
            }
            Err(error) => {
                eprintln!("pod runner: watching Pods: {error}");
                continue;
            }
        };
        supervisors
            .entry(key.clone())
            .or_insert_with(|| {
                let (sender, receiver) = watch::channel(None);
                tasks.spawn(pod::supervise(shared.clone(), key, receiver));
                sender
            })
            .send_replace(pod);
    }
}
