//! Raft traffic between nodes: one HTTP/2 connection per pair of nodes carries the frames
//! of every group, each tagged with its group id.

use super::{decode, encode, GroupId, LogId, NodeId, Snapshot, SnapshotData, TypeConfig, Vote};
use crate::pb;
use crate::pb::peer_client::PeerClient;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use openraft::{BasicNode, OptionalSend, Raft};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tonic::transport::Channel;

pub(crate) const APPEND: u32 = 1;
pub(crate) const VOTE: u32 = 2;
pub(crate) const SNAPSHOT: u32 = 3;
pub(crate) const PRE_VOTE: u32 = 4;
pub(crate) const TRANSFER_LEADER: u32 = 5;
/// A shard leader asks a follower to hibernate (`shard/hibernation.rs`); not openraft's.
pub(crate) const HIBERNATE: u32 = 6;
/// A restarted replica asks the others of its group to wake; not openraft's.
pub(crate) const WAKE: u32 = 7;

/// Lazily dialled channels to the other nodes, shared by every group and the forwarding
/// paths. tonic multiplexes all calls to one node over one connection.
#[derive(Clone)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    batchers: Arc<Mutex<HashMap<String, FrameBatcher>>>,
    /// Whether Raft frames go over a `RaftStream` per peer (else a `RaftBatch` call each).
    streams: bool,
}

type FrameReply = oneshot::Sender<Result<pb::RaftFrame, tonic::Status>>;

/// A frame to send; `lazy` frames (heartbeats) may wait briefly so that many groups'
/// heartbeats share one message. A frame without `reply` is one-way: on a `RaftStream` it
/// goes with call id 0, which the receiver serves without answering.
struct Outgoing {
    frame: pb::RaftFrame,
    lazy: bool,
    reply: Option<FrameReply>,
}

/// How long a heartbeat may wait for company: far below any election timeout.
const HEARTBEAT_LINGER: Duration = Duration::from_millis(20);

/// Sends Raft frames to one peer: every frame queued while earlier batches are unanswered
/// goes in the next batch, so a busy node sends one message per peer for many groups'
/// appends and heartbeats instead of one each. Batches travel over one long-lived
/// `RaftStream` per peer (no call set-up, headers or server task per batch); a peer
/// without it gets one `RaftBatch` call per batch.
#[derive(Clone)]
struct FrameBatcher {
    tx: mpsc::UnboundedSender<Outgoing>,
}

/// Batches unanswered per peer. Few, so that under load the frames of many groups gather
/// while a batch is out (most of a batch's time is the follower's fsync) and travel in one
/// message: with 2 instead of 8, a busy cluster spent 10-35% less CPU per record in paired
/// runs (docs/benchmarks.md); with 1, single puts waited behind full batches.
const BATCHES_IN_FLIGHT: usize = 2;
/// Frames per message, either way (the receiver gathers its replies under the same cap).
pub(crate) const MAX_FRAMES_PER_BATCH: usize = 512;

/// A share of a batch's in-flight permit: the permit returns when the batch's last frame
/// is answered (or failed).
type BatchShare = Arc<OwnedSemaphorePermit>;

/// The call id of a one-way frame on a `RaftStream`: served, never answered.
pub(crate) const ONE_WAY: u64 = 0;

/// Frames sent on one stream and not yet answered, by call id. `closed` once the stream
/// broke: nothing may wait on it after that.
#[derive(Default)]
struct Awaiting {
    closed: bool,
    calls: HashMap<u64, (FrameReply, BatchShare)>,
}

/// One open `RaftStream` to a peer.
struct PeerStream {
    out: mpsc::UnboundedSender<pb::RaftFrames>,
    awaiting: Arc<Mutex<Awaiting>>,
}

