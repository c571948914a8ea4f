//! The two Services: a headless one that names each broker for Raft, and the client one.

use super::{owned_meta, Plan, GRPC_PORT, KINESIS_PORT};
use freshet_crds::Stream;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn port(name: &str, port: i32, app_protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        app_protocol: Some(app_protocol.into()),
        ..ServicePort::default()
    }
}

/// Headless, and publishing pods before they are Ready: a broker becomes ready only
/// after it has found its peers, so peers must be resolvable first.
pub fn peer_service(stream: &Stream, plan: &Plan) -> Service {
    Service {
        metadata: owned_meta(stream, plan, plan.peer_service_name()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(plan.selector_labels()),
            ports: Some(vec![port("grpc", GRPC_PORT, "kubernetes.io/h2c")]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// What producers and consumers connect to: gRPC and the Kinesis HTTP API, ready pods only.
pub fn client_service(stream: &Stream, plan: &Plan) -> Service {
    Service {
        metadata: owned_meta(stream, plan, plan.client_service_name()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(plan.selector_labels()),
            ports: Some(vec![
                port("grpc", GRPC_PORT, "kubernetes.io/h2c"),
                port("kinesis", KINESIS_PORT, "http"),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::stream;
    use crate::desired::Settings;

    #[test]
    fn peers_resolve_before_ready_and_clients_reach_only_ready_pods() {
        let st = stream(serde_json::json!({"shards": 2}));
        let plan = Plan::for_stream(&st, &Settings::default()).unwrap();
        let peers = peer_service(&st, &plan).spec.unwrap();
        assert_eq!(peers.cluster_ip.as_deref(), Some("None"));
        assert_eq!(peers.publish_not_ready_addresses, Some(true));
        assert_eq!(peers.selector.as_ref(), Some(&plan.selector_labels()));

        let client = client_service(&st, &plan);
        assert_eq!(client.metadata.name.as_deref(), Some("clicks"));
        let spec = client.spec.unwrap();
        assert_eq!(spec.publish_not_ready_addresses, None);
        let ports: Vec<(String, i32)> =
            spec.ports.unwrap().into_iter().map(|p| (p.name.unwrap(), p.port)).collect();
        assert_eq!(ports, vec![("grpc".into(), 50051), ("kinesis".into(), 4567)]);
    }
}
