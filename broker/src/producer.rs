//! A leader-aware producer over the native gRPC API: each record goes straight to the node
//! that leads its shard, as a Kafka producer sends to a partition's leader.
//!
//! Any node accepts any write and forwards it, so this is only a shortcut. It saves the
//! forwarding hop that two writes in three take on a 3-node cluster (paired runs of
//! 2026-12-03, one shard: 18-31% less server CPU per single put; docs/benchmarks.md). The
//! shard map (hash-key ranges and leaders) comes from DescribeStream and node addresses
//! from ClusterStatus. Both are refreshed every few seconds; a stale map costs a hop, never
//! a wrong write, because the node that gets a record routes it again itself.

use crate::client::{never_sent, Client};
use crate::hashkey::{route_key, HashKeyRange};
use crate::limits;
use crate::pb;
use crate::raft::NodeId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tonic::Status;

/// How long a stream's shard map is trusted: leaders move on failover and rebalancing.
const MAP_TTL: Duration = Duration::from_secs(5);
/// How long a node that could not be reached is left out: a client outside Kubernetes may
/// reach the cluster only through its one endpoint, and must not retry pods every refresh.
const SHUN_FOR: Duration = Duration::from_secs(60);

/// The open shards of a stream and the node leading each, as last described.
#[derive(Debug, Clone, Default)]
pub struct ShardMap {
    shards: Vec<(HashKeyRange, Option<NodeId>)>,
}

impl ShardMap {
    /// The open shards of `description` (closed parents of a reshard take no writes).
    pub fn from_description(description: &pb::StreamDescription) -> ShardMap {
        let shards = description
            .shards
            .iter()
            .filter(|s| s.ending_sequence_number.is_none())
            .filter_map(|s| {
                let start = s.starting_hash_key.parse().ok()?;
                let end = s.ending_hash_key.parse().ok()?;
                Some((HashKeyRange { start, end }, s.leader))
            })
            .collect();
        ShardMap { shards }
    }

    /// The node leading the shard that owns `hash_key`, if known.
    pub fn leader_of(&self, hash_key: u128) -> Option<NodeId> {
        self.shards.iter().find(|(range, _)| range.contains(hash_key)).and_then(|(_, leader)| *leader)
    }

    /// Record indices grouped by the node to send them to (`None`: any node, the
    /// bootstrap one), in a stable order so a batch for one node stays whole.
    pub fn plan(&self, records: &[pb::PutRecordsEntry]) -> BTreeMap<Option<NodeId>, Vec<usize>> {
        let mut plan: BTreeMap<Option<NodeId>, Vec<usize>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let node = route_key(&r.partition_key, r.explicit_hash_key.as_deref())
                .ok()
                .and_then(|key| self.leader_of(key));
            plan.entry(node).or_default().push(i);
        }
        plan
    }
}

/// A producer for any number of streams; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Producer {
    bootstrap: Client,
    /// Off: everything goes to the bootstrap node, which forwards.
    routing: bool,
    nodes: Arc<RwLock<HashMap<NodeId, Client>>>,
    shunned: Arc<RwLock<HashMap<NodeId, Instant>>>,
    maps: Arc<RwLock<HashMap<String, Described>>>,
}

/// A stream's shard map and when it was described.
type Described = (Instant, Arc<ShardMap>);

impl Producer {
    /// A producer that learns the cluster through the node at `endpoint`.
    pub fn new(endpoint: &str) -> anyhow::Result<Producer> {
        Ok(Producer {
            bootstrap: Client::new(endpoint)?,
            routing: true,
            nodes: Default::default(),
            shunned: Default::default(),
            maps: Default::default(),
        })
    }

    /// A producer that sends everything to the node at `endpoint` (which forwards), for a
    /// client that can reach the cluster through that one address only.
    pub fn through(endpoint: &str) -> anyhow::Result<Producer> {
        Ok(Producer { routing: false, ..Producer::new(endpoint)? })
    }

    /// The stream's shard map, described again once it is older than `MAP_TTL`. Without
    /// one (the stream is unknown, or the node did not answer) everything goes to the
    /// bootstrap node, which answers with the error the caller should see.
    async fn map(&self, stream: &str) -> Arc<ShardMap> {
        if !self.routing {
            return Arc::default();
        }
        let (fresh, stale) = self.cached(stream);
        if let Some(map) = fresh {
            return map;
        }
        let mut described = self.bootstrap.describe(stream).await;
        // The bootstrap node may be down: any node can describe the stream.
        if described.as_ref().is_err_and(never_sent) {
            let others: Vec<Client> = self.nodes.read().expect("nodes lock").values().cloned().collect();
            for other in others {
                described = other.describe(stream).await;
                if described.is_ok() {
                    break;
                }
            }
        }
        let map = match described {
            Ok(d) => Arc::new(ShardMap::from_description(&d)),
            // Better a stale map than none: the nodes route again anyway.
            Err(_) => match stale {
                Some(map) => map,
                None => return Arc::default(),
            },
        };
        if self.lacks_a_leader_of(&map) {
            self.learn_nodes().await;
        }
        self.maps.write().expect("maps lock").insert(stream.to_string(), (Instant::now(), map.clone()));
        map
    }

