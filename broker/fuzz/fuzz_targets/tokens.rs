//! Shard iterators and NextTokens as clients hand them back, and bodies re-signed with
//! the server's key so that decoding past the MAC is reached too.
#![no_main]
use freshet_broker::api::kinesis::fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now_ms = data.get(..8).map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
    fuzz::tokens(&String::from_utf8_lossy(data), data.get(8..).unwrap_or_default(), now_ms);
});
