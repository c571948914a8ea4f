//! The `DeliveryStream` custom resource (Firehose-style delivery). Its controller arrives
//! with its own issue; the types and the CRD are fixed here so users can write manifests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Buffers records from a `Stream` (or from direct puts) and delivers them, compressed
/// and optionally transformed, to one destination.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "freshet.dev",
    version = "v1alpha1",
    kind = "DeliveryStream",
    namespaced,
    shortname = "fds",
    category = "freshet",
    status = "DeliveryStreamStatus",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source.streamName"),
    printcolumn(name = "Compression", type_ = "string", json_path = ".spec.compression"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStreamSpec {
    #[serde(default)]
    pub source: DeliverySource,
    #[serde(default)]
    pub buffering: BufferingHints,
    #[serde(default)]
    pub compression: Compression,
    /// An HTTP hook that receives each batch and returns it transformed (Firehose's
    /// Lambda transform, as a plain HTTP call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformHook>,
    pub destination: Destination,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySource {
    /// A `Stream` in the same namespace to read from; when absent, producers put records
    /// into the delivery stream directly (an internal stream is created for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub stream_name: Option<String>,
}

/// Deliver when either bound is reached first (Firehose's buffering hints).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BufferingHints {
    #[serde(default = "default_size_mib", rename = "sizeMiB")]
    #[schemars(range(min = 1, max = 128))]
    pub size_mib: u32,
    #[serde(default = "default_interval_seconds")]
    #[schemars(range(min = 0, max = 900))]
    pub interval_seconds: u32,
}

fn default_size_mib() -> u32 {
    5
}

fn default_interval_seconds() -> u32 {
    300
}

impl Default for BufferingHints {
    fn default() -> Self {
        BufferingHints { size_mib: default_size_mib(), interval_seconds: default_interval_seconds() }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Zstd,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransformHook {
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("transform.url must be an http:// or https:// URL"))]
    pub url: String,
    #[serde(default = "default_transform_timeout")]
    #[schemars(range(min = 1, max = 900))]
    pub timeout_seconds: u32,
}

fn default_transform_timeout() -> u32 {
    60
}

/// Exactly one destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.s3), has(self.http), has(self.postgres)].filter(x, x).size() == 1")
    .message("declare exactly one destination: s3, http or postgres"))]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpDestination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresDestination>,
}

/// Amazon S3 or any S3-compatible object store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    #[schemars(length(min = 3, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"))]
    pub bucket: String,
    /// Key prefix; Firehose's default `YYYY/MM/DD/HH/` layout follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub prefix: Option<String>,
    /// Prefix for records that failed transformation or delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub error_output_prefix: Option<String>,
    /// Endpoint URL of an S3-compatible store; AWS S3 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret with `accessKeyId` and `secretAccessKey`; the pod's identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpDestination {
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("http.url must be an http:// or https:// URL"))]
    pub url: String,
    /// Secret whose `accessKey` is sent as `X-Amz-Firehose-Access-Key`, as Firehose does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_secret: Option<String>,
    /// How long a failed batch is retried before it goes to the error output.
    #[serde(default = "default_retry_seconds")]
    #[schemars(range(min = 0, max = 7200))]
    pub retry_duration_seconds: u32,
}

fn default_retry_seconds() -> u32 {
    300
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresDestination {
    /// Secret whose `uri` is a PostgreSQL connection URI.
    pub connection_secret: String,
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_.]*$"))]
    pub table: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStreamStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
