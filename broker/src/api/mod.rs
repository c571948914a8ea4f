//! The node's network face: the public Freshet gRPC API and node-to-node Peer traffic,
//! served on one port.

pub mod grpc;
pub mod peer;

use crate::node::Node;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serves both gRPC services until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api = crate::pb::freshet_server::FreshetServer::new(grpc::Api::new(node.clone()))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let peer = crate::pb::peer_server::PeerServer::new(peer::PeerService { node })
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(api)
        .add_service(peer)
        .serve_with_shutdown(listen, shutdown)
        .await?;
    Ok(())
}
