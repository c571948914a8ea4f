//! Node-to-node service: Raft frames for every group, and writes forwarded to leaders.

use crate::error::{Error, Result};
use crate::meta::{MetaCommand, MetaReply, META_GROUP};
use crate::node::{Node, ShardPiece, MAX_HOPS};
use crate::pb;
use crate::raft::network::{self, serve_frame};
use crate::raft::{decode, encode};
use crate::shard::writer::RecordOutcome;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

/// How long one frame of a batch may take here. A batch is answered whole, and a peer
/// keeps only a couple of batches in flight (`raft/network.rs`), so one group that does
/// not answer must not hold up every other group's frames; the sender gave up on an append
/// long before this anyway (openraft allows it one heartbeat interval) and will send again.
const FRAME_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

pub struct PeerService {
    pub node: Arc<Node>,
}

fn body<T: serde::Serialize>(v: &T) -> Result<Response<pb::PeerWriteReply>, Status> {
    encode(v)
        .map(|body| Response::new(pb::PeerWriteReply { body }))
        .map_err(|e| Status::internal(e.to_string()))
}

/// Replies to a `RaftStream`, in the order frames were served.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<pb::RaftFrames, Status>> + Send>>;

impl PeerService {
    /// Serves one frame of a batch within `FRAME_DEADLINE`; a failure is answered in the
    /// frame's own error encoding, so the sender treats it alike. Echoes the frame's call id.
    async fn answer(&self, frame: pb::RaftFrame) -> pb::RaftFrame {
        let (group_id, kind, call) = (frame.group_id, frame.kind, frame.call);
        let error = match tokio::time::timeout(FRAME_DEADLINE, self.serve(frame)).await {
            Ok(Ok(reply)) => return pb::RaftFrame { call, ..reply },
            Ok(Err(status)) => status.message().to_string(),
            Err(_) => format!("group {group_id} did not answer within {FRAME_DEADLINE:?}"),
        };
        pb::RaftFrame { group_id, kind, body: encode(&Err::<(), String>(error)).unwrap_or_default(), call }
    }

    /// Hands one Raft frame to the local replica of its group.
    async fn serve(&self, frame: pb::RaftFrame) -> Result<pb::RaftFrame, Status> {
        let out = if frame.group_id == META_GROUP {
            serve_frame(&self.node.meta, frame.kind, &frame.body).await?
        } else {
            let replica = self.node.shard(frame.group_id).ok_or_else(|| {
                // Not started yet (metadata still catching up) or deleted: the sender backs off.
                Status::unavailable(format!("no replica of group {} on this node", frame.group_id))
            })?;
            match frame.kind {
                network::HIBERNATE => {
                    let (leader, term, last): (u64, u64, u64) =
                        decode(&frame.body).map_err(|e| Status::invalid_argument(e.to_string()))?;
                    let sleeps = crate::node::hibernate::follower_sleeps(&replica, leader, term, last);
                    encode(&Ok::<bool, String>(sleeps)).map_err(|e| Status::internal(e.to_string()))?
                }
                network::WAKE => {
                    replica.hibernation.wake();
                    encode(&Ok::<bool, String>(true)).map_err(|e| Status::internal(e.to_string()))?
                }
                network::VOTE | network::PRE_VOTE | network::TRANSFER_LEADER | network::SNAPSHOT => {
                    // An election or a catch-up is under way: the group must be awake.
                    replica.hibernation.wake();
                    serve_frame(&replica.raft, frame.kind, &frame.body).await?
                }
                _ => serve_frame(&replica.raft, frame.kind, &frame.body).await?,
            }
        };
        Ok(pb::RaftFrame { group_id: frame.group_id, kind: frame.kind, body: out, call: frame.call })
    }
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    async fn raft(&self, req: Request<pb::RaftFrame>) -> Result<Response<pb::RaftFrame>, Status> {
        Ok(Response::new(self.serve(req.into_inner()).await?))
    }

    async fn raft_batch(&self, req: Request<pb::RaftFrames>) -> Result<Response<pb::RaftFrames>, Status> {
        let frames = req.into_inner().frames;
        let replies = futures::future::join_all(frames.into_iter().map(|f| self.answer(f))).await;
        Ok(Response::new(pb::RaftFrames { frames: replies }))
    }

    type RaftStreamStream = FrameStream;

    /// Serves each incoming batch's frames together, as `raft_batch` does, but sends each
    /// reply as soon as it is ready, gathered with whatever other replies are ready then.
    async fn raft_stream(
        &self,
        req: Request<tonic::Streaming<pb::RaftFrames>>,
    ) -> Result<Response<FrameStream>, Status> {
        if !self.node.config.peer_streams {
            return Err(Status::unimplemented("Raft streams are off on this node (--peer-streams=false)"));
        }
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::unbounded_channel::<pb::RaftFrame>();
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Ok(Some(batch)) = incoming.message().await {
                let (service, tx) = (PeerService { node: node.clone() }, tx.clone());
                tokio::spawn(async move {
                    let mut replies: FuturesUnordered<_> =
                        batch.frames.into_iter().map(|f| service.answer(f)).collect();
                    while let Some(reply) = replies.next().await {
                        // One-way frames (commit news) are served, not answered.
                        if reply.call != network::ONE_WAY && tx.send(reply).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let replies = futures::stream::unfold(rx, |mut rx| async move {
            let mut frames = vec![rx.recv().await?];
            while frames.len() < network::MAX_FRAMES_PER_BATCH {
                match rx.try_recv() {
                    Ok(f) => frames.push(f),
                    Err(_) => break,
                }
            }
            Some((Ok(pb::RaftFrames { frames }), rx))
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn shard_write(&self, req: Request<pb::PeerWrite>) -> Result<Response<pb::PeerWriteReply>, Status> {
        let req = req.into_inner();
        let pieces: Vec<ShardPiece> =
            decode(&req.body).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if req.hops > MAX_HOPS {
            let e = Error::unavailable("too many forwarding hops; retry");
            return body(&pieces.iter().map(|_| Err(e.clone())).collect::<Vec<Result<Vec<RecordOutcome>>>>());
        }
        body(&self.node.write_pieces(pieces, req.hops, req.spread.max(1)).await)
    }

    async fn meta_write(&self, req: Request<pb::PeerWrite>) -> Result<Response<pb::PeerWriteReply>, Status> {
        let cmd: MetaCommand =
            decode(&req.into_inner().body).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let result: Option<Result<MetaReply>> = self.node.meta_write_local(cmd).await;
        match result {
            Some(r) => body(&r),
            None => Err(Status::unavailable("not the metadata leader")),
        }
    }

    async fn join(&self, req: Request<pb::JoinRequest>) -> Result<Response<pb::PeerWriteReply>, Status> {
        let req = req.into_inner();
        self.node.join(req.node_id, req.address).await.map_err(Status::from)?;
        body(&())
    }

    async fn local_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(pb::ClusterStatusResponse { nodes: vec![], groups: self.node.local_status() }))
    }

    async fn ping(&self, _req: Request<pb::PingRequest>) -> Result<Response<pb::PingReply>, Status> {
        Ok(Response::new(pb::PingReply {}))
    }

    async fn meta_read_index(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::PeerWriteReply>, Status> {
        match self.node.meta.ensure_linearizable(openraft::ReadPolicy::ReadIndex).await {
            Ok(read) => body(&read.log_id().index),
            Err(e) => Err(Status::unavailable(format!("not the metadata leader: {e}"))),
        }
    }
}
