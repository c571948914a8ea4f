//! A SigV4 check: Authorization, X-Amz-Date and X-Amz-Content-Sha256 header values and
//! a body, separated by newlines in the input.
#![no_main]
use freshet_broker::api::kinesis::fuzz;
use libfuzzer_sys::fuzz_target;

/// 2026-11-24T20:30:00Z, so that dates near it pass the clock-skew check.
const NOW_MS: i64 = 1_795_552_200_000;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let mut text = || parts.next().map(|p| String::from_utf8_lossy(p).into_owned());
    let (auth, date, sha) = (text().unwrap_or_default(), text().unwrap_or_default(), text());
    let body = parts.next().unwrap_or_default();
    fuzz::signature(&auth, &date, sha.as_deref().filter(|s| !s.is_empty()), body, NOW_MS);
});
