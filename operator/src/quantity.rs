//! Kubernetes resource quantities ("10Gi", "500M", "1.5Ti") as bytes, to compare sizes.

/// Bytes in `q`, or None for a form this does not read (then nothing is resized).
pub fn bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value * multiplier as f64) as u128)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(bytes("10Gi"), Some(10 << 30));
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("1024"), Some(1024));
        assert!(bytes("20Gi") > bytes("20G"));
        assert_eq!(bytes("10Zi"), None);
        assert_eq!(bytes("lots"), None);
    }
}
