//! The operator's Helm chart lints clean and renders what the operator needs and no more: the
//! CRDs `crdgen` generates, RBAC that grants exactly the verbs the operator uses, and a Deployment
//! that runs it as a non-root, read-only container with the flags, environment and probes the
//! operator binary expects. The example manifests describe one consistent chain.

use std::collections::{BTreeMap, BTreeSet};

use bcos_tests::chart::{NAMESPACE, RELEASE, chart_dir, documents, helm, render_chart, repo_root};
use serde_yaml::Value;

/// The namespace the watch-namespace renders restrict the operator to.
const WATCHED: &str = "bcos";

/// What the operator does with the API: (API group, resources, verbs).
const OPERATOR_RULES: &[(&str, &[&str], &[&str])] = &[
    ("bcos.dev", &["consortiumchains", "members"], &["get", "list", "watch", "patch", "update"]),
    ("bcos.dev", &["consortiumchains/status", "members/status"], &["get", "patch", "update"]),
    ("bcos.dev", &["consortiumchains/finalizers", "members/finalizers"], &["update"]),
    ("apps", &["statefulsets"], &["get", "list", "watch", "create", "patch", "update", "delete"]),
    ("", &["services", "configmaps", "secrets"], &["get", "list", "watch", "create", "patch", "update", "delete"]),
    ("", &["pods"], &["get", "list", "watch", "patch", "delete"]),
    ("policy", &["poddisruptionbudgets"], &["get", "list", "watch", "create", "patch", "update", "delete"]),
    ("events.k8s.io", &["events"], &["create", "patch"]),
    ("", &["events"], &["create", "patch"]),
];

/// Verbs by (API group, resource).
type Grants = BTreeMap<(String, String), BTreeSet<String>>;

fn strings(value: &Value) -> Vec<String> {
    value.as_sequence().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

/// The verbs a Role or ClusterRole grants; fails on any wildcard.
fn grants(role: &Value) -> Grants {
    let mut grants = Grants::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let (groups, resources, verbs) =
            (strings(&rule["apiGroups"]), strings(&rule["resources"]), strings(&rule["verbs"]));
        for word in groups.iter().chain(&resources).chain(&verbs) {
            assert!(!word.contains('*'), "wildcard in {rule:?}");
        }
        for group in &groups {
            for resource in &resources {
                grants.entry((group.clone(), resource.clone())).or_default().extend(verbs.iter().cloned());
            }
        }
    }
    grants
}

fn operator_grants() -> Grants {
    let mut grants = Grants::new();
    for (group, resources, verbs) in OPERATOR_RULES {
        for resource in *resources {
            grants
                .entry((group.to_string(), resource.to_string()))
                .or_default()
                .extend(verbs.iter().map(|verb| verb.to_string()));
        }
    }
    grants
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|document| document["kind"] == kind).collect()
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> = of_kind(documents, kind).into_iter().filter(|d| d["metadata"]["name"] == name).collect();
    assert_eq!(found.len(), 1, "one {kind} {name}: {found:?}");
    found[0]
}

fn kinds(documents: &[Value]) -> Vec<&str> {
    let mut kinds: Vec<_> = documents.iter().map(|document| document["kind"].as_str().expect("kind")).collect();
    kinds.sort_unstable();
    kinds
}

/// Checks the operator role's grants, without resource names (the operator addresses objects
/// of every chain).
fn assert_operator_role(role: &Value) {
    assert_eq!(grants(role), operator_grants(), "{role:?}");
    for rule in role["rules"].as_sequence().expect("rules") {
        assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(), "{rule:?}");
    }
}

/// Checks that `binding` binds the `role_kind` named `role_name` to the chart's service account,
/// and only to it.
fn assert_binds_service_account(binding: &Value, role_kind: &str, role_name: &str) {
    assert_eq!(binding["roleRef"]["kind"], role_kind);
    assert_eq!(binding["roleRef"]["name"], role_name);
    assert_eq!(binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    let subjects = binding["subjects"].as_sequence().expect("subjects");
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], RELEASE);
    assert_eq!(subjects[0]["namespace"], NAMESPACE);
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    let vars = container["env"].as_sequence().expect("env");
    vars.iter().find(|var| var["name"] == name).unwrap_or_else(|| panic!("no {name} in {vars:?}"))
}

