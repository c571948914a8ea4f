//! Ordered teardown on deletion, as the Stream's deletionPolicy says.

use super::*;

/// Ordered teardown: the stream's data (if its policy says Delete), then the brokers, then
/// their volumes (Delete) — only then is the finalizer removed and the rest collected.
pub(super) async fn teardown(stream: &Stream, ctx: &Context) -> Result<Action, Error> {
    if stream.annotations().get(SKIP_TEARDOWN_ANNOTATION).is_some_and(|v| v == "true") {
        let note =
            format!("{SKIP_TEARDOWN_ANNOTATION} is set: brokers, data and volumes are left as they are");
        ctx.event(stream, EventType::Warning, "TeardownSkipped", note).await;
        return Ok(Action::await_change());
    }
    let plan = Plan {
        name: stream.name_any(),
        namespace: stream.namespace().unwrap_or_else(|| "default".into()),
        shards: 0,
        replication: stream.spec.replication,
        brokers: 0,
    };
    let delete_data = stream.spec.deletion_policy == DeletionPolicy::Delete;
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &plan.namespace);
    if let Some(sts) = sts_api.get_opt(&plan.statefulset_name()).await? {
        let ready = sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        if delete_data && ready > 0 {
            let endpoint = (ctx.locate)(&plan);
            let admin = Admin::connect(&endpoint)
                .map_err(|status| Error::Broker { endpoint: endpoint.clone(), status })?;
            admin
                .delete(&plan.name)
                .await
                .map_err(|status| Error::Broker { endpoint: endpoint.clone(), status })?;
            ctx.event(
                stream,
                EventType::Normal,
                "StreamDeleted",
                format!("deleted stream {} and its data", plan.name),
            )
            .await;
        }
        if sts.meta().deletion_timestamp.is_none() {
            sts_api.delete(&plan.statefulset_name(), &DeleteParams::background()).await?;
            ctx.event(
                stream,
                EventType::Normal,
                "BrokersStopping",
                format!("deleting {}", plan.statefulset_name()),
            )
            .await;
        }
        return Err(Error::TeardownPending(format!(
            "waiting for StatefulSet {} to go",
            plan.statefulset_name()
        )));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &plan.namespace);
    let selector = ListParams::default().labels(&plan.selector_string());
    let running = pods.list(&selector).await?.items.len();
    if running > 0 {
        return Err(Error::TeardownPending(format!("waiting for {running} broker pods to stop")));
    }
    if delete_data {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &plan.namespace);
        for pvc in claims.list(&selector).await?.items {
            if pvc.meta().deletion_timestamp.is_none() {
                claims.delete(&pvc.name_any(), &DeleteParams::default()).await?;
            }
        }
    }
    let note =
        if delete_data { "brokers, data and volumes deleted" } else { "brokers deleted; volumes retained" };
    ctx.event(stream, EventType::Normal, "TeardownComplete", note.into()).await;
    Ok(Action::await_change())
}
