//! A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager v1.20) on
//! loopback, started and stopped by `shared/k8s/control-plane.sh`.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, Config,
    api::{ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

/// How long a fresh namespace may take to get its `default` ServiceAccount and that account's
/// token (generous: 2 shared cores, and the controller manager starts after `up` returns).
const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(120);

/// A running control plane in a temporary directory. Dropping it stops every process it started.
pub struct ControlPlane {
    script: PathBuf,
    kubeconfig: PathBuf,
    /// Holds etcd's data, the certificates, logs and pid files; removed after `down`.
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager (10-20 s; builds the binaries first
    /// if `control-plane.sh build` never ran on this machine) and waits until Pods can be created
    /// in the `default` namespace.
    ///
    /// The script is `$BCOS_SHARED_DIR/k8s/control-plane.sh`, or else the one in `shared/` beside
    /// the repository.
    pub async fn start() -> anyhow::Result<Self> {
        let shared = match std::env::var_os("BCOS_SHARED_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        };
        let script = shared.join("k8s/control-plane.sh");
        if !script.exists() {
            bail!("{} not found: set BCOS_SHARED_DIR to the folder that holds k8s/control-plane.sh", script.display());
        }
        let dir =
            tempfile::Builder::new().prefix("bcos-k8s-").tempdir().context("creating the control plane's directory")?;
        let control_plane = Self { kubeconfig: dir.path().join("kubeconfig"), script, dir };
        // From here on, dropping `control_plane` stops whatever `up` got to start.
        let output = tokio::process::Command::new(&control_plane.script)
            .arg("up")
            .arg(control_plane.dir.path())
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {} up", control_plane.script.display()))?;
        if !output.status.success() {
            bail!("control-plane.sh up failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        if !control_plane.kubeconfig.exists() {
            bail!("control-plane.sh up wrote no kubeconfig: {}", String::from_utf8_lossy(&output.stderr));
        }
        if let Err(error) = control_plane.wait_for_service_account("default").await {
            let logs = ["apiserver", "controller-manager"].map(|name| control_plane.log_tail(name)).join("\n");
            return Err(error.context(logs));
        }
        Ok(control_plane)
    }

    /// The admin kubeconfig of this control plane.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client with cluster-admin rights.
    pub async fn client(&self) -> anyhow::Result<Client> {
        // kube is built with rustls but without a provider of its own.
        crate::install_tls_provider();
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).context("reading the kubeconfig")?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context("loading the kubeconfig")?;
        Client::try_from(config).context("building a Kubernetes client")
    }

    /// Runs `kubectl --kubeconfig <this> args...` (the `kubectl` on PATH) and returns its stdout;
    /// fails with its stderr when it exits unsuccessfully. kubectl is newer than the API server,
    /// so its stderr may carry version-skew warnings.
    pub async fn kubectl<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let output = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running kubectl (is it on PATH? scripts/setup.sh checks)")?;
        let line = args.iter().map(|arg| arg.as_ref().to_string_lossy()).collect::<Vec<_>>().join(" ");
        if !output.status.success() {
            bail!("kubectl {line} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
        }
        String::from_utf8(output.stdout).with_context(|| format!("kubectl {line} printed something other than UTF-8"))
    }

    /// Creates namespace `name` and waits until Pods can be created in it.
    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        let namespace = Namespace {
            metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client().await?)
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        self.wait_for_service_account(name).await
    }

    /// A kubeconfig that authenticates as ServiceAccount `namespace/account` with its token, so a
    /// process gets exactly the rights RBAC gives that account (as a Pod running as it would).
    pub async fn service_account_kubeconfig(&self, namespace: &str, account: &str) -> anyhow::Result<PathBuf> {
        let account_obj = self.wait_for_service_account_named(namespace, account).await?;
        let secret_name = account_obj
            .secrets
            .iter()
            .flatten()
            .find_map(|reference| reference.name.clone())
            .context("the ServiceAccount has no token Secret")?;
        let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client().await?, namespace);
        let secret = secrets.get(&secret_name).await.with_context(|| format!("reading Secret {secret_name}"))?;
        let token = secret.data.as_ref().and_then(|data| data.get("token")).context("the token Secret has no token")?;
        let token = String::from_utf8(token.0.clone()).context("the token is not text")?;
        let admin = Kubeconfig::read_from(&self.kubeconfig).context("reading the kubeconfig")?;
        let cluster =
            admin.clusters.first().and_then(|named| named.cluster.clone()).context("no cluster in the kubeconfig")?;
        let server = cluster.server.context("no server in the kubeconfig")?;
        let ca = cluster.certificate_authority.context("no certificate authority in the kubeconfig")?;
        let file = self.dir.path().join(format!("{namespace}-{account}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{server}\", certificate-authority: \"{ca}\"}}\nusers:\n- name: {account}\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: {account}}}\ncurrent-context: test\n"
        );
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        Ok(file)
    }

    /// The last lines of the control plane's `<name>.log`, for error messages.
    fn log_tail(&self, name: &str) -> String {
        let path = self.dir.path().join(format!("{name}.log"));
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!("{}:\n{}", path.display(), lines[lines.len().saturating_sub(20)..].join("\n"))
    }

    /// Whether the process `up` recorded in `<name>.pid` still runs.
    fn running(&self, name: &str) -> bool {
        let pid = std::fs::read_to_string(self.dir.path().join(format!("{name}.pid")));
        pid.ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    /// The API server of v1.20 refuses Pods until their namespace's `default` ServiceAccount
    /// exists and has a token Secret (its admission mounts that Secret into every Pod), which the
    /// controller manager creates.
    async fn wait_for_service_account(&self, namespace: &str) -> anyhow::Result<()> {
        self.wait_for_service_account_named(namespace, "default").await.map(drop)
    }

    /// Waits until ServiceAccount `namespace/name` exists with its token Secret.
    async fn wait_for_service_account_named(&self, namespace: &str, name: &str) -> anyhow::Result<ServiceAccount> {
        let accounts = Api::<ServiceAccount>::namespaced(self.client().await?, namespace);
        let what = format!("ServiceAccount {name} of namespace {namespace} and its token");
        crate::wait_for(&what, SERVICE_ACCOUNT_TIMEOUT, || {
            let accounts = accounts.clone();
            async move {
                if !self.running("controller-manager") {
                    // v1.20 also listens on the fixed port 10252, so it dies while another
                    // control plane runs on this machine.
                    bail!("kube-controller-manager exited (is another control plane running here?)");
                }
                // The API server may still be settling; only the deadline makes that an error.
                let account = accounts.get_opt(name).await.ok().flatten();
                Ok(account.filter(|account| account.secrets.as_ref().is_some_and(|secrets| !secrets.is_empty())))
            }
        })
        .await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let stopped = std::process::Command::new(&self.script)
            .arg("down")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if !stopped.as_ref().is_ok_and(|status| status.success()) {
            eprintln!("control-plane.sh down {} failed: {stopped:?}", self.dir.path().display());
        }
    }
}
