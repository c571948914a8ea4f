//! Entry points for the fuzz targets in `broker/fuzz` (`make fuzz`): everything the
//! Kinesis endpoint does with a request's bytes before any stream is touched, callable
//! without a cluster. Each must answer every input with a value or a Kinesis error;
//! a panic is a bug the fuzzer reports.

use super::auth::{self, Credentials};
use super::token::NextToken;
use super::wire::{self, Format, Input, Value};
use crate::iterator::{mac, ShardIterator};
use base64::Engine;

/// Every member name the actions read, so that a decoded request's members are taken
/// out with each typed accessor whatever their names in the input.
const MEMBERS: &[&str] = &[
    "StreamName",
    "StreamARN",
    "ShardCount",
    "StreamModeDetails",
    "StreamMode",
    "Tags",
    "TagKeys",
    "Limit",
    "NextToken",
    "ExclusiveStartShardId",
    "ExclusiveStartStreamName",
    "ExclusiveStartTagKey",
    "MaxResults",
    "ShardFilter",
    "Type",
    "ShardId",
    "Timestamp",
    "StreamCreationTimestamp",
    "PartitionKey",
    "ExplicitHashKey",
    "SequenceNumberForOrdering",
    "Data",
    "Records",
    "ShardIteratorType",
    "StartingSequenceNumber",
    "ShardIterator",
    "ShardToSplit",
    "NewStartingHashKey",
    "ShardToMerge",
    "AdjacentShardToMerge",
    "TargetShardCount",
    "ScalingType",
    "RetentionPeriodHours",
    "EnforceConsumerDeletion",
    "ConsumerName",
    "ConsumerARN",
    "StartingPosition",
];

/// Decodes a request body (CBOR or JSON) and takes out every member with every accessor,
/// descending into structures and lists of structures, then encodes what was decoded
/// back (answers reuse the encoder, so it must take any value the decoder makes).
pub fn request(cbor: bool, body: &[u8]) {
    let format = if cbor { Format::Cbor } else { Format::Json };
    let Ok(value) = wire::decode(format, body) else { return };
    let _ = wire::encode(format, &value);
    let _ = wire::encode(Format::Json, &value);
    let _ = wire::encode(Format::Cbor, &value);
    if let Ok(input) = Input::new(value.clone()) {
        walk(input, format, 0);
    }
    // The same tree again with the member names it actually has, so that the fuzzer
    // need not guess ours to reach the accessors.
    if let Value::Map(members) = &value {
        for (name, _) in members {
            for accessor in 0..9 {
                if let Ok(mut input) = Input::new(value.clone()) {
                    take(&mut input, name, accessor, format, 0);
                }
            }
        }
    }
}

/// Requests nest two levels at most (`Records.N.member`, `ShardFilter`), so deeper
/// structures are only decoded, not walked: that keeps each input's work bounded.
const MAX_WALK_DEPTH: usize = 2;

fn walk(input: Input, format: Format, depth: usize) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    for name in MEMBERS {
        for accessor in 0..9 {
            take(&mut input.clone(), name, accessor, format, depth);
        }
    }
}

fn take(input: &mut Input, name: &str, accessor: usize, format: Format, depth: usize) {
    match accessor {
        0 => drop(input.string(name)),
        1 => drop(input.int(name)),
        2 => drop(input.bool(name)),
        3 => drop(input.blob(name)),
        4 => drop(input.timestamp(name, format)),
        5 => {
            if let Ok(Some(items)) = input.structures(name) {
                items.into_iter().for_each(|i| walk(i, format, depth + 1));
            }
        }
        6 => drop(input.strings(name)),
        7 => {
            if let Ok(Some(s)) = input.structure(name) {
                walk(s, format, depth + 1);
            }
        }
        _ => drop(input.string_map(name)),
    }
}

/// A request's SigV4 check, for header values the fuzzer chooses.
pub fn signature(
    authorization: &str,
    amz_date: &str,
    content_sha256: Option<&str>,
    body: &[u8],
    now_ms: i64,
) {
    let creds = Credentials::parse("AKIDEXAMPLE wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        .expect("valid credentials");
    let mut request = hyper::Request::post("/");
    for (name, value) in [
        ("authorization", Some(authorization)),
        ("x-amz-date", Some(amz_date)),
        ("x-amz-content-sha256", content_sha256),
    ] {
        if let Some(v) = value.and_then(|v| hyper::header::HeaderValue::from_str(v).ok()) {
            request = request.header(name, v);
        }
    }
    let Ok(request) = request.body(()) else { return };
    let (parts, ()) = request.into_parts();
    let _ = auth::verify(&creds, &parts, body, now_ms);
}

/// The opaque tokens clients hand back: shard iterators and NextTokens, both as sent and
/// re-signed with the server's key (so the fuzzer also reaches what follows the MAC).
pub fn tokens(token: &str, body: &[u8], now_ms: i64) {
    const SECRET: &[u8] = b"fuzzing secret";
    let _ = ShardIterator::decode(token, SECRET, now_ms);
    let _ = NextToken::decode(token, SECRET, now_ms);
    let mut signed = body.to_vec();
    signed.extend_from_slice(&mac(SECRET, body));
    let signed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed);
    let _ = ShardIterator::decode(&signed, SECRET, now_ms);
    let _ = NextToken::decode(&signed, SECRET, now_ms);
}

/// A record's data as `freshet read` and the Rust client unpack it (KPL aggregates),
/// as sent and framed as an aggregate with a correct digest (so the protobuf is reached).
pub fn record_data(data: &[u8]) {
    use md5::Digest;
    let _ = crate::kpl::deaggregate(data);
    let mut framed = vec![0xF3, 0x89, 0x9A, 0xC2];
    framed.extend_from_slice(data);
    framed.extend_from_slice(&md5::Md5::digest(data));
    let _ = crate::kpl::deaggregate(&framed);
}
