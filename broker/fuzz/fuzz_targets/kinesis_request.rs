//! A request body, JSON or CBOR by its first byte: decoded, every member taken out with
//! every typed accessor, re-encoded.
#![no_main]
use freshet_broker::api::kinesis::fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&format, body)) = data.split_first() {
        fuzz::request(format & 1 == 1, body);
    }
});
