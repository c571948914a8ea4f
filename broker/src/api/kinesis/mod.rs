//! The Kinesis Data Streams HTTP API, so the AWS CLI, boto3 and the AWS SDKs work
//! unmodified: `POST /` with `X-Amz-Target: Kinesis_20131202.<Action>`, JSON or CBOR
//! bodies, HTTP/1.1 and HTTP/2 on one port. Every action runs the gRPC API's operation
//! in-process, so both APIs share validation, routing to shard leaders and semantics.

mod actions;
mod auth;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod records;
mod reshard;
mod settings;
mod subscribe;
mod token;
mod wire;

pub use actions::stream_arn;
pub use auth::Credentials;
pub use error::KinesisError;

use crate::api::grpc::Api;
use crate::node::Node;
use actions::Actions;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wire::{Format, Input};

/// Largest request body: PutRecords' 10 MiB of records, base64-encoded in JSON, with keys.
pub const MAX_BODY_BYTES: usize = 16 << 20;
const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// Binds the Kinesis API's port (so a taken port fails the node's start, not later).
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the Kinesis API to {listen} (--kinesis-listen)"))
}

/// How a node serves the Kinesis API.
pub struct Options {
    /// Named in the ARNs it returns.
    pub region: String,
    /// When set, only SigV4-signed requests by these keys are served.
    pub credentials: Option<Credentials>,
    /// When set, connections are TLS (HTTP/2 or HTTP/1.1 by ALPN).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// A client must finish its TLS handshake, then its headers, then its body, within
    /// this long each; a slower one is cut off (408) so it cannot hold a connection.
    pub read_timeout: Duration,
}

/// A TLS acceptor from PEM files: the certificate chain and its private key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the certificate and the private key do not belong together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves one connection (plain or TLS) until the client leaves.
async fn serve_connection<IO>(io: IO, actions: Arc<Actions>, read_timeout: Duration)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(read_timeout).max_buf_size(64 << 10);
    // HTTP/2 connections live long (SubscribeToShard, pooled SDK clients): pings find
    // the peers that vanished without closing them.
    builder
        .http2()
        .max_header_list_size(64 << 10)
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let service = hyper::service::service_fn(move |req| {
        let actions = actions.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&actions, req).await) }
    });
    // A client that goes away mid-request is not an error of ours.
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

/// Serves the Kinesis API on `listener` until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let Options { region, credentials, tls, read_timeout } = options;
    let actions = Arc::new(Actions { api: Api::new(node), region, credentials, read_timeout });
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!("Kinesis API accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let actions = actions.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                // A client must start its request within the timeout: until its first byte
                // the protocol (HTTP/1.1 or HTTP/2) is unknown, and no timer of either runs.
                None => {
                    let mut first = [0u8; 1];
                    if let Ok(Ok(n)) = tokio::time::timeout(read_timeout, stream.peek(&mut first)).await {
                        if n > 0 {
                            serve_connection(stream, actions, read_timeout).await;
                        }
                    }
                }
                // The handshake gets the same deadline as a request's headers.
                Some(tls) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(read_timeout, tls.accept(stream)).await {
                        serve_connection(stream, actions, read_timeout).await;
                    }
                }
            }
        });
    }
}

/// A random request id in the UUID form AWS uses.
fn request_id() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// What a call answers: one body, or (SubscribeToShard) a stream of event frames.
enum Answer {
    Value(wire::Value),
    Events(futures::stream::BoxStream<'static, Bytes>),
}

async fn handle(actions: &Actions, req: Request<Incoming>) -> Response<Body> {
    let id = request_id();
    let format = Format::of_content_type(req.headers().get("content-type").and_then(|v| v.to_str().ok()));
    let response = Response::builder().header("x-amzn-RequestId", &id);
    let (response, body) = match answer(actions, format, req).await {
        Ok(Answer::Value(value)) => (
            response.status(200).header("content-type", format.content_type()),
            Full::new(Bytes::from(wire::encode(format, &value))).boxed_unsync(),
        ),
        Ok(Answer::Events(events)) => {
            use futures::StreamExt;
            let frames = events.map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)));
            (
                response.status(200).header("content-type", "application/vnd.amazon.eventstream"),
                BodyExt::boxed_unsync(StreamBody::new(frames)),
            )
        }
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!(request = %id, "Kinesis API {}: {}", e.kind, e.message);
            }
            (
                response
                    .status(e.status)
                    .header("content-type", format.content_type())
                    .header("x-amzn-ErrorType", e.kind),
                Full::new(Bytes::from(e.body(format))).boxed_unsync(),
            )
        }
    };
    response.body(body).expect("valid response parts")
}

async fn answer(actions: &Actions, format: Format, req: Request<Incoming>) -> Result<Answer, KinesisError> {
    if req.method() != hyper::Method::POST {
        return Err(KinesisError::unknown_operation(format!(
            "{} is not a Kinesis call: Kinesis calls are POST / with an X-Amz-Target header.",
            req.method()
        )));
    }
    // With credentials configured, who is calling is checked first, as AWS does.
    if let Some(creds) = &actions.credentials {
        auth::check_caller(creds, req.headers())?;
    }
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let action = match target.strip_prefix(TARGET_PREFIX) {
        Some(a) if !a.is_empty() => a.to_string(),
        _ => {
            return Err(KinesisError::unknown_operation(format!(
                "Unknown operation '{target}': the X-Amz-Target header must be {TARGET_PREFIX}<Action>."
            )))
        }
    };
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_BODY_BYTES);
    let body = match tokio::time::timeout(actions.read_timeout, body.collect()).await {
        Err(_) => return Err(KinesisError::new(408, "RequestTimeoutException", "The request body took too long to arrive.")),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(KinesisError::new(
                413,
                "ValidationException",
                format!("The request body exceeds {MAX_BODY_BYTES} bytes (PutRecords takes at most 10 MiB of records)."),
            ))
        }
        Ok(Err(e)) => return Err(KinesisError::serialization(format!("The request body could not be read: {e}"))),
        Ok(Ok(b)) => b.to_bytes(),
    };
    if let Some(creds) = &actions.credentials {
        auth::verify(creds, &parts, &body, crate::now_ms())?;
    }
    let input = Input::new(wire::decode(format, &body)?)?;
    if action == "SubscribeToShard" {
        use futures::StreamExt;
        return Ok(Answer::Events(actions.subscribe_to_shard(input, format).await?.boxed()));
    }
    Ok(Answer::Value(actions.run(&action, format, input).await?))
}
