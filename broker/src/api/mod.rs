//! The node's network face: the public Freshet gRPC API and node-to-node Peer traffic,
//! served on one port, and the Kinesis HTTP API on another.

pub mod grpc;
pub mod kinesis;
pub mod peer;

use crate::node::Node;
use std::net::SocketAddr;
use std::sync::Arc;

/// The gRPC health service name a readiness probe asks for; the empty name (liveness)
/// answers SERVING for as long as the process serves at all.
pub const READINESS_SERVICE: &str = "freshet.ready";

/// Keeps the readiness status current: SERVING once this node has joined the cluster
/// (a member that knows the metadata leader and the cluster's metadata).
async fn report_readiness(node: Arc<Node>, health: tonic_health::server::HealthReporter) {
    let mut last = None;
    loop {
        let ready = node.is_ready();
        if last != Some(ready) {
            let status = if ready {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            health.set_service_status(READINESS_SERVICE, status).await;
            last = Some(ready);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Serves the Freshet, Peer and health gRPC services until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api = crate::pb::freshet_server::FreshetServer::new(grpc::Api::new(node.clone()))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let peer = crate::pb::peer_server::PeerServer::new(peer::PeerService { node: node.clone() })
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(report_readiness(node.clone(), health));
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(api)
        .add_service(peer)
        .serve_with_shutdown(listen, shutdown)
        .await?;
    Ok(())
}
