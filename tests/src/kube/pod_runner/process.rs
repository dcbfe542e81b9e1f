//! A container as a host process: its command mapped to a host executable, its environment and
//! `$(VAR)` references resolved as Kubernetes does, started in the Pod's network namespace with
//! its volumes bind-mounted at their `mountPath`s.
//!
//! `ip netns exec` gives the process a mount namespace of its own (to mount the namespace's
//! `/etc/netns` files over `/etc`); a small shell script then bind-mounts the volumes in that
//! namespace before it `exec`s the command, so nothing shows on the host but empty mountpoints.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use super::volumes::{Mount, secret_data};

/// Mounts the volumes, then runs the command. Arguments: the working directory (or ""), then
/// `dir|file source target` per mount, `--`, the targets to make read-only, `--`, the command.
/// Read-only remounts come last so mountpoints nested in a read-only volume can still be made.
const LAUNCHER: &str = r#"set -e
workdir=$1; shift
while [ "$1" != -- ]; do
  if [ "$1" = file ]; then
    [ -e "$3" ] || { mkdir -p "$(dirname "$3")"; : >"$3"; }
  else
    mkdir -p "$3"
  fi
  mount --bind "$2" "$3"
  shift 3
done
shift
while [ "$1" != -- ]; do
  mount -o remount,bind,ro "$1"
  shift
done
shift
if [ -n "$workdir" ]; then mkdir -p "$workdir"; cd "$workdir"; fi
exec "$@"
"#;

/// Everything needed to start a container's process.
pub(super) struct Launch {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) working_dir: Option<String>,
    pub(super) mounts: Vec<Mount>,
}

/// What the process of a Pod can learn about itself through `fieldRef`s.
pub(super) struct PodFacts<'a> {
    pub(super) pod: &'a Pod,
    pub(super) pod_ip: Ipv4Addr,
    pub(super) host_ip: Ipv4Addr,
    /// The Pod's node, which its `spec.nodeName` may not show yet right after binding.
    pub(super) node_name: &'a str,
}

/// The container's environment in order: `envFrom` sources, then `env` entries (each expanding
/// `$(VAR)` references to the variables before it), then `BCOS_POD_IMAGE`.
pub(super) async fn environment(
    client: &Client,
    container: &Container,
    facts: &PodFacts<'_>,
) -> anyhow::Result<Vec<(String, String)>> {
    let namespace = facts.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env: Vec<(String, String)> = Vec::new();
    for source in container.env_from.as_deref().unwrap_or_default() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        let values = if let Some(config_map) = &source.config_map_ref {
            let optional = config_map.optional.unwrap_or(false);
            match Api::<ConfigMap>::namespaced(client.clone(), namespace).get_opt(&config_map.name).await? {
                Some(found) => found.data.unwrap_or_default().into_iter().collect(),
                None if optional => Vec::new(),
                None => bail!("envFrom: ConfigMap {namespace}/{} not found", config_map.name),
            }
        } else if let Some(secret) = &source.secret_ref {
            let optional = secret.optional.unwrap_or(false);
            match Api::<Secret>::namespaced(client.clone(), namespace).get_opt(&secret.name).await? {
                Some(found) => secret_data(found)
                    .into_iter()
                    .map(|(key, value)| Ok((key, String::from_utf8(value)?)))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .with_context(|| format!("envFrom: Secret {namespace}/{}", secret.name))?,
                None if optional => Vec::new(),
                None => bail!("envFrom: Secret {namespace}/{} not found", secret.name),
            }
        } else {
            Vec::new()
        };
        for (key, value) in values {
            set(&mut env, format!("{prefix}{key}"), value);
        }
    }
    for var in container.env.as_deref().unwrap_or_default() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => Some(expand(value, |name| lookup(&env, name))),
            (None, Some(source)) => {
                value_from(client, namespace, source, facts).await.with_context(|| format!("env {}", var.name))?
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    set(&mut env, "BCOS_POD_IMAGE".to_owned(), container.image.clone().unwrap_or_default());
    Ok(env)
}

/// The value of an `env[].valueFrom`, or `None` for a missing optional key.
async fn value_from(
    client: &Client,
    namespace: &str,
    source: &k8s_openapi::api::core::v1::EnvVarSource,
    facts: &PodFacts<'_>,
) -> anyhow::Result<Option<String>> {
    if let Some(field) = &source.field_ref {
        return field_value(&field.field_path, facts).map(Some);
    }
    if let Some(key) = &source.config_map_key_ref {
        let found = Api::<ConfigMap>::namespaced(client.clone(), namespace).get_opt(&key.name).await?;
        let value = found.and_then(|config_map| config_map.data?.remove(&key.key));
        return match value {
            Some(value) => Ok(Some(value)),
            None if key.optional.unwrap_or(false) => Ok(None),
            None => bail!("key {} of ConfigMap {namespace}/{} not found", key.key, key.name),
        };
    }
    if let Some(key) = &source.secret_key_ref {
        let found = Api::<Secret>::namespaced(client.clone(), namespace).get_opt(&key.name).await?;
        let value = found.and_then(|secret| secret_data(secret).remove(&key.key));
        return match value {
            Some(value) => Ok(Some(String::from_utf8(value).context("the Secret's value is not UTF-8")?)),
            None if key.optional.unwrap_or(false) => Ok(None),
            None => bail!("key {} of Secret {namespace}/{} not found", key.key, key.name),
        };
    }
    bail!("unsupported valueFrom (the pod runner has fieldRef, configMapKeyRef and secretKeyRef)")
}