impl PeerStream {
    async fn open(client: &PeerClient<Channel>) -> Result<PeerStream, tonic::Status> {
        let (out, out_rx) = mpsc::unbounded_channel();
        let mut client = client.clone();
        let call = client.raft_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx));
        let mut replies = match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(r) => r?.into_inner(),
            Err(_) => return Err(tonic::Status::unavailable("peer did not open a Raft stream within 2 s")),
        };
        let awaiting = Arc::new(Mutex::new(Awaiting::default()));
        let reader = awaiting.clone();
        tokio::spawn(async move {
            let error = loop {
                match replies.message().await {
                    Ok(Some(batch)) => {
                        let mut awaiting = reader.lock().expect("awaiting lock");
                        for frame in batch.frames {
                            if let Some((reply, _share)) = awaiting.calls.remove(&frame.call) {
                                let _ = reply.send(Ok(frame));
                            }
                        }
                    }
                    Ok(None) => break tonic::Status::unavailable("peer closed the Raft stream"),
                    Err(status) => break status,
                }
            };
            let calls = {
                let mut awaiting = reader.lock().expect("awaiting lock");
                awaiting.closed = true;
                std::mem::take(&mut awaiting.calls)
            };
            for (_, (reply, _share)) in calls {
                let _ = reply.send(Err(error.clone()));
            }
        });
        Ok(PeerStream { out, awaiting })
    }

    /// Sends a batch; gives it back if the stream has broken.
    fn send(
        &self,
        batch: Vec<Outgoing>,
        share: BatchShare,
        next_call: &mut u64,
    ) -> Result<(), Vec<Outgoing>> {
        let mut awaiting = self.awaiting.lock().expect("awaiting lock");
        if awaiting.closed || self.out.is_closed() {
            return Err(batch);
        }
        let mut frames = Vec::with_capacity(batch.len());
        for o in batch {
            let Some(reply) = o.reply else {
                frames.push(pb::RaftFrame { call: ONE_WAY, ..o.frame });
                continue;
            };
            *next_call += 1;
            frames.push(pb::RaftFrame { call: *next_call, ..o.frame });
            awaiting.calls.insert(*next_call, (reply, share.clone()));
        }
        // Under the lock: the reader fails whatever is awaiting once the stream breaks.
        let _ = self.out.send(pb::RaftFrames { frames });
        Ok(())
    }
}

impl FrameBatcher {
    fn start(client: PeerClient<Channel>, streams: bool) -> FrameBatcher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
            let mut stream: Option<PeerStream> = None;
            let mut streams_unsupported = !streams;
            let mut next_call = 0u64;
            while let Some(first) = rx.recv().await {
                let mut urgent = !first.lazy;
                let mut batch = vec![first];
                // Heartbeats alone wait a little for others; any real frame sends at once.
                let linger = tokio::time::sleep(HEARTBEAT_LINGER);
                tokio::pin!(linger);
                while !urgent && batch.len() < MAX_FRAMES_PER_BATCH {
                    tokio::select! {
                        next = rx.recv() => match next {
                            Some(f) => {
                                urgent = !f.lazy;
                                batch.push(f);
                            }
                            None => break,
                        },
                        _ = &mut linger => break,
                    }
                }
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                while batch.len() < MAX_FRAMES_PER_BATCH {
                    match rx.try_recv() {
                        Ok(f) => batch.push(f),
                        Err(_) => break,
                    }
                }
                if streams_unsupported {
                    tokio::spawn(send_unary(client.clone(), batch, permit));
                    continue;
                }
                let share = Arc::new(permit);
                // A broken stream is reopened once per batch; the batch fails if that fails.
                let batch = match &stream {
                    Some(s) => match s.send(batch, share.clone(), &mut next_call) {
                        Ok(()) => continue,
                        Err(batch) => batch,
                    },
                    None => batch,
                };
                match PeerStream::open(&client).await {
                    Ok(s) => {
                        if let Err(batch) = s.send(batch, share, &mut next_call) {
                            fail(batch, &tonic::Status::unavailable("Raft stream broke at once"));
                        }
                        stream = Some(s);
                    }
                    Err(status) if status.code() == tonic::Code::Unimplemented => {
                        streams_unsupported = true;
                        // No frame was registered, so the batch's permit is whole again.
                        let permit = Arc::try_unwrap(share).expect("no frame holds a share");
                        tokio::spawn(send_unary(client.clone(), batch, permit));
                    }
                    Err(status) => fail(batch, &status),
                }
            }
        });
        FrameBatcher { tx }
    }

    async fn call(&self, frame: pb::RaftFrame, lazy: bool) -> Result<pb::RaftFrame, tonic::Status> {
        let (tx, rx) = oneshot::channel();
        let out = Outgoing { frame, lazy, reply: Some(tx) };
        self.tx.send(out).map_err(|_| tonic::Status::unavailable("peer sender stopped"))?;
        rx.await.map_err(|_| tonic::Status::unavailable("peer sender dropped the frame"))?
    }

    /// Sends a one-way frame with the next batch; nothing waits for it.
    fn tell(&self, frame: pb::RaftFrame) {
        let _ = self.tx.send(Outgoing { frame, lazy: false, reply: None });
    }
}

fn fail(batch: Vec<Outgoing>, status: &tonic::Status) {
    for reply in batch.into_iter().filter_map(|o| o.reply) {
        let _ = reply.send(Err(status.clone()));
    }
}

