//! The pod runner plays the kubelet for a real control plane: a StatefulSet's Pods run, become
//! Ready, find each other by their headless Service's names, see their ConfigMap, Secret and
//! claim at their mount paths, come back on their data after a deletion and after a crash; Pods
//! that cannot start say why and start once they can; a failing liveness probe restarts a Pod; a
//! Pod that must not restart ends Failed with its exit code.
//!
//! Needs root and `scripts/setup.sh` (the control plane's binaries, iproute2, kubectl).

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use bcos_tests::{
    kube::{ControlPlane, PodRunner, PodRunnerConfig},
    wait_for,
};
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, ContainerStatus, Pod, Secret, Service},
    },
    serde::de::DeserializeOwned,
};
use kube::{
    Api, Client,
    api::{PostParams, Resource},
};
use serde_json::json;

/// Generous: two shared cores run the control plane, the runner and the Pods.
const TIMEOUT: Duration = Duration::from_secs(180);
const IMAGE: &str = "registry.example/demo-server:v7";

/// A small HTTP server: `/readyz`; `/whoami`; `/peer` fetches `/whoami` of `$PEER` by name;
/// `/files` shows the mounted ConfigMap and Secret; `/counter` is how many times it started on
/// its claim; `/image` is the image the runner says it runs.
const SERVER: &str = r#"
import http.server, os, socket, sys, urllib.request
pod, pod_ip = sys.argv[1], sys.argv[2]
counter = os.path.join(os.environ["DATA_DIR"], "counter")
count = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
with open(counter, "w") as f:
    f.write(str(count))
print(pod, pod_ip, "start", count, flush=True)

def read(path):
    with open(path) as f:
        return f.read()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            if self.path == "/readyz":
                body = "ok"
            elif self.path == "/whoami":
                body = pod + " " + pod_ip
            elif self.path == "/counter":
                body = str(count)
            elif self.path == "/image":
                body = os.environ["BCOS_POD_IMAGE"]
            elif self.path == "/files":
                mode = os.stat("/etc/demo/secret/password").st_mode & 0o777
                body = read("/etc/demo/config/greeting") + "|" + read("/etc/demo/secret/password") + "|" + oct(mode)
            elif self.path == "/peer":
                peer = os.environ["PEER"]
                address = socket.getaddrinfo(peer, 8080, socket.AF_INET)[0][4][0]
                with urllib.request.urlopen("http://%s:8080/whoami" % peer, timeout=10) as response:
                    body = address + " " + response.read().decode()
            else:
                self.send_error(404)
                return
            code = 200
        except Exception as error:
            body, code = repr(error), 500
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_find_each_other_keep_their_data_and_come_back() -> anyhow::Result<()> {
    let cluster = Cluster::start("demo", &["web-0", "web-1"]).await?;
    let result = statefulset_pods(&cluster).await;
    cluster.finish(result)
}