    /// The cached map of `stream`: (fresh one, stale one).
    fn cached(&self, stream: &str) -> (Option<Arc<ShardMap>>, Option<Arc<ShardMap>>) {
        match self.maps.read().expect("maps lock").get(stream) {
            Some((at, map)) if at.elapsed() < MAP_TTL => (Some(map.clone()), None),
            Some((_, map)) => (None, Some(map.clone())),
            None => (None, None),
        }
    }

    fn lacks_a_leader_of(&self, map: &ShardMap) -> bool {
        let nodes = self.nodes.read().expect("nodes lock");
        map.shards.iter().filter_map(|(_, l)| *l).any(|l| !nodes.contains_key(&l))
    }

    /// Connections (lazy) to every node the cluster names.
    async fn learn_nodes(&self) {
        let Ok(status) = self.bootstrap.api.clone().cluster_status(pb::ClusterStatusRequest {}).await else {
            return;
        };
        let status = status.into_inner();
        let mut nodes = self.nodes.write().expect("nodes lock");
        for n in status.nodes {
            if let std::collections::hash_map::Entry::Vacant(slot) = nodes.entry(n.id) {
                if let Ok(client) = Client::new(&format!("http://{}", n.address)) {
                    slot.insert(client);
                }
            }
        }
    }

    /// The connection for `node`, and the node it dials (`None`: the bootstrap node, when
    /// `node` is unknown or was unreachable within `SHUN_FOR`).
    fn client(&self, node: Option<NodeId>) -> (Client, Option<NodeId>) {
        let shunned = |n: &NodeId| {
            self.shunned.read().expect("shunned lock").get(n).is_some_and(|at| at.elapsed() < SHUN_FOR)
        };
        match node
            .filter(|n| !shunned(n))
            .and_then(|n| Some((self.nodes.read().expect("nodes lock").get(&n)?.clone(), n)))
        {
            Some((client, n)) => (client, Some(n)),
            None => (self.bootstrap.clone(), None),
        }
    }

    /// Leaves out a node that could not be reached for a while.
    fn unreachable(&self, node: NodeId) {
        self.shunned.write().expect("shunned lock").insert(node, Instant::now());
        // Its shards have or will have other leaders: describe them again at next use.
        if let Some(expired) = Instant::now().checked_sub(MAP_TTL) {
            for (at, _) in self.maps.write().expect("maps lock").values_mut() {
                *at = expired;
            }
        }
    }

    /// PutRecord, sent to the shard's leader.
    pub async fn put_record(&self, req: pb::PutRecordRequest) -> Result<pb::PutRecordResponse, Status> {
        let map = self.map(&req.stream_name).await;
        let node = route_key(&req.partition_key, req.explicit_hash_key.as_deref())
            .ok()
            .and_then(|key| map.leader_of(key));
        self.send(node, req, |mut c, r| async move { c.api.put_record(r).await }).await
    }

    /// PutRecords, split by shard leader and sent to each in parallel; results come back
    /// in the order of `req.records`. A batch with an invalid record is sent whole, so the
    /// node rejects it whole and nothing of it is written.
    pub async fn put_records(&self, req: pb::PutRecordsRequest) -> Result<pb::PutRecordsResponse, Status> {
        let map = self.map(&req.stream_name).await;
        let plan = if valid(&req.records) { map.plan(&req.records) } else { BTreeMap::new() };
        if plan.len() <= 1 {
            let node = plan.keys().next().copied().flatten();
            return self.send_part(node, req).await;
        }
        let parts = plan.into_iter().map(|(node, indices)| {
            let part = pb::PutRecordsRequest {
                stream_name: req.stream_name.clone(),
                records: indices.iter().map(|&i| req.records[i].clone()).collect(),
            };
            async move { (indices, self.send_part(node, part).await) }
        });
        let answers = futures::future::join_all(parts).await;
        if let Some(Err(s)) = answers.iter().map(|(_, r)| r).find(|r| r.is_err()) {
            // Every part failed alike (the stream is missing, say): nothing was written.
            if answers.iter().all(|(_, r)| r.is_err()) {
                return Err(s.clone());
            }
        }
        let mut records = vec![pb::PutRecordsResult::default(); req.records.len()];
        for (indices, answer) in answers {
            match answer {
                // One result per record, or the part cannot be trusted record by record.
                Ok(r) if r.records.len() == indices.len() => {
                    for (i, result) in indices.into_iter().zip(r.records) {
                        records[i] = result;
                    }
                }
                other => {
                    let why = match other {
                        Err(s) => s.message().to_string(),
                        Ok(_) => "a node answered for the wrong number of records".to_string(),
                    };
                    for i in indices {
                        records[i] = pb::PutRecordsResult {
                            error_code: "InternalFailure".into(),
                            error_message: format!("{why}; the outcome is unknown, retry"),
                            ..Default::default()
                        };
                    }
                }
            }
        }
        let failed_record_count = records.iter().filter(|r| !r.error_code.is_empty()).count() as u32;
        Ok(pb::PutRecordsResponse { failed_record_count, records })
    }