/// One `RaftBatch` call for a peer that has no `RaftStream` (an older node).
async fn send_unary(mut client: PeerClient<Channel>, batch: Vec<Outgoing>, _permit: OwnedSemaphorePermit) {
    let (frames, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|o| (o.frame, o.reply)).unzip();
    match client.raft_batch(pb::RaftFrames { frames }).await {
        Ok(resp) => {
            let mut frames = resp.into_inner().frames.into_iter();
            // A unary batch is answered frame by frame, one-way frames included.
            for reply in replies {
                let r = frames.next().ok_or_else(|| tonic::Status::internal("short batch reply"));
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
        }
        Err(status) => {
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Err(status.clone()));
            }
        }
    }
}

impl PeerPool {
    pub fn new(streams: bool) -> PeerPool {
        PeerPool { channels: Default::default(), batchers: Default::default(), streams }
    }

    fn batcher(&self, addr: &str) -> FrameBatcher {
        let mut map = self.batchers.lock().expect("peer pool lock");
        if let Some(b) = map.get(addr) {
            return b.clone();
        }
        let b = FrameBatcher::start(self.peer(addr), self.streams);
        map.insert(addr.to_string(), b.clone());
        b
    }

    /// Asks the replica of `group` on `addr` to hibernate under `leader` in `term`, its log
    /// ending at `last_index` like the leader's. Whether it now sleeps.
    pub async fn ask_to_hibernate(
        &self,
        addr: &str,
        group: GroupId,
        (leader, term, last_index): (NodeId, u64, u64),
    ) -> bool {
        let Ok(body) = encode(&(leader, term, last_index)) else { return false };
        let frame = pb::RaftFrame { group_id: group, kind: HIBERNATE, body, call: 0 };
        let batcher = self.batcher(addr);
        let call = batcher.call(frame, true);
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(reply)) => matches!(decode::<Result<bool, String>>(&reply.body), Ok(Ok(true))),
            _ => false,
        }
    }

    /// Wakes the replica of `group` on `addr`, if it sleeps (best effort).
    pub async fn ask_to_wake(&self, addr: &str, group: GroupId) {
        let frame = pb::RaftFrame { group_id: group, kind: WAKE, body: Vec::new(), call: 0 };
        let batcher = self.batcher(addr);
        let _ = tokio::time::timeout(Duration::from_secs(2), batcher.call(frame, false)).await;
    }

    /// Whether the node at `addr` answers within `within`.
    pub async fn ping(&self, addr: &str, within: Duration) -> bool {
        let mut peer = self.peer(addr);
        let call = peer.ping(pb::PingRequest {});
        matches!(tokio::time::timeout(within, call).await, Ok(Ok(_)))
    }

    pub fn channel(&self, addr: &str) -> Channel {
        let mut map = self.channels.lock().expect("peer pool lock");
        map.entry(addr.to_string())
            .or_insert_with(|| {
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .expect("peer address is host:port")
                    .connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .connect_lazy()
            })
            .clone()
    }

    pub fn peer(&self, addr: &str) -> PeerClient<Channel> {
        PeerClient::new(self.channel(addr))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    pub fn api(&self, addr: &str) -> pb::freshet_client::FreshetClient<Channel> {
        pb::freshet_client::FreshetClient::new(self.channel(addr))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }
}

pub struct NetworkFactory {
    pub group: GroupId,
    pub pool: PeerPool,
    /// Shard groups gather a snapshot's records from here just before sending it.
    pub records: Option<crate::storage::Store>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, _target: NodeId, node: &BasicNode) -> GroupNetwork {
        GroupNetwork {
            group: self.group,
            client: self.pool.peer(&node.addr),
            batcher: self.pool.batcher(&node.addr),
            records: self.records.clone(),
            sent_commit: None,
            // Shard groups only: the metadata group's reads keep openraft's own bookkeeping.
            answers_commit_news: self.records.is_some(),
            acked: None,
        }
    }

    async fn new_heartbeat_client(&mut self, target: NodeId, node: &BasicNode) -> GroupNetwork {
        GroupNetwork { answers_commit_news: false, ..self.new_client(target, node).await }
    }

    async fn new_snapshot_client(&mut self, target: NodeId, node: &BasicNode) -> GroupNetwork {
        GroupNetwork { answers_commit_news: false, ..self.new_client(target, node).await }
    }
}

/// How recent the follower's last real acknowledgement must be for a commit-only append to be
/// answered here (`commit_news_only`). Shard reads take the leader lease shortened by this.
pub(crate) const COMMIT_NEWS_MARGIN: Duration = Duration::from_millis(100);

