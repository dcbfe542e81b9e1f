//! The operator process: the HTTP endpoints, leader election, and the two controllers, until a
//! shutdown signal or the loss of the lease.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    coordination::v1::Lease,
    core::v1::{ConfigMap, Pod},
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{Controller, reflector::ObjectRef, watcher},
};
use tokio::sync::watch;

use crate::{
    controller::{Context, chain, member},
    crd::{ConsortiumChain, Member},
    leader::{LEASE_DURATION, LeaderElection, RENEW_INTERVAL},
    metrics::Metrics,
    names,
};

/// How long reconciles in flight may take to finish once shutdown begins.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_listen: SocketAddr,
    /// Only this namespace's resources, or every namespace's.
    pub watch_namespace: Option<String>,
    /// The leader Lease's name.
    pub lease_name: String,
    /// The Lease's namespace (the operator's own).
    pub lease_namespace: String,
    /// This replica's identity in the Lease (its Pod name).
    pub identity: String,
}

/// Runs until SIGTERM/SIGINT (then releases the lease and returns) or until leadership is lost
/// (an error: the process must restart as a standby rather than act on a stale view).
pub async fn run(options: Options) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Metrics::new()?;
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(options.http_listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    tokio::spawn(serve_http(listener, metrics.clone(), ready.clone()));

    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        let _ = stop_tx.send(true);
    });

    let ctx = Context::new(client.clone(), metrics.clone(), options.identity.clone()).await?;
    ready.store(true, Ordering::Relaxed);
    let election = LeaderElection::new(
        Api::<Lease>::namespaced(client.clone(), &options.lease_namespace),
        options.lease_name.clone(),
        options.identity.clone(),
    );
    if !wait_for_leadership(&election, stop.clone()).await? {
        return Ok(());
    }
    metrics.leader.set(1);
    tracing::info!(identity = %options.identity, lease = %options.lease_name, "leading");

    let (lost_tx, mut lost) = watch::channel(false);
    let renewing = {
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut last_renewal = Instant::now();
            loop {
                tokio::select! {
                    _ = stop.changed() => return election,
                    () = tokio::time::sleep(RENEW_INTERVAL) => {}
                }
                match election.acquire_or_renew().await {
                    Ok(true) => last_renewal = Instant::now(),
                    Ok(false) => {
                        tracing::error!("the leader lease was taken by another replica");
                        let _ = lost_tx.send(true);
                        return election;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot renew the leader lease");
                        if last_renewal.elapsed() >= LEASE_DURATION {
                            let _ = lost_tx.send(true);
                            return election;
                        }
                    }
                }
            }
        })
    };

    let until_stopped = {
        let mut stop = stop.clone();
        async move {
            tokio::select! {
                _ = stop.changed() => {}
                _ = lost.changed() => {}
            }
        }
    };
    let until_stopped = futures::FutureExt::shared(Box::pin(until_stopped));
    let controllers = run_controllers(&client, &options, ctx, until_stopped.clone());
    // Reconciles in flight may finish after a shutdown begins; but a controller stopped before
    // its caches filled never finishes, so the wait is bounded (within the Pod's grace period).
    let grace_expired = async {
        until_stopped.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = controllers => {}
        () = grace_expired => tracing::warn!("reconciles still running {SHUTDOWN_GRACE:?} after shutdown began; abandoned"),
    }
    metrics.leader.set(0);
    let election = renewing.await?;
    if *stop.borrow() {
        election.release().await?;
        tracing::info!("released the leader lease; stopped");
        Ok(())
    } else {
        anyhow::bail!("lost the leader lease")
    }
}

/// Tries for the lease until it is held (true) or shutdown is asked for (false).
async fn wait_for_leadership(election: &LeaderElection, mut stop: watch::Receiver<bool>) -> anyhow::Result<bool> {
    loop {
        match election.acquire_or_renew().await {
            Ok(true) => return Ok(true),
            Ok(false) => tracing::debug!("another replica leads; standing by"),
            Err(error) => tracing::warn!(%error, "cannot read the leader lease"),
        }
        tokio::select! {
            _ = stop.changed() => return Ok(false),
            () = tokio::time::sleep(RENEW_INTERVAL) => {}
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

async fn run_controllers(
    client: &Client,
    options: &Options,
    ctx: Arc<Context>,
    until_stopped: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let namespace = options.watch_namespace.as_deref();
    let managed = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={}", names::FIELD_MANAGER));

    let chains = Controller::new(api::<ConsortiumChain>(client, namespace), watcher::Config::default())
        .owns(api::<ConfigMap>(client, namespace), managed.clone())
        .watches(api::<Member>(client, namespace), watcher::Config::default(), |member: Member| {
            Some(ObjectRef::new(&member.spec.chain_ref.name).within(&member.namespace().unwrap_or_default()))
        })
        .graceful_shutdown_on(until_stopped.clone())
        .run(
            |chain, ctx: Arc<Context>| async move {
                let started = Instant::now();
                let result = chain::reconcile(chain, ctx.clone()).await;
                ctx.metrics.reconciled("chain", started);
                result
            },
            chain::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let member_controller = Controller::new(api::<Member>(client, namespace), watcher::Config::default());
    let store = member_controller.store();
    let pod_store = store.clone();
    let members = member_controller
        .owns(api::<StatefulSet>(client, namespace), managed.clone())
        .watches(
            api::<ConsortiumChain>(client, namespace),
            watcher::Config::default(),
            move |chain: ConsortiumChain| {
                let name = chain.name_any();
                let namespace = chain.namespace();
                store
                    .state()
                    .into_iter()
                    .filter(move |member| member.spec.chain_ref.name == name && member.namespace() == namespace)
                    .map(|member| ObjectRef::from_obj(member.as_ref()))
            },
        )
        .watches(api::<Pod>(client, namespace), managed, move |pod: Pod| {
            let member = pod.labels().get(names::MEMBER_LABEL).cloned();
            let namespace = pod.namespace();
            member.and_then(|member| {
                pod_store
                    .state()
                    .into_iter()
                    .find(|candidate| candidate.name_any() == member && candidate.namespace() == namespace)
                    .map(|member| ObjectRef::from_obj(member.as_ref()))
            })
        })
        .graceful_shutdown_on(until_stopped)
        .run(
            |member, ctx: Arc<Context>| async move {
                let started = Instant::now();
                let result = member::reconcile(member, ctx.clone()).await;
                ctx.metrics.reconciled("member", started);
                result
            },
            member::error_policy,
            ctx,
        )
        .for_each(|_| async {});
    futures::join!(chains, members);
}

async fn serve_http(listener: tokio::net::TcpListener, metrics: Metrics, ready: Arc<AtomicBool>) {
    use axum::{Router, http::StatusCode, routing::get};
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    let families = metrics.registry.gather();
                    prometheus::TextEncoder::new()
                        .encode_to_string(&families)
                        .map_err(|error| (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Relaxed);
                async move { if ready { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting") } }
            }),
        );
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "HTTP server stopped");
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