    async fn send_part(
        &self,
        node: Option<NodeId>,
        part: pb::PutRecordsRequest,
    ) -> Result<pb::PutRecordsResponse, Status> {
        self.send(node, part, |mut c, r| async move { c.api.put_records(r).await }).await
    }

    /// Makes `call` with `req` on `node`'s connection. A call that provably never left
    /// (connect error) is made again through the bootstrap node, and the node is left out
    /// for `SHUN_FOR`; any other failure may have written, so it is returned as it is.
    /// The request is kept for that resend: a clone shares the record payloads (`Bytes`).
    async fn send<Req, Resp, Fut>(
        &self,
        node: Option<NodeId>,
        req: Req,
        call: impl Fn(Client, Req) -> Fut,
    ) -> Result<Resp, Status>
    where
        Req: Clone,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let (client, dialled) = self.client(node);
        match (call(client, req.clone()).await, dialled) {
            (Err(s), Some(node)) if never_sent(&s) => {
                self.unreachable(node);
                Ok(call(self.bootstrap.clone(), req).await?.into_inner())
            }
            (r, _) => Ok(r?.into_inner()),
        }
    }
}

/// Whether a node would accept every record of the batch (the checks of the API itself).
fn valid(records: &[pb::PutRecordsEntry]) -> bool {
    let total: usize = records.iter().map(|e| e.data.len() + e.partition_key.len()).sum();
    limits::validate_put_records_batch(records.len(), total).is_ok()
        && records.iter().enumerate().all(|(i, e)| {
            limits::validate_partition_key(&e.partition_key, Some(i)).is_ok()
                && limits::validate_data(&e.data, Some(i)).is_ok()
                && e.explicit_hash_key
                    .as_deref()
                    .is_none_or(|k| crate::hashkey::parse_explicit_hash_key(k).is_ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(leaders: &[Option<NodeId>]) -> pb::StreamDescription {
        let ranges = HashKeyRange::split_evenly(leaders.len() as u32);
        pb::StreamDescription {
            shards: ranges
                .iter()
                .zip(leaders)
                .enumerate()
                .map(|(i, (r, l))| pb::Shard {
                    shard_id: format!("shardId-{i:012}"),
                    starting_hash_key: r.start.to_string(),
                    ending_hash_key: r.end.to_string(),
                    leader: *l,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn entry(key: &str, explicit: Option<&str>) -> pb::PutRecordsEntry {
        pb::PutRecordsEntry {
            partition_key: key.into(),
            data: b"x".to_vec().into(),
            explicit_hash_key: explicit.map(String::from),
        }
    }

    #[test]
    fn records_go_to_the_leader_of_the_shard_owning_their_hash_key() {
        let map = ShardMap::from_description(&description(&[Some(1), Some(2), None, Some(3)]));
        let quarter = u128::MAX / 4;
        assert_eq!(map.leader_of(0), Some(1));
        assert_eq!(map.leader_of(quarter + 5), Some(2));
        assert_eq!(map.leader_of(2 * quarter + 5), None, "no leader known: any node");
        assert_eq!(map.leader_of(u128::MAX), Some(3));
        let records = [
            entry("a", Some("0")),
            entry("b", Some(&(3 * quarter + 9).to_string())),
            entry("c", Some("1")),
            entry("d", Some(&(2 * quarter + 9).to_string())),
        ];
        let plan = map.plan(&records);
        assert_eq!(plan[&Some(1)], vec![0, 2], "order within a node is kept");
        assert_eq!(plan[&Some(3)], vec![1]);
        assert_eq!(plan[&None], vec![3]);
    }

    #[test]
    fn closed_shards_take_no_writes() {
        let mut d = description(&[Some(1), Some(2)]);
        d.shards[0].ending_sequence_number = Some("49".into());
        let map = ShardMap::from_description(&d);
        assert_eq!(map.leader_of(0), None, "the closed parent's range is not routed to its old leader");
        assert_eq!(map.leader_of(u128::MAX), Some(2));
    }

    #[test]
    fn a_batch_with_an_invalid_record_is_not_split() {
        assert!(valid(&[entry("a", None), entry("b", Some("7"))]));
        assert!(!valid(&[entry("a", None), entry("", None)]), "empty partition key");
        assert!(!valid(&[entry("a", None), entry("b", Some("-1"))]), "bad explicit hash key");
        assert!(!valid(&[]), "an empty batch");
    }
}
