//! AWS Signature Version 4, checked when the node has credentials configured
//! (`--credentials-file`); without them any signature is accepted, as local emulators do.

use super::error::KinesisError;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A signature dated further than this from the node's clock is refused (AWS: 15 minutes).
const MAX_SKEW_MS: i64 = 15 * 60 * 1000;

/// Access key id -> secret access key.
#[derive(Debug, Clone, Default)]
pub struct Credentials(HashMap<String, String>);

impl Credentials {
    /// One `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair per line; blank lines and `#` comments
    /// are skipped (on Kubernetes, a Secret mounted as a file).
    pub fn parse(text: &str) -> anyhow::Result<Credentials> {
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(id), Some(secret), None) => {
                    keys.insert(id.to_string(), secret.to_string());
                }
                _ => anyhow::bail!("credentials line {}: expected 'ACCESS_KEY_ID SECRET_ACCESS_KEY'", n + 1),
            }
        }
        anyhow::ensure!(!keys.is_empty(), "the credentials file holds no key pairs");
        Ok(Credentials(keys))
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a request's `Authorization` header says.
struct Authorization<'a> {
    access_key: &'a str,
    /// `date/region/service/aws4_request`
    scope: &'a str,
    date: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256")?.trim();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let (access_key, scope) = credential?.split_once('/')?;
    let date = scope.split('/').next()?;
    Some(Authorization {
        access_key,
        scope,
        date,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What SigV4 signs of a request.
struct Canonical<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    /// The signed headers, lowercase names in the order the signer listed them.
    headers: &'a [(String, String)],
    payload_hash: &'a str,
}

/// The SigV4 signature of a request.
fn signature(secret: &str, req: &Canonical, amz_date: &str, scope: &str) -> String {
    let canonical_headers: String =
        req.headers.iter().map(|(k, v)| format!("{k}:{}\n", canonical_value(v))).collect();
    let signed: Vec<&str> = req.headers.iter().map(|(k, _)| k.as_str()).collect();
    let mut query_pairs: Vec<&str> = req.query.split('&').filter(|p| !p.is_empty()).collect();
    query_pairs.sort_unstable();
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{}\n{}",
        req.method,
        req.path,
        query_pairs.join("&"),
        signed.join(";"),
        req.payload_hash
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac(&key, part.as_bytes());
    }
    hex(&hmac(&key, string_to_sign.as_bytes()))
}

fn missing() -> KinesisError {
    KinesisError::new(400, "MissingAuthenticationTokenException", "Missing Authentication Token")
}

fn invalid_signature(why: &str) -> KinesisError {
    KinesisError::new(
        400,
        "InvalidSignatureException",
        format!("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. ({why})"),
    )
}

/// Parses `20261124T203000Z` into ms since the epoch.
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, sec) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000)
}

/// The request's Authorization header and its access key's secret: what can be checked
/// before the body is read, so an unsigned or unknown caller is refused before the node
/// buffers up to 16 MiB for it.
pub fn check_caller(creds: &Credentials, headers: &hyper::HeaderMap) -> Result<(), KinesisError> {
    signer(creds, headers).map(|_| ())
}

fn signer<'a>(
    creds: &'a Credentials,
    headers: &'a hyper::HeaderMap,
) -> Result<(Authorization<'a>, &'a str), KinesisError> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(missing());
    };
    let auth = parse_authorization(auth).ok_or_else(|| {
        KinesisError::new(
            400,
            "IncompleteSignatureException",
            "The Authorization header is not a valid AWS4-HMAC-SHA256 signature.",
        )
    })?;
    let secret = creds.0.get(auth.access_key).ok_or_else(|| {
        KinesisError::new(
            400,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    })?;
    Ok((auth, secret.as_str()))
}

/// Checks a request's signature against `creds`.
pub fn verify(
    creds: &Credentials,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    now_ms: i64,
) -> Result<(), KinesisError> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (auth, secret) = signer(creds, &parts.headers)?;
    let amz_date = header("x-amz-date").ok_or_else(|| {
        KinesisError::new(
            400,
            "IncompleteSignatureException",
            "Authorization header requires existence of an 'X-Amz-Date' header.",
        )
    })?;
    if !amz_date.starts_with(auth.date) {
        return Err(invalid_signature("the credential scope's date is not the request's date"));
    }
    let signed_at =
        parse_amz_date(amz_date).ok_or_else(|| invalid_signature("X-Amz-Date is not yyyyMMddTHHmmssZ"))?;
    if (now_ms - signed_at).abs() > MAX_SKEW_MS {
        return Err(KinesisError::new(
            400,
            "InvalidSignatureException",
            format!("Signature expired: {amz_date} is more than 15 minutes away from the server's time."),
        ));
    }
    let mut headers = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        // A header sent more than once is signed as its values joined by commas.
        let values: Vec<&str> = parts.headers.get_all(*name).iter().filter_map(|v| v.to_str().ok()).collect();
        let value = match (*name, (!values.is_empty()).then(|| values.join(","))) {
            (_, Some(v)) => v,
            // HTTP/2 carries the host as :authority.
            ("host", None) => parts.uri.authority().map(|a| a.to_string()).unwrap_or_default(),
            (n, None) => return Err(invalid_signature(&format!("signed header {n} is missing"))),
        };
        headers.push((name.to_string(), value));
    }
    let payload_hash = match header("x-amz-content-sha256") {
        Some(h) => h.to_string(),
        None => hex(&Sha256::digest(body)),
    };
    if payload_hash != "UNSIGNED-PAYLOAD" && payload_hash != hex(&Sha256::digest(body)) {
        return Err(invalid_signature("the body does not match X-Amz-Content-Sha256"));
    }
    let canonical = Canonical {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        payload_hash: &payload_hash,
    };
    let expected = signature(secret, &canonical, amz_date, auth.scope);
    // Constant-time comparison, like any MAC check.
    let same = expected.len() == auth.signature.len()
        && expected.bytes().zip(auth.signature.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return Err(invalid_signature("signature mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_aws_sigv4_reference_example() {
        // AWS' documented example (IAM ListUsers, GET), from the SigV4 guide.
        let headers = [
            ("content-type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string()),
            ("host".to_string(), "iam.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        let req = Canonical {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            payload_hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        };
        let sig = signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &req,
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
        );
        assert_eq!(sig, "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    }

    #[test]
    fn amz_dates_parse_to_epoch_milliseconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160_000));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    }

    #[test]
    fn credentials_files_are_pairs_per_line() {
        let c = Credentials::parse("# team keys\nAKID1 secret1\n\n  AKID2   secret2  \n").unwrap();
        assert_eq!(c.0.len(), 2);
        assert!(Credentials::parse("AKID only\n").is_ok());
        assert!(Credentials::parse("AKID\n").is_err());
        assert!(Credentials::parse("a b c\n").is_err());
        assert!(Credentials::parse("# nothing\n").is_err());
    }
}