/// Checks the operator Deployment against the operator binary's contract.
fn assert_deployment(documents: &[Value], log_format: &str, watch_namespace: Option<&str>) {
    let deployment = named(documents, "Deployment", RELEASE);
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 2, "two replicas with leader election");
    let template = &deployment["spec"]["template"];
    for (label, value) in deployment["spec"]["selector"]["matchLabels"].as_mapping().expect("selector") {
        assert_eq!(&template["metadata"]["labels"][label], value, "the selector selects the pods");
    }
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8080");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let pod = &template["spec"];
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().expect("runAsUser") > 0);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");

    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(container["image"], "ghcr.io/bcos-rs/bcos-operator:0.1.0", "the image tag defaults to appVersion");
    let mut args = vec!["run", "--http-listen", "0.0.0.0:8080", "--log-format", log_format, "--lease-name", RELEASE];
    if let Some(namespace) = watch_namespace {
        args.extend(["--watch-namespace", namespace]);
    }
    assert_eq!(strings(&container["args"]), args);
    assert!(container.get("command").is_none(), "the image's entrypoint is the operator binary");

    assert_eq!(env(container, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    assert_eq!(env(container, "POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    assert_eq!(env(container, "RUST_LOG")["value"], "info");

    let ports = container["ports"].as_sequence().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "http");
    assert_eq!(ports[0]["containerPort"], 8080);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
    }

    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert!(security["capabilities"].get("add").is_none());
}

/// Checks the leader-election Role: in the release namespace, creating Leases and reading and
/// renewing only the one named after the release.
fn assert_lease_role(documents: &[Value]) {
    let name = format!("{RELEASE}-leader-election");
    let role = named(documents, "Role", &name);
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    let lease = ("coordination.k8s.io".to_owned(), "leases".to_owned());
    let verbs = ["get", "create", "update", "patch"].map(str::to_owned);
    assert_eq!(grants(role), Grants::from([(lease, verbs.into())]));
    for rule in role["rules"].as_sequence().expect("rules") {
        if strings(&rule["verbs"]) != ["create"] {
            assert_eq!(strings(&rule["resourceNames"]), [RELEASE], "{rule:?}");
        }
    }
    let binding = named(documents, "RoleBinding", &name);
    assert_eq!(binding["metadata"]["namespace"], NAMESPACE);
    assert_binds_service_account(binding, "Role", &name);
}

#[test]
fn chart_lints_clean() -> anyhow::Result<()> {
    let chart = chart_dir().display().to_string();
    let watching = format!("watchNamespace={WATCHED}");
    for values in [vec![], vec!["--set", "serviceMonitor.enabled=true", "--set", watching.as_str()]] {
        let output = helm(&[&["lint", chart.as_str(), "--strict"][..], &values].concat())?;
        assert!(output.contains("1 chart(s) linted, 0 chart(s) failed"), "{output}");
        let findings: Vec<_> = output.lines().filter(|line| line.starts_with('[')).collect();
        // Helm recommends an icon, and the project has none.
        assert_eq!(findings, ["[INFO] Chart.yaml: icon is recommended"], "{output}");
    }
    Ok(())
}

#[test]
fn default_release_grants_the_operator_exactly_what_it_uses() -> anyhow::Result<()> {
    let documents = documents(&render_chart(&[])?)?;
    assert_eq!(
        kinds(&documents),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ],
        "no ServiceMonitor unless enabled"
    );
    assert_eq!(named(&documents, "ServiceAccount", RELEASE)["metadata"]["namespace"], NAMESPACE);
    assert_operator_role(named(&documents, "ClusterRole", RELEASE));
    assert_binds_service_account(named(&documents, "ClusterRoleBinding", RELEASE), "ClusterRole", RELEASE);
    assert_lease_role(&documents);
    assert_deployment(&documents, "json", None);

    let service = named(&documents, "Service", RELEASE);
    let pod_labels = &named(&documents, "Deployment", RELEASE)["spec"]["template"]["metadata"]["labels"];
    for (label, value) in service["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(&pod_labels[label], value, "the Service selects the operator pods");
    }
    let ports = service["spec"]["ports"].as_sequence().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "http");
    assert_eq!(ports[0]["port"], 8080);
    assert_eq!(ports[0]["targetPort"], "http");
    Ok(())
}

#[test]
fn watch_namespace_narrows_rbac_and_service_monitor_is_opt_in() -> anyhow::Result<()> {
    let documents = documents(&render_chart(&[
        ("watchNamespace", WATCHED),
        ("serviceMonitor.enabled", "true"),
        ("serviceMonitor.labels.release", "prometheus"),
        ("logFormat", "text"),
    ])?)?;
    assert!(of_kind(&documents, "ClusterRole").is_empty() && of_kind(&documents, "ClusterRoleBinding").is_empty());
    let role = named(&documents, "Role", RELEASE);
    assert_eq!(role["metadata"]["namespace"], WATCHED);
    assert_operator_role(role);
    let binding = named(&documents, "RoleBinding", RELEASE);
    assert_eq!(binding["metadata"]["namespace"], WATCHED);
    assert_binds_service_account(binding, "Role", RELEASE);
    assert_lease_role(&documents);
    assert_deployment(&documents, "text", Some(WATCHED));

    let monitor = named(&documents, "ServiceMonitor", RELEASE);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], NAMESPACE);
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(strings(&monitor["spec"]["namespaceSelector"]["matchNames"]), [NAMESPACE]);
    let service_labels = &named(&documents, "Service", RELEASE)["metadata"]["labels"];
    for (label, value) in monitor["spec"]["selector"]["matchLabels"].as_mapping().expect("selector") {
        assert_eq!(&service_labels[label], value, "the ServiceMonitor selects the metrics Service");
    }
    let endpoints = monitor["spec"]["endpoints"].as_sequence().expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "http");
    assert_eq!(endpoints[0]["path"], "/metrics");
    assert_eq!(endpoints[0]["interval"], "30s");
    Ok(())
}

