//! Record data as readers unpack it: KPL aggregates (magic, protobuf, MD5) or not.
#![no_main]
use freshet_broker::api::kinesis::fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz::record_data(data));
