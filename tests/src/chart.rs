//! The operator's Helm chart (`charts/bcos-operator`), rendered as `helm install` would create it,
//! through `scripts/helm.sh` (Helm's Go SDK from the PyPI package helm-python-sdk; no helm binary
//! or cluster needed), and parsed into YAML documents for tests to inspect or apply.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The release name the README installs the chart as; it also names the chart's resources and
/// the operator's leader-election Lease.
pub const RELEASE: &str = "bcos-operator";
/// The namespace the README installs the chart into.
pub const NAMESPACE: &str = "bcos-system";

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/bcos-operator")
}

/// Runs `scripts/helm.sh args...` from the repository root and returns its stdout, or fails with
/// its stderr and stdout (lint findings go to stdout).
pub fn helm<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<String> {
    let root = repo_root();
    let output =
        Command::new(root.join("scripts/helm.sh")).args(args).current_dir(&root).output().context("running helm.sh")?;
    let stdout = String::from_utf8(output.stdout).context("helm.sh printed non-UTF-8")?;
    if !output.status.success() {
        bail!("helm.sh failed ({}): {}{stdout}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(stdout)
}

/// `helm template` of the chart as release [`RELEASE`] in [`NAMESPACE`], with the CRDs first (as
/// `helm install` creates them) and each of `values` as a `--set key=value` (helm's syntax:
/// `a.b=c`, `list={x,y}`; escape commas in values with `\,`).
pub fn render_chart(values: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut args = vec!["template".to_owned(), RELEASE.to_owned(), chart_dir().display().to_string()];
    args.extend(["--namespace", NAMESPACE, "--include-crds"].map(str::to_owned));
    for (key, value) in values {
        args.push("--set".to_owned());
        args.push(format!("{key}={value}"));
    }
    helm(&args)
}

/// The YAML documents of a multi-document stream such as [`render_chart`]'s, without empty ones.
pub fn documents(yaml: &str) -> anyhow::Result<Vec<serde_yaml::Value>> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(document).context("parsing a YAML document")?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}
