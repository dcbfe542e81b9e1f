//! A Pod's volumes as host folders, and where its container sees them.
//!
//! ConfigMap and Secret volumes are written afresh into the Pod's own folder before every start
//! of its process (as a kubelet keeps them current). An `emptyDir` lives as long as the Pod. A
//! `persistentVolumeClaim` is a folder per claim under the runner's root that outlives Pods, so a
//! StatefulSet's Pod comes back on its data after it is deleted and recreated.

use std::{
    collections::{BTreeMap, HashMap},
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};
use kube::{Api, Client};

/// Mode of ConfigMap and Secret files without a `defaultMode`: what the API server fills in when
/// it stores a Pod, so a Pod that wants its Secret files private says so, as in a cluster.
const DEFAULT_MODE: i32 = 0o644;

/// A host path to bind-mount at a path of the container.
#[derive(Debug, Clone)]
pub(super) struct Mount {
    pub(super) source: PathBuf,
    /// The container's `mountPath`, absolute.
    pub(super) target: PathBuf,
    pub(super) read_only: bool,
}

/// The folders of a Pod.
pub(super) struct Folders<'a> {
    /// This Pod's own folder (one per Pod UID), for ConfigMap, Secret and emptyDir volumes.
    pub(super) pod: &'a Path,
    /// Where claims live, one folder per namespace and claim.
    pub(super) claims: &'a Path,
}

/// Materialises the volumes `container` mounts and returns its mounts, parents before children.
pub(super) async fn prepare(
    client: &Client,
    pod: &Pod,
    container: &Container,
    folders: &Folders<'_>,
) -> anyhow::Result<Vec<Mount>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let volumes = pod.spec.as_ref().and_then(|spec| spec.volumes.as_deref()).unwrap_or_default();
    let mut ready: HashMap<&str, (PathBuf, bool)> = HashMap::new();
    let mut mounts = Vec::new();
    for volume_mount in container.volume_mounts.as_deref().unwrap_or_default() {
        let name = volume_mount.name.as_str();
        if !ready.contains_key(name) {
            let volume = volumes
                .iter()
                .find(|volume| volume.name == name)
                .with_context(|| format!("volumeMount {name}: the Pod has no such volume"))?;
            let materialised =
                materialise(client, namespace, volume, folders).await.with_context(|| format!("volume {name}"))?;
            ready.insert(name, materialised);
        }
        let Some((folder, volume_read_only)) = ready.get(name) else { continue };
        let target = PathBuf::from(&volume_mount.mount_path);
        if !target.is_absolute() {
            bail!("volumeMount {name}: mountPath {} is not absolute", target.display());
        }
        let source = match volume_mount.sub_path.as_deref().filter(|sub_path| !sub_path.is_empty()) {
            Some(sub_path) => {
                let source = folder.join(relative(sub_path)?);
                if !source.exists() {
                    std::fs::create_dir_all(&source).with_context(|| format!("creating {}", source.display()))?;
                }
                source
            }
            None => folder.clone(),
        };
        let read_only = *volume_read_only || volume_mount.read_only.unwrap_or(false);
        mounts.push(Mount { source, target, read_only });
    }
    mounts.sort_by_key(|mount| mount.target.components().count());
    Ok(mounts)
}

/// The host folder of `volume`, filled, and whether it must be mounted read-only.
async fn materialise(
    client: &Client,
    namespace: &str,
    volume: &Volume,
    folders: &Folders<'_>,
) -> anyhow::Result<(PathBuf, bool)> {
    let own = folders.pod.join("volumes").join(relative(&volume.name)?);
    if let Some(source) = &volume.config_map {
        let optional = source.optional.unwrap_or(false);
        let files = match Api::<ConfigMap>::namespaced(client.clone(), namespace).get_opt(&source.name).await? {
            Some(config_map) => {
                let mut files: BTreeMap<String, Vec<u8>> = config_map
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, value)| (key, value.into_bytes()))
                    .collect();
                files.extend(config_map.binary_data.unwrap_or_default().into_iter().map(|(key, value)| (key, value.0)));
                files
            }
            None if optional => BTreeMap::new(),
            None => bail!("ConfigMap {namespace}/{} not found", source.name),
        };
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        write_files(&own, &files, source.items.as_deref(), mode, optional)?;
        return Ok((own, true));
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.as_deref().context("secret volume without secretName")?;
        let optional = source.optional.unwrap_or(false);
        let files = match Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await? {
            Some(secret) => secret_data(secret),
            None if optional => BTreeMap::new(),
            None => bail!("Secret {namespace}/{name} not found"),
        };
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        write_files(&own, &files, source.items.as_deref(), mode, optional)?;
        return Ok((own, true));
    }
    if volume.empty_dir.is_some() {
        std::fs::create_dir_all(&own).with_context(|| format!("creating {}", own.display()))?;
        return Ok((own, false));
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let folder = folders.claims.join(relative(namespace)?).join(relative(&claim.claim_name)?);
        std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
        return Ok((folder, claim.read_only.unwrap_or(false)));
    }
    bail!("unsupported volume type (the pod runner has configMap, secret, emptyDir and persistentVolumeClaim)")
}

/// A Secret's keys and values: `data`, overridden by `stringData` (which the API server folds
/// into `data` on write, but a Secret built in memory may carry).
pub(super) fn secret_data(secret: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> =
        secret.data.unwrap_or_default().into_iter().map(|(key, value)| (key, value.0)).collect();
    data.extend(secret.string_data.unwrap_or_default().into_iter().map(|(key, value)| (key, value.into_bytes())));
    data
}

/// Replaces the contents of `folder` with `files` (every key, or only `items`), each with its
/// item's mode or else `default_mode`.
fn write_files(
    folder: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> anyhow::Result<()> {
    if folder.exists() {
        std::fs::remove_dir_all(folder).with_context(|| format!("clearing {}", folder.display()))?;
    }
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let chosen: Vec<(&str, &str, i32)> = match items {
        Some(items) => items
            .iter()
            .map(|item| (item.key.as_str(), item.path.as_str(), item.mode.unwrap_or(default_mode)))
            .collect(),
        None => files.keys().map(|key| (key.as_str(), key.as_str(), default_mode)).collect(),
    };
    for (key, path, mode) in chosen {
        let Some(contents) = files.get(key) else {
            if optional {
                continue;
            }
            bail!("key {key} not found");
        };
        let file = folder.join(relative(path)?);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&file, contents).with_context(|| format!("writing {}", file.display()))?;
        let mode = u32::try_from(mode & 0o777).unwrap_or(0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", file.display()))?;
    }
    Ok(())
}

/// `path` if it stays inside the folder it is joined to.
fn relative(path: &str) -> anyhow::Result<&Path> {
    let relative = Path::new(path);
    if path.is_empty() || !relative.components().all(|component| matches!(component, Component::Normal(_))) {
        bail!("{path:?} is not a plain relative path");
    }
    Ok(relative)
}