async fn statefulset_pods(cluster: &Cluster) -> anyhow::Result<()> {
    let Cluster { control_plane, runner, namespace, .. } = cluster;
    let namespace = *namespace;
    let client = control_plane.client().await?;
    create::<ConfigMap>(
        &client,
        namespace,
        json!({ "metadata": { "name": "demo-config" }, "data": { "greeting": "hello" } }),
    )
    .await?;
    create::<Secret>(
        &client,
        namespace,
        json!({ "metadata": { "name": "demo-secret" }, "stringData": { "password": "s3cret" } }),
    )
    .await?;
    let service = json!({
        "metadata": { "name": "web" },
        "spec": { "clusterIP": "None", "selector": { "app": "web" }, "ports": [{ "port": 8080 }] },
    });
    create::<Service>(&client, namespace, service).await?;
    create::<StatefulSet>(&client, namespace, web_statefulset(namespace)).await?;

    let sets = Api::<StatefulSet>::namespaced(client.clone(), namespace);
    wait_for("2 ready replicas", TIMEOUT, || async {
        let set = sets.get("web").await?;
        Ok((set.status.and_then(|status| status.ready_replicas) == Some(2)).then_some(()))
    })
    .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let mut addresses = HashMap::new();
    for name in ["web-0", "web-1"] {
        let pod = pods.get(name).await?;
        assert!(is_ready(&pod), "{name} is not Ready: {:?}", pod.status);
        let address = runner.pod_ip(namespace, name).context("a running Pod has an address")?;
        let reported = pod.status.and_then(|status| status.pod_ip);
        assert_eq!(reported, Some(address.to_string()), "{name}'s podIP");
        addresses.insert(name, address);
    }
    let web0 = addresses["web-0"];
    let web1 = addresses["web-1"];

    assert_eq!(get(web0, "/peer").await?, format!("{web1} web-1 {web1}"), "web-0 reaches web-1 by its DNS name");
    assert_eq!(get(web0, "/files").await?, "hello|s3cret|0o400");
    assert_eq!(get(web0, "/counter").await?, "1");
    assert_eq!(get(web1, "/image").await?, IMAGE);

    // Deleted, the Pod comes back (the StatefulSet controller recreates it) on its claim.
    let old_uid = pods.get("web-0").await?.meta().uid.clone();
    control_plane.kubectl(["delete", "pod", "web-0", "-n", namespace, "--timeout=120s"]).await?;
    wait_for("web-0 recreated and Ready", TIMEOUT, || async {
        let pod = pods.get_opt("web-0").await?;
        Ok(pod.filter(|pod| pod.meta().uid != old_uid && is_ready(pod)).map(drop))
    })
    .await?;
    assert_eq!(runner.pod_ip(namespace, "web-0"), Some(web0), "a Pod name keeps its address");
    assert_eq!(get(web0, "/counter").await?, "2", "the recreated Pod runs on the same claim");

    // Crashed, the process restarts in the same Pod on the same data.
    runner.kill(namespace, "web-1")?;
    wait_for("web-1 restarted and Ready", TIMEOUT, || async {
        let pod = pods.get("web-1").await?;
        Ok((container_status(&pod).is_some_and(|status| status.restart_count == 1) && is_ready(&pod)).then_some(()))
    })
    .await?;
    assert_eq!(get(web1, "/counter").await?, "2", "the restarted process runs on the same claim");
    let last_exit = container_status(&pods.get("web-1").await?)
        .and_then(|status| status.last_state?.terminated)
        .map(|terminated| terminated.exit_code);
    assert_eq!(last_exit, Some(137), "SIGKILL shows as exit code 137");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_cannot_start_say_why_failing_liveness_restarts_and_never_ends() -> anyhow::Result<()> {
    let cluster = Cluster::start("trouble", &["late", "unknown", "unhealthy", "once"]).await?;
    let result = troubled_pods(&cluster).await;
    cluster.finish(result)
}

async fn troubled_pods(cluster: &Cluster) -> anyhow::Result<()> {
    let Cluster { control_plane, runner, namespace, .. } = cluster;
    let namespace = *namespace;
    let client = control_plane.client().await?;
    let late = json!({
        "metadata": { "name": "late" },
        "spec": {
            "containers": [{
                "name": "main", "image": IMAGE,
                "command": ["python3", "-c", SERVER, "late", "$(POD_IP)"],
                "env": [
                    { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                    { "name": "DATA_DIR", "value": "/var/lib/late" },
                ],
                "readinessProbe": { "httpGet": { "path": "/readyz", "port": 8080 }, "periodSeconds": 1 },
                "volumeMounts": [
                    { "name": "config", "mountPath": "/etc/late" },
                    { "name": "scratch", "mountPath": "/var/lib/late" },
                ],
            }],
            "volumes": [
                { "name": "config", "configMap": { "name": "late-config" } },
                { "name": "scratch", "emptyDir": {} },
            ],
        },
    });
    create::<Pod>(&client, namespace, late).await?;
    let unknown = json!({
        "metadata": { "name": "unknown" },
        "spec": { "containers": [{ "name": "main", "image": IMAGE, "command": ["no-such-command"] }] },
    });
    create::<Pod>(&client, namespace, unknown).await?;
    // Nothing listens on port 9: the liveness probe fails from the start.
    let unhealthy = json!({
        "metadata": { "name": "unhealthy" },
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main", "image": IMAGE, "command": ["sleep", "3600"],
                "livenessProbe": { "tcpSocket": { "port": 9 }, "periodSeconds": 1, "failureThreshold": 2 },
            }],
        },
    });
    create::<Pod>(&client, namespace, unhealthy).await?;
    let once = json!({
        "metadata": { "name": "once" },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": IMAGE,
                "command": ["sh", "-c", "echo $(GREETING) from $HOSTNAME; exit 3"],
                "env": [{ "name": "GREETING", "value": "hi" }],
            }],
        },
    });
    create::<Pod>(&client, namespace, once).await?;

    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    for (name, reason) in [("late", "CreateContainerConfigError"), ("unknown", "CreateContainerError")] {
        wait_for(&format!("{name} waiting with {reason}"), TIMEOUT, || async {
            let pod = pods.get(name).await?;
            let waiting = container_status(&pod).and_then(|status| status.state?.waiting?.reason);
            Ok((waiting.as_deref() == Some(reason)).then_some(()))
        })
        .await?;
    }
    create::<ConfigMap>(&client, namespace, json!({ "metadata": { "name": "late-config" }, "data": { "k": "v" } }))
        .await?;
    wait_for("late Ready once its ConfigMap exists", TIMEOUT, || async {
        Ok(is_ready(&pods.get("late").await?).then_some(()))
    })
    .await?;

    let last_exit = wait_for("unhealthy restarted by its liveness probe", TIMEOUT, || async {
        let pod = pods.get("unhealthy").await?;
        let status = container_status(&pod);
        let restarts = status.as_ref().map_or(0, |status| status.restart_count);
        let last_exit = status.and_then(|status| status.last_state?.terminated).map(|terminated| terminated.exit_code);
        Ok((restarts >= 1).then_some(last_exit))
    })
    .await?;
    assert_eq!(last_exit, Some(143), "the liveness restart stops the process with SIGTERM");

    let exit_code = wait_for("once Failed", TIMEOUT, || async {
        let pod = pods.get("once").await?;
        let phase = pod.status.as_ref().and_then(|status| status.phase.clone());
        let terminated = container_status(&pod).and_then(|status| status.state?.terminated);
        Ok(terminated.filter(|_| phase.as_deref() == Some("Failed")).map(|terminated| terminated.exit_code))
    })
    .await?;
    assert_eq!(exit_code, 3);
    let log = std::fs::read_to_string(runner.log_file(namespace, "once"))?;
    assert!(log.contains("hi from once"), "the process's output is in its log:\n{log}");

    // A graceful deletion completes: the runner stops the process and removes the Pod.
    control_plane.kubectl(["delete", "pod", "unhealthy", "-n", namespace, "--timeout=120s"]).await?;
    assert!(pods.get_opt("unhealthy").await?.is_none(), "kubectl delete returns once the Pod is gone");
    assert_eq!(runner.pod_ip(namespace, "unhealthy"), None, "a deleted Pod's network is gone");
    Ok(())
}