/// The value of a `fieldRef`'s `fieldPath`.
fn field_value(path: &str, facts: &PodFacts<'_>) -> anyhow::Result<String> {
    let metadata = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let value = match path {
        "metadata.name" => metadata.name.clone(),
        "metadata.namespace" => metadata.namespace.clone(),
        "metadata.uid" => metadata.uid.clone(),
        "spec.nodeName" => Some(facts.node_name.to_owned()),
        "spec.serviceAccountName" => spec.and_then(|spec| spec.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(facts.pod_ip.to_string()),
        "status.hostIP" => Some(facts.host_ip.to_string()),
        _ => {
            let labelled = |prefix: &str| path.strip_prefix(prefix)?.strip_suffix("']");
            if let Some(label) = labelled("metadata.labels['") {
                metadata.labels.as_ref().and_then(|labels| labels.get(label).cloned())
            } else if let Some(annotation) = labelled("metadata.annotations['") {
                metadata.annotations.as_ref().and_then(|annotations| annotations.get(annotation).cloned())
            } else {
                bail!("unsupported fieldRef {path}");
            }
        }
    };
    Ok(value.unwrap_or_default())
}

fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    match env.iter_mut().find(|(existing, _)| *existing == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name, value)),
    }
}

fn lookup(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter().find(|(existing, _)| existing == name).map(|(_, value)| value.clone())
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the variable's value and stays as written
/// when there is none; `$$` is a literal `$`; any other `$` is kept.
pub(super) fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(') {
            match reference.find(')') {
                Some(close) => {
                    let name = &reference[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &reference[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = reference;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The host program and arguments of the container: `command` (or, without one, the image's
/// name as its entrypoint) then `args`, with `$(VAR)`s expanded from `env`.
///
/// The program is the host executable `executables` maps the command (or its file name) to; else
/// an absolute command that exists, or one found on the PATH, runs as it is.
pub(super) fn program(
    container: &Container,
    env: &[(String, String)],
    executables: &HashMap<String, PathBuf>,
) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let expand_all = |words: Option<&Vec<String>>| -> Vec<String> {
        words.into_iter().flatten().map(|word| expand(word, |name| lookup(env, name))).collect()
    };
    let mut words = expand_all(container.command.as_ref());
    if words.is_empty() {
        let image = container.image.as_deref().unwrap_or_default();
        // "registry:5000/bcos/bcos-node:v1" runs as "bcos-node".
        let name = image.rsplit('/').next().unwrap_or(image);
        let name = name.split(['@', ':']).next().unwrap_or(name);
        if name.is_empty() {
            bail!("the container has neither a command nor an image to name its entrypoint");
        }
        words.push(name.to_owned());
    }
    words.extend(expand_all(container.args.as_ref()));
    let command = words.remove(0);
    let file_name = Path::new(&command).file_name().and_then(|name| name.to_str()).unwrap_or(&command);
    let program = if let Some(mapped) = executables.get(&command).or_else(|| executables.get(file_name)) {
        mapped.clone()
    } else if Path::new(&command).is_absolute() && Path::new(&command).exists() {
        PathBuf::from(&command)
    } else if let Some(found) = (!command.contains('/')).then(|| on_path(&command)).flatten() {
        found
    } else {
        bail!("command {command:?} is neither mapped to a host executable nor found on the PATH");
    };
    if !program.exists() {
        bail!("host executable {} of command {command:?} does not exist", program.display());
    }
    Ok((program, words))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&host_path()).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

fn host_path() -> std::ffi::OsString {
    std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into())
}

/// Starts `launch` in network namespace `netns`, in a process group of its own, with stdout and
/// stderr appended to `log`. Its environment is the container's alone, plus the host's PATH and
/// the Pod's HOSTNAME, as an image's would be.
pub(super) fn spawn(netns: &str, hostname: &str, launch: &Launch, log: &Path) -> anyhow::Result<tokio::process::Child> {
    let stdout = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let stderr = stdout.try_clone().context("duplicating the log file")?;
    let mut command = tokio::process::Command::new("ip");
    command.args(["netns", "exec", netns, "sh", "-c", LAUNCHER, "sh"]);
    command.arg(launch.working_dir.as_deref().unwrap_or_default());
    for mount in &launch.mounts {
        command.arg(if mount.source.is_file() { "file" } else { "dir" }).arg(&mount.source).arg(&mount.target);
    }
    command.arg("--");
    command.args(launch.mounts.iter().filter(|mount| mount.read_only).map(|mount| &mount.target));
    command.arg("--").arg(&launch.program).args(&launch.args);
    command
        .env_clear()
        .env("PATH", host_path())
        .env("HOSTNAME", hostname)
        .envs(launch.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        // Reaps the process should its supervisor be dropped (the runner stops it first).
        .kill_on_drop(true);
    command.spawn().with_context(|| format!("starting {}", launch.program.display()))
}

/// Sends `signal` to the process group led by `pid`: the container's process and everything it
/// started, as a container runtime stops a whole container.
pub(super) fn signal_group(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // It may have exited already; then there is nothing left to signal.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let env = [("A".to_owned(), "x".to_owned()), ("B".to_owned(), "y y".to_owned())];
        let expand = |input: &str| expand(input, |name| lookup(&env, name));
        assert_eq!(expand("$(A)-$(B)"), "x-y y");
        assert_eq!(expand("$(MISSING)"), "$(MISSING)");
        assert_eq!(expand("$$(A)"), "$(A)");
        assert_eq!(expand("$$$(A)"), "$x");
        assert_eq!(expand("cost: $5 $"), "cost: $5 $");
        assert_eq!(expand("$(A"), "$(A");
        assert_eq!(expand("héllo $(A)é"), "héllo xé");
    }
}
