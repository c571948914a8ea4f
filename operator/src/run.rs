//! Wiring: the Controller over Streams and the objects they own, leader election, metrics.

use crate::controller::{error_policy, reconcile, Context};
use crate::desired::FIELD_MANAGER;
use freshet_crds::Stream;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};
use std::future::Future;
use std::sync::Arc;

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves. `namespace` None watches every namespace.
pub async fn controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    // Only objects this operator made: fewer events, less memory.
    let owned = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    Controller::new(api::<Stream>(&client, ns), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned.clone())
        .owns(api::<ConfigMap>(&client, ns), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), owned)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(stream = %obj, "reconciled"),
                Err(e) => tracing::debug!("controller: {e}"),
            }
        })
        .await;
}

/// Blocks until this process holds the operator's Lease; afterwards, losing it ends the
/// process (a restarted pod competes again), so two operators never reconcile at once.
pub async fn lead(client: Client, namespace: &str, identity: &str, duration_secs: u64) -> anyhow::Result<()> {
    let duration = duration_secs.max(2);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, "freshet-operator")
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;
    tracing::info!("waiting for the freshet-operator lease as {identity}");
    while !*leading.borrow_and_update() {
        leading.changed().await?;
    }
    tracing::info!("leading: this operator reconciles");
    tokio::spawn(async move {
        while leading.changed().await.is_ok() {
            if !*leading.borrow() {
                tracing::error!("lost the freshet-operator lease; exiting so a fresh process competes again");
                std::process::exit(1);
            }
        }
        let _ = task.await;
        tracing::error!("the lease manager stopped; exiting");
        std::process::exit(1);
    });
    Ok(())
}
