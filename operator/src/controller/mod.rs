//! The two controllers: [`chain`] (CA, governance key, genesis, peer Service, disruption budget,
//! chain status) and [`member`] (member CA, node identities, node files, StatefulSet, RPC
//! Service, admission into the registry, leaving the chain, member status); [`settings`] and
//! [`upgrade`] carry the chain's consensus settings and version rollouts out for [`chain`].

pub mod chain;
pub mod member;
pub mod settings;
pub mod upgrade;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client, Resource, ResourceExt,
    api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use serde::Serialize;

use crate::{identity::IdentityError, metrics::Metrics, names::FIELD_MANAGER};

/// Everything a reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The operator's own metrics.
    pub metrics: Metrics,
    /// PodDisruptionBudget as this API server serves it (`policy/v1`, or `policy/v1beta1` before
    /// Kubernetes 1.21).
    pub disruption_budget: ApiResource,
}

impl Context {
    /// A context for `client`, finding out which PodDisruptionBudget version the server has.
    pub async fn new(client: Client, metrics: Metrics, instance: String) -> Result<Arc<Self>, kube::Error> {
        let disruption_budget = disruption_budget_resource(&client).await?;
        let reporter = Reporter { controller: FIELD_MANAGER.to_owned(), instance: Some(instance) };
        Ok(Arc::new(Self { recorder: Recorder::new(client.clone(), reporter), client, metrics, disruption_budget }))
    }

    /// Publishes an Event about `object`; a refused Event is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, object: &K, warning: bool, reason: &str, note: String) {
        self.publish(object, None, warning, reason, note).await;
    }

    /// Publishes an Event about `object` concerning its node Pod `pod`. The recorder folds
    /// Events of one object and reason into a series that keeps the first message, so each Pod
    /// needs its own reference for its steps to stay visible.
    pub async fn node_event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        pod: &str,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let pod = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.to_owned()),
            namespace: object.meta().namespace.clone(),
            ..Default::default()
        };
        self.publish(object, Some(pod), warning, reason, note).await;
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        related: Option<ObjectReference>,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: related,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "cannot publish event");
        }
    }

    /// Server-side applies `object` with the operator's field manager, taking ownership of every
    /// field it sets.
    pub async fn apply<K>(&self, object: &K) -> Result<K, Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &object.namespace().unwrap_or_default());
        let name = object.name_any();
        let mut object = object.clone();
        // Server-side apply bodies name their kind.
        let mut body = serde_json::to_value(&mut object).map_err(Error::Encode)?;
        body["apiVersion"] = serde_json::Value::String(K::api_version(&()).into_owned());
        body["kind"] = serde_json::Value::String(K::kind(&()).into_owned());
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body))
            .await
            .map_err(|source| Error::Kube { what: format!("applying {} {name}", K::kind(&())), source })
    }

    /// Server-side applies the PodDisruptionBudget `name` with `spec`.
    pub async fn apply_disruption_budget(
        &self,
        namespace: &str,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
        spec: serde_json::Value,
    ) -> Result<(), Error> {
        let resource = &self.disruption_budget;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, resource);
        let body = serde_json::json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]},
            "spec": spec,
        });
        api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body))
            .await
            .map_err(|source| Error::Kube { what: format!("applying PodDisruptionBudget {name}"), source })?;
        Ok(())
    }
}

async fn disruption_budget_resource(client: &Client) -> Result<ApiResource, kube::Error> {
    for version in ["v1", "v1beta1"] {
        let gvk = GroupVersionKind::gvk("policy", version, "PodDisruptionBudget");
        if let Ok((resource, _)) = discovery::pinned_kind(client, &gvk).await {
            return Ok(resource);
        }
    }
    // Neither is served: fall back to v1 and let the apply report the error in a condition.
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("policy", "v1", "PodDisruptionBudget"),
        "poddisruptionbudgets",
    ))
}

/// Why a reconcile failed; it is retried with backoff and shown in the resource's conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused a request.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: kube::Error,
    },
    /// A key or certificate could not be read or made.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A chain transaction failed.
    #[error("{what}: {source}")]
    Governance {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: bcos_sdk::governance::GovernanceError,
    },
    /// An object could not be encoded.
    #[error("encoding an object: {0}")]
    Encode(serde_json::Error),
    /// A generated file is invalid.
    #[error("{0}")]
    Config(#[from] bcos_sdk::config::ConfigError),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// An object read from the API server lacks its uid, so nothing can name it as owner.
    #[error("{0} has no uid")]
    NoUid(String),
}

/// The owner reference of `object`, which every object the operator makes for it carries.
pub fn owner_of<K: Resource<DynamicType = ()>>(
    object: &K,
) -> Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference, Error> {
    object.controller_owner_ref(&()).ok_or_else(|| Error::NoUid(format!("{} {}", K::kind(&()), object.name_any())))
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kube",
            Self::Identity(_) => "identity",
            Self::Governance { .. } => "governance",
            Self::Encode(_) => "encode",
            Self::Config(_) => "config",
            Self::Finalizer(_) => "finalizer",
            Self::NoUid(_) => "no_uid",
        }
    }
}

/// A `kube::Error` mapper naming what failed.
pub fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

/// How often a healthy resource is looked at again, to keep node status current.
pub const RESYNC: Duration = Duration::from_secs(10);
/// How soon a resource waiting for something is looked at again.
pub const WAIT: Duration = Duration::from_secs(3);

/// Writes `status` to the status subresource of `object` by server-side apply: a field the
/// operator set before and leaves out now (a switch no longer pending) is removed, which a merge
/// patch would keep.
pub async fn patch_status<K>(api: &Api<K>, object: &K, status: impl Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object.name_any();
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body))
        .await
        .map_err(kube_err(format!("updating the status of {} {name}", K::kind(&()))))?;
    Ok(())
}

/// Shows a failed reconcile's error in the Degraded condition of `object` (in the background:
/// error policies cannot wait), so `kubectl describe` says what is wrong.
pub fn report_error<K, S>(ctx: &Arc<Context>, object: &Arc<K>, status: S, error: &Error)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    S: HasConditions + Serialize + Send + Sync + 'static,
{
    let message = error.to_string();
    let ctx = ctx.clone();
    let object = object.clone();
    let mut status = status;
    tokio::spawn(async move {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
        let generation = object.meta().generation;
        crate::conditions::set(
            status.conditions_mut(),
            crate::conditions::DEGRADED,
            true,
            "ReconcileError",
            message,
            generation,
        );
        // Only the conditions: the rest of the cached status may be older than what the last
        // successful reconcile wrote (a rollout's progress), and must not be put back.
        let body = serde_json::json!({"status": {"conditions": status.conditions_mut()}});
        match api.patch_status(&object.name_any(), &PatchParams::default(), &Patch::Merge(body)).await {
            // The object is gone (a finalizer let go meanwhile): nothing to report on.
            Err(kube::Error::Api(response)) if response.code == 404 => {}
            Err(error) => tracing::warn!(%error, "cannot report the reconcile error in the status"),
            Ok(_) => {}
        }
    });
}

/// A status with conditions.
pub trait HasConditions {
    /// Its conditions.
    fn conditions_mut(&mut self) -> &mut Vec<crate::crd::Condition>;
}

impl HasConditions for crate::crd::ConsortiumChainStatus {
    fn conditions_mut(&mut self) -> &mut Vec<crate::crd::Condition> {
        &mut self.conditions
    }
}

impl HasConditions for crate::crd::MemberStatus {
    fn conditions_mut(&mut self) -> &mut Vec<crate::crd::Condition> {
        &mut self.conditions
    }
}
