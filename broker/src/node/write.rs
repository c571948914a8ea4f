//! The shard write path of a node: a piece of a request goes to its shard's writer when
//! this node leads the shard, else to the leader's node; pieces for one node travel together.

use super::{Node, ShardPiece, LEADER_WAIT, MAX_HOPS};
use crate::error::{Error, ErrorKind, Result};
use crate::pb;
use crate::raft::{decode, encode, GroupId, NodeId, RecordInput};
use crate::shard::writer::{RecordOutcome, WriteRejection, WriteRequest};
use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::oneshot;

impl Node {
    /// Writes records to one shard, through its leader wherever it is; `spread` is how many
    /// shards the producer's request covers.
    pub async fn shard_write(
        &self,
        group: GroupId,
        replicas: &[NodeId],
        records: Vec<RecordInput>,
        hops: u32,
        spread: u32,
    ) -> Result<Vec<RecordOutcome>> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let leader_hint = match self.shard(group) {
                Some(local) => {
                    let (tx, rx) = oneshot::channel();
                    let req = WriteRequest { records: records.clone(), spread, reply: tx };
                    if local.writer.send(req).await.is_err() {
                        return Err(Error::unavailable("shard replica is shutting down; retry"));
                    }
                    match rx.await {
                        Ok(Ok(outcomes)) => return Ok(outcomes),
                        Ok(Err(WriteRejection::Closed)) => {
                            return Ok(vec![RecordOutcome::Closed; records.len()])
                        }
                        Ok(Err(WriteRejection::Failed(e))) => return Err(e),
                        Ok(Err(WriteRejection::NotLeader { leader })) => leader,
                        Err(_) => return Err(Error::unavailable("shard replica stopped; retry")),
                    }
                }
                None => replicas.iter().copied().find(|r| *r != self.id),
            };
            if let Some(addr) = leader_hint.filter(|l| *l != self.id).and_then(|l| self.addr_of(l)) {
                if hops >= MAX_HOPS {
                    return Err(Error::unavailable("shard leadership is moving; retry"));
                }
                let piece = ShardPiece { group, replicas: replicas.to_vec(), records: records.clone() };
                match self.forward_pieces(&addr, vec![piece], hops + 1, spread).await {
                    Ok(mut outcomes) if outcomes.len() == 1 => return outcomes.remove(0),
                    Ok(_) => return Err(Error::internal("forwarded write answered for the wrong shards")),
                    // Retried only when the request provably never left: a connection that
                    // broke mid-call may have written, and only the producer may retry that.
                    Err(s) if crate::client::never_sent(&s) => {
                        tracing::debug!(group, "leader {addr} unreachable: {}", s.message())
                    }
                    Err(s) => {
                        let mut e: Error = s.into();
                        if e.kind == ErrorKind::Unavailable {
                            e.message = format!(
                                "lost contact with the shard leader; the outcome is unknown, retry: {}",
                                e.message
                            );
                        }
                        return Err(e);
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("shard group {group} has no reachable leader; is a majority of its replicas up? Retry shortly"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node this node believes leads `group`, from its own replica of it.
    fn leader_hint(&self, group: GroupId) -> Option<NodeId> {
        self.shard(group).and_then(|r| r.raft.metrics().borrow_watched().current_leader)
    }

    /// Sends pieces for shards led by the node at `addr` in one message.
    async fn forward_pieces(
        &self,
        addr: &str,
        pieces: Vec<ShardPiece>,
        hops: u32,
        spread: u32,
    ) -> Result<Vec<Result<Vec<RecordOutcome>>>, tonic::Status> {
        let body = encode(&pieces).map_err(|e| tonic::Status::internal(e.to_string()))?;
        let req = pb::PeerWrite { group_id: 0, body, hops, spread };
        let reply = self.pool.peer(addr).shard_write(req).await?;
        decode(&reply.into_inner().body).map_err(|e| tonic::Status::internal(e.to_string()))
    }

    /// Writes records of several shards, the pieces of one request `spread` over that many
    /// shards. Pieces for shards another node leads travel to it together, one message per
    /// node rather than one per shard.
    pub async fn write_pieces(
        &self,
        pieces: Vec<ShardPiece>,
        hops: u32,
        spread: u32,
    ) -> Vec<Result<Vec<RecordOutcome>>> {
        let n = pieces.len();
        let mut direct = Vec::new();
        let mut by_node: BTreeMap<NodeId, Vec<(usize, ShardPiece)>> = BTreeMap::new();
        for (i, piece) in pieces.into_iter().enumerate() {
            match self.leader_hint(piece.group) {
                Some(l) if l != self.id && hops == 0 && self.addr_of(l).is_some() => {
                    by_node.entry(l).or_default().push((i, piece))
                }
                _ => direct.push((i, piece)),
            }
        }
        let direct = direct.into_iter().map(|(i, p)| async move {
            vec![(i, self.shard_write(p.group, &p.replicas, p.records, hops, spread).await)]
        });
        let remote = by_node.into_iter().map(|(node, list)| async move {
            let addr = self.addr_of(node).expect("checked above");
            let (idx, pieces): (Vec<usize>, Vec<ShardPiece>) = list.into_iter().unzip();
            match self.forward_pieces(&addr, pieces.clone(), hops + 1, spread).await {
                Ok(outcomes) if outcomes.len() == idx.len() => idx.into_iter().zip(outcomes).collect(),
                // Never reached the peer: the per-shard path finds the current leaders.
                Err(s) if crate::client::never_sent(&s) => {
                    let mut out = Vec::new();
                    for (i, p) in idx.into_iter().zip(pieces) {
                        out.push((i, self.shard_write(p.group, &p.replicas, p.records, hops, spread).await));
                    }
                    out
                }
                other => {
                    let e = match other {
                        Err(s) => Error::unavailable(format!(
                            "lost contact with the shard leader; the outcome is unknown, retry: {}",
                            s.message()
                        )),
                        Ok(_) => Error::internal("forwarded write answered for the wrong shards"),
                    };
                    idx.into_iter().map(|i| (i, Err(e.clone()))).collect()
                }
            }
        });
        let (a, b) =
            futures::future::join(futures::future::join_all(direct), futures::future::join_all(remote)).await;
        let mut out: Vec<Option<Result<Vec<RecordOutcome>>>> = (0..n).map(|_| None).collect();
        for (i, r) in a.into_iter().chain(b).flatten() {
            out[i] = Some(r);
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::internal("write piece lost")))).collect()
    }
}
