//! A small Rust client over the native gRPC API, used by the `freshet` CLI and the tests.

pub use crate::pb;
use crate::pb::freshet_client::FreshetClient;
use tonic::transport::Channel;

/// True for a call that provably never reached its server (it could not connect, DNS
/// included), so sending it elsewhere cannot write it twice. Only the client side's own
/// connect failure counts: a server's answer never carries one, whatever its text says.
pub fn never_sent(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

#[derive(Clone)]
pub struct Client {
    pub api: FreshetClient<Channel>,
}

impl Client {
    /// Connects lazily: the first call dials, so a client can be made before the node is up.
    pub fn new(endpoint: &str) -> anyhow::Result<Client> {
        let channel = Channel::from_shared(endpoint.to_string())?
            .connect_timeout(std::time::Duration::from_secs(3))
            .tcp_nodelay(true)
            .connect_lazy();
        let api = FreshetClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        Ok(Client { api })
    }

    pub async fn describe(&self, stream: &str) -> Result<pb::StreamDescription, tonic::Status> {
        let req = pb::DescribeStreamRequest { stream_name: stream.to_string() };
        Ok(self.api.clone().describe_stream(req).await?.into_inner())
    }

    pub async fn shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        kind: pb::IteratorType,
        sequence: Option<String>,
        timestamp_ms: Option<i64>,
    ) -> Result<String, tonic::Status> {
        let req = pb::GetShardIteratorRequest {
            stream_name: stream.to_string(),
            shard_id: shard_id.to_string(),
            iterator_type: kind as i32,
            starting_sequence_number: sequence,
            timestamp_ms,
        };
        Ok(self.api.clone().get_shard_iterator(req).await?.into_inner().shard_iterator)
    }

    /// Reads one shard from an iterator until it is caught up (an empty page with
    /// MillisBehindLatest 0) or the shard ends; returns every record in order.
    pub async fn read_to_end(&self, mut iterator: String) -> Result<Vec<pb::Record>, tonic::Status> {
        let mut out = Vec::new();
        loop {
            let page = self
                .api
                .clone()
                .get_records(pb::GetRecordsRequest { shard_iterator: iterator.clone(), limit: Some(10_000) })
                .await?
                .into_inner();
            let empty = page.records.is_empty();
            out.extend(page.records);
            match page.next_shard_iterator {
                Some(next) if !(empty && page.millis_behind_latest == 0) => iterator = next,
                _ => return Ok(out),
            }
        }
    }
}

/// A record as a user wrote it: KPL aggregates are unpacked into their user records, which
/// share the Kinesis record's sequence number and are told apart by `sub_sequence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub sequence_number: String,
    pub sub_sequence: Option<u64>,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub approximate_arrival_timestamp_ms: i64,
}

/// Unpacks KPL aggregates (`crate::kpl`); other records pass through as they are.
pub fn user_records(records: &[pb::Record]) -> Vec<UserRecord> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        match crate::kpl::deaggregate(&r.data) {
            Some(users) => out.extend(users.into_iter().map(|u| UserRecord {
                sequence_number: r.sequence_number.clone(),
                sub_sequence: Some(u.sub_sequence),
                partition_key: u.partition_key,
                data: u.data,
                approximate_arrival_timestamp_ms: r.approximate_arrival_timestamp_ms,
            })),
            None => out.push(UserRecord {
                sequence_number: r.sequence_number.clone(),
                sub_sequence: None,
                partition_key: r.partition_key.clone(),
                data: r.data.to_vec(),
                approximate_arrival_timestamp_ms: r.approximate_arrival_timestamp_ms,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused connection and an unknown host are "never sent"; a server's own answer is
    /// not, even when its text speaks of connections.
    #[tokio::test]
    async fn only_a_failed_connect_counts_as_never_sent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        for endpoint in [format!("http://127.0.0.1:{port}"), "http://no-such-host.invalid:50051".to_string()]
        {
            let client = Client::new(&endpoint).unwrap();
            let status = client.describe("s").await.unwrap_err();
            assert!(never_sent(&status), "{endpoint}: {status:?}");
        }
        let answered = tonic::Status::unavailable("lost contact with the shard leader: tcp connect error");
        assert!(!never_sent(&answered));
    }
}