/// What a follower last really acknowledged on a replication stream.
#[derive(Debug, Clone)]
pub(crate) struct Acked {
    vote: Vote,
    matching: Option<LogId>,
    /// When the acknowledged request was sent: the follower received it later.
    sent_at: Instant,
}

/// Whether `rpc` only tells the follower a new commit index, and may be answered without a
/// round trip: it carries no entries and asks for exactly the log position the follower
/// acknowledged, under the same vote, for a request sent less than `COMMIT_NEWS_MARGIN` ago.
///
/// After each commit openraft sends every follower such an append and waits for its answer:
/// a third of a busy shard's Raft messages, and as many wake-ups of its replication tasks.
/// The follower still gets it, one-way (a follower's subscribers wait for the commit index).
/// The answer is the one the follower would give: its log holds that position durably, and
/// within the margin it can have voted for no one else (its leader lease runs from when it
/// received the acknowledged request). The answer counts toward the leader's lease as if sent
/// now, at most `COMMIT_NEWS_MARGIN` after the follower's real contact, so shard reads use a
/// lease shortened by that much (`Node::leader_target`).
pub(crate) fn commit_news_only(
    acked: Option<&Acked>,
    rpc: &AppendEntriesRequest<TypeConfig>,
    now: Instant,
) -> bool {
    let Some(acked) = acked else { return false };
    rpc.entries.is_empty()
        && acked.vote == rpc.vote
        && acked.matching == rpc.prev_log_id
        && now.saturating_duration_since(acked.sent_at) < COMMIT_NEWS_MARGIN
}

pub struct GroupNetwork {
    group: GroupId,
    client: PeerClient<Channel>,
    batcher: FrameBatcher,
    records: Option<crate::storage::Store>,
    /// The highest commit index sent to this peer. An empty append that raises it is news
    /// (the follower's readers wait for it) and goes at once; one that does not is a
    /// heartbeat and may wait for company.
    sent_commit: Option<u64>,
    /// Whether this client may answer appends that only carry commit news
    /// (`commit_news_only`): a shard group's replication client, not its heartbeats'.
    answers_commit_news: bool,
    /// The follower's last real acknowledgement on this client.
    acked: Option<Acked>,
}

impl GroupNetwork {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: u32,
        lazy: bool,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let body = encode(req).map_err(|e| NetworkError::new(&e))?;
        let frame = pb::RaftFrame { group_id: self.group, kind, body, call: 0 };
        // Snapshots travel alone; everything else shares the peer's batches.
        let call = async {
            if kind == SNAPSHOT {
                self.client.raft(frame).await.map(|r| r.into_inner())
            } else {
                self.batcher.call(frame, lazy).await
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => return Err(NetworkError::from_string(format!("no answer within {ttl:?}")).into()),
            Ok(Err(s)) => return Err(Unreachable::from_string(s.message().to_string()).into()),
            Ok(Ok(r)) => r,
        };
        let result: Result<Resp, String> = decode(&reply.body).map_err(|e| NetworkError::new(&e))?;
        // A remote Raft error (group stopped or absent) makes the peer unusable for now.
        result.map_err(|e| Unreachable::from_string(e).into())
    }
}

impl RaftNetworkV2<TypeConfig> for GroupNetwork {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let commit = rpc.leader_commit.as_ref().map(|c| c.index);
        let now = Instant::now();
        if self.answers_commit_news && commit_news_only(self.acked.as_ref(), &rpc, now) {
            let body = encode(&rpc).map_err(|e| NetworkError::new(&e))?;
            self.batcher.tell(pb::RaftFrame { group_id: self.group, kind: APPEND, body, call: ONE_WAY });
            self.sent_commit = self.sent_commit.max(commit);
            return Ok(AppendEntriesResponse::Success);
        }
        let news = commit > self.sent_commit;
        let lazy = rpc.entries.is_empty() && !news;
        let result = self.call(APPEND, lazy, &rpc, option.soft_ttl()).await;
        if result.is_ok() {
            self.sent_commit = self.sent_commit.max(commit);
        }
        if self.answers_commit_news {
            let last = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
            let matching = match &result {
                Ok(AppendEntriesResponse::Success) => Some(last),
                Ok(AppendEntriesResponse::PartialSuccess(m)) => Some(*m),
                _ => None,
            };
            self.acked = matching.map(|matching| Acked { vote: rpc.vote, matching, sent_at: now });
        }
        result
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(VOTE, false, &rpc, option.soft_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PRE_VOTE, false, &rpc, option.soft_ttl()).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(TRANSFER_LEADER, false, &req, option.soft_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut data = snapshot.snapshot.into_inner();
        if let Some(store) = &self.records {
            let (store, group) = (store.clone(), self.group);
            data = tokio::task::spawn_blocking(move || {
                crate::shard::state_machine::materialize(&store, group, data)
            })
            .await
            .map_err(|e| StreamingError::from(RPCError::from(NetworkError::new(&e))))?
            .map_err(|e| StreamingError::from(RPCError::from(NetworkError::new(&e))))?;
        }
        let req = (vote, snapshot.meta, data);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = self.call(SNAPSHOT, false, &req, option.soft_ttl().max(Duration::from_secs(60))) => Ok(r?),
        }
    }
}