/// A fresh control plane with one namespace and a pod runner. It prints the logs of the Pods a
/// test names when the test fails.
struct Cluster {
    // Dropped in this order: the runner's processes stop before the API server, which stops
    // before the next test may start another.
    runner: PodRunner,
    control_plane: ControlPlane,
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
    namespace: &'static str,
    pods: &'static [&'static str],
    _root: tempfile::TempDir,
}

/// Two control planes cannot run on one machine at once (the controller manager of v1.20 also
/// takes a fixed port), so tests that `cargo test` runs on parallel threads take turns; nextest
/// runs them one at a time anyway (test group `kube`).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Cluster {
    async fn start(namespace: &'static str, pods: &'static [&'static str]) -> anyhow::Result<Self> {
        let one_at_a_time = ONE_AT_A_TIME.lock().await;
        let control_plane = ControlPlane::start().await?;
        control_plane.create_namespace(namespace).await?;
        let root = tempfile::tempdir()?;
        let python = PathBuf::from("/usr/bin/python3");
        let executables =
            if python.exists() { HashMap::from([("python3".to_owned(), python)]) } else { HashMap::new() };
        let config = PodRunnerConfig { root: root.path().to_owned(), executables };
        let runner = PodRunner::start(control_plane.client().await?, config).await?;
        Ok(Self { runner, control_plane, _one_at_a_time: one_at_a_time, namespace, pods, _root: root })
    }

    /// `result`, after printing the Pods' logs if it is an error.
    fn finish(self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        if result.is_err() {
            self.print_logs();
        }
        result
    }

    fn print_logs(&self) {
        for pod in self.pods {
            let log = std::fs::read_to_string(self.runner.log_file(self.namespace, pod)).unwrap_or_default();
            eprintln!("---- log of {}/{pod} ----\n{log}", self.namespace);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failed assertion panics past `finish`.
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}

fn web_statefulset(namespace: &str) -> serde_json::Value {
    json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "serviceName": "web",
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "server",
                        "image": IMAGE,
                        "command": ["python3", "-c", SERVER, "$(POD_NAME)", "$(POD_IP)"],
                        "env": [
                            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                            { "name": "PEER", "value": format!("web-1.web.{namespace}.svc.cluster.local") },
                            { "name": "DATA_DIR", "value": "/var/lib/demo" },
                        ],
                        "ports": [{ "name": "http", "containerPort": 8080 }],
                        "readinessProbe": { "httpGet": { "path": "/readyz", "port": "http" }, "periodSeconds": 1 },
                        "volumeMounts": [
                            { "name": "data", "mountPath": "/var/lib/demo" },
                            { "name": "config", "mountPath": "/etc/demo/config" },
                            { "name": "secret", "mountPath": "/etc/demo/secret" },
                        ],
                    }],
                    "volumes": [
                        { "name": "config", "configMap": { "name": "demo-config" } },
                        { "name": "secret", "secret": { "secretName": "demo-secret", "defaultMode": 0o400 } },
                    ],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Mi" } } },
            }],
        },
    })
}

/// Creates the object `object` describes as a `K` in `namespace`.
async fn create<K>(client: &Client, namespace: &str, object: serde_json::Value) -> anyhow::Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object)?;
    Api::<K>::namespaced(client.clone(), namespace).create(&PostParams::default(), &object).await?;
    Ok(())
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_deref()).unwrap_or_default();
    conditions.iter().any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

fn container_status(pod: &Pod) -> Option<ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first().cloned()
}

/// `GET http://<address>:8080<path>`, which must answer 200.
async fn get(address: std::net::IpAddr, path: &str) -> anyhow::Result<String> {
    let url = format!("http://{address}:8080{path}");
    let response = bcos_tests::http_client().get(&url).timeout(Duration::from_secs(20)).send().await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {body}");
    }
    Ok(body)
}