#[test]
fn unknown_log_format_is_refused() {
    let error = render_chart(&[("logFormat", "xml")]).expect_err("xml is no log format");
    assert!(error.to_string().contains("logFormat must be json or text"), "{error:#}");
}

#[test]
fn chart_crds_are_the_generated_crds() -> anyhow::Result<()> {
    let listing = |dir: std::path::PathBuf| -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            files.insert(path.file_name().expect("file name").to_string_lossy().into_owned(), std::fs::read(&path)?);
        }
        Ok(files)
    };
    let generated = listing(repo_root().join("crds"))?;
    let charted = listing(chart_dir().join("crds"))?;
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        charted.keys().collect::<Vec<_>>(),
        "crdgen writes the same files to crds/ and the chart"
    );
    for (name, bytes) in &generated {
        assert!(charted[name] == *bytes, "charts/bcos-operator/crds/{name} differs from crds/{name}: rerun crdgen");
    }

    let documents = documents(&render_chart(&[])?)?;
    let crds = of_kind(&documents, "CustomResourceDefinition");
    let names: BTreeSet<_> = crds.iter().filter_map(|crd| crd["metadata"]["name"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["consortiumchains.bcos.dev", "members.bcos.dev"]));
    for crd in crds {
        assert_eq!(crd["spec"]["group"], "bcos.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let versions = crd["spec"]["versions"].as_sequence().expect("versions");
        let v1alpha1 = versions.iter().find(|v| v["name"] == "v1alpha1").expect("v1alpha1");
        assert_eq!(v1alpha1["served"], true);
        assert_eq!(v1alpha1["storage"], true);
        assert!(v1alpha1["subresources"].get("status").is_some(), "the operator writes the status subresource");
    }
    Ok(())
}

#[test]
fn example_manifests_describe_one_chain() -> anyhow::Result<()> {
    let read = |name: &str| -> anyhow::Result<Vec<Value>> {
        documents(&std::fs::read_to_string(repo_root().join("manifests").join(name))?)
    };
    let namespace = read("namespace.yaml")?;
    assert_eq!(kinds(&namespace), ["Namespace"]);
    assert_eq!(namespace[0]["metadata"]["name"], WATCHED);

    let chain = read("chain.yaml")?;
    assert_eq!(kinds(&chain), ["ConsortiumChain"]);
    let chain = &chain[0];
    let members = read("members.yaml")?;
    let regulator = read("regulator.yaml")?;
    for resource in members.iter().chain(&regulator).chain([chain]) {
        assert_eq!(resource["apiVersion"], "bcos.dev/v1alpha1");
        assert_eq!(resource["metadata"]["namespace"], WATCHED);
    }
    assert_eq!(chain["metadata"]["name"], "trade-finance");
    let founders = strings(&chain["spec"]["foundingMembers"]);
    let member_names: Vec<_> = members.iter().map(|m| m["metadata"]["name"].as_str().expect("name")).collect();
    assert_eq!(founders, member_names, "members.yaml holds exactly the founding members");
    assert_eq!(kinds(&members), ["Member"; 4]);
    assert_eq!(kinds(&regulator), ["Member"]);
    for member in members.iter().chain(&regulator) {
        assert_eq!(member["spec"]["chainRef"]["name"], chain["metadata"]["name"]);
        assert_eq!(member["spec"]["institution"]["id"], member["metadata"]["name"]);
    }
    assert!(members.iter().all(|m| m["spec"]["consensusNodes"] == 1 && m["spec"]["role"] == "participant"));
    assert!(members.iter().any(|m| m["spec"]["observerNodes"] == 1));
    assert_eq!(regulator[0]["spec"]["role"], "regulator");
    assert!(!founders.iter().any(|f| regulator[0]["metadata"]["name"] == f.as_str()), "joins after genesis");

    // The patches change one field each, to something new.
    let upgrade = read("upgrade.yaml")?;
    assert_eq!(upgrade.len(), 1);
    assert_eq!(upgrade[0]["spec"].as_mapping().expect("spec").len(), 1);
    assert_ne!(upgrade[0]["spec"]["version"], chain["spec"]["version"]);
    assert!(upgrade[0]["spec"]["version"].is_string(), "a quoted tag");
    let switch = read("consensus-switch.yaml")?;
    assert_eq!(switch.len(), 1);
    assert_eq!(switch[0]["spec"]["consensus"].as_mapping().expect("consensus").len(), 1);
    assert_eq!(chain["spec"]["consensus"]["mode"], "pbft");
    assert_eq!(switch[0]["spec"]["consensus"]["mode"], "raft");
    Ok(())
}
