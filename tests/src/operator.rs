//! The operator as a process against a test control plane, as it runs in its Deployment: a
//! kubeconfig instead of the in-cluster service account, everything else unchanged.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context, bail};

/// A running `bcos-operator run`; dropped, it gets SIGTERM (a graceful shutdown) and is reaped.
pub struct OperatorProcess {
    child: Child,
    log: PathBuf,
    http: String,
}

impl OperatorProcess {
    /// Starts the operator on `kubeconfig`, electing its leader in `namespace` (as its Pod there
    /// would), logging to `log`, serving its endpoints on a free loopback port.
    pub fn start(kubeconfig: &Path, namespace: &str, log: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary("bcos-operator", "BCOS_OPERATOR_BIN")?)
            .args(["run", "--log-format", "text", "--http-listen", &format!("127.0.0.1:{port}")])
            .args(["--lease-namespace", namespace, "--lease-name", "bcos-operator"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,bcos_operator=debug,kube=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting bcos-operator")?;
        Ok(Self { child, log: log.to_owned(), http: format!("http://127.0.0.1:{port}") })
    }

    /// `http://host:port` of its /metrics, /healthz and /readyz.
    pub fn http(&self) -> &str {
        &self.http
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks it to stop (SIGTERM) and waits; whether it exited successfully.
    pub fn stop(&mut self) -> anyhow::Result<bool> {
        terminate(&mut self.child)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child);
    }
}

/// How long the operator may take to stop after SIGTERM (its Pod's grace period).
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`]; whether it exited
/// successfully on its own.
fn terminate(child: &mut Child) -> anyhow::Result<bool> {
    if let Some(status) = child.try_wait()? {
        return Ok(status.success());
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill()?;
    child.wait()?;
    Ok(false)
}

/// A binary of this workspace: from `env`, or else from the Cargo target directory this test
/// binary was built in.
pub fn binary(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the test binary")?;
    let profile_dir = exe.parent().and_then(Path::parent).context("unexpected test binary location")?;
    let candidate = profile_dir.join(name);
    if !candidate.exists() {
        bail!("{} not found: run `cargo build --bins` first or set {env}", candidate.display());
    }
    Ok(candidate)
}