/// Serves one incoming frame on the local replica of its group.
pub async fn serve_frame<SM>(
    raft: &Raft<TypeConfig, SM>,
    kind: u32,
    body: &[u8],
) -> Result<Vec<u8>, tonic::Status>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotData>,
{
    let bad = |e: std::io::Error| tonic::Status::invalid_argument(format!("undecodable raft frame: {e}"));
    fn reply<T: Serialize, E: std::fmt::Display>(r: Result<T, E>) -> Result<Vec<u8>, tonic::Status> {
        encode(&r.map_err(|e| e.to_string())).map_err(|e| tonic::Status::internal(e.to_string()))
    }
    match kind {
        APPEND => reply(raft.append_entries(decode(body).map_err(bad)?).await),
        VOTE => reply(raft.vote(decode(body).map_err(bad)?).await),
        PRE_VOTE => reply(raft.pre_vote(decode(body).map_err(bad)?).await),
        TRANSFER_LEADER => reply(raft.handle_transfer_leader(decode(body).map_err(bad)?).await),
        SNAPSHOT => {
            let (vote, meta, data): (Vote, super::SnapshotMeta, Vec<u8>) = decode(body).map_err(bad)?;
            let snapshot = Snapshot { meta, snapshot: std::io::Cursor::new(data) };
            reply(raft.install_full_snapshot(vote, snapshot).await)
        }
        other => Err(tonic::Status::invalid_argument(format!("unknown raft frame kind {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Entry;
    use openraft::entry::RaftEntry;
    use openraft::type_config::alias::LeaderIdOf;
    use openraft::vote::RaftLeaderIdExt;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(LeaderIdOf::<TypeConfig>::new_committed(term, 1), index)
    }

    fn commit_news(vote: Vote, prev: Option<LogId>, commit: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote,
            prev_log_id: prev,
            entries: vec![],
            leader_commit: Some(log_id(2, commit)),
        }
    }

    #[test]
    fn commit_news_is_answered_only_for_what_the_follower_just_confirmed() {
        let vote = Vote::new_committed(2, 1);
        let now = Instant::now();
        let acked = Acked { vote, matching: Some(log_id(2, 7)), sent_at: now - Duration::from_millis(3) };
        assert!(commit_news_only(Some(&acked), &commit_news(vote, Some(log_id(2, 7)), 7), now));

        // Nothing confirmed yet (a new stream, or after an error): sent for real.
        assert!(!commit_news_only(None, &commit_news(vote, Some(log_id(2, 7)), 7), now));
        // Another position: a probe for where the logs match, which only the follower knows.
        assert!(!commit_news_only(Some(&acked), &commit_news(vote, Some(log_id(2, 6)), 7), now));
        assert!(!commit_news_only(Some(&acked), &commit_news(vote, None, 7), now));
        // Another vote: the follower's answer may differ (a higher vote ends this leader).
        let other = Vote::new_committed(3, 1);
        assert!(!commit_news_only(Some(&acked), &commit_news(other, Some(log_id(2, 7)), 7), now));
        // Entries always go.
        let mut with_entries = commit_news(vote, Some(log_id(2, 7)), 7);
        with_entries.entries.push(Entry::new_blank(log_id(2, 8)));
        assert!(!commit_news_only(Some(&acked), &with_entries, now));
        // A confirmation older than the margin no longer vouches for the follower.
        let stale = Acked { sent_at: now - COMMIT_NEWS_MARGIN, ..acked.clone() };
        assert!(!commit_news_only(Some(&stale), &commit_news(vote, Some(log_id(2, 7)), 7), now));
    }

    #[test]
    fn shard_reads_trust_a_lease_shortened_by_the_margin() {
        let timing = crate::raft::RaftTiming::default();
        let option = timing.shard_read_lease();
        let shown = option.to_string();
        let expected = Duration::from_millis(timing.election_max_ms) - COMMIT_NEWS_MARGIN;
        assert!(shown.contains(&format!("max_quorum_ack_age: Some({expected:?})")), "{shown}");
        assert!(shown.contains("wait_timeout: Some(0ns)"), "{shown}");
    }
}
