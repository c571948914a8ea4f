//! Reconcile metrics in Prometheus' text format, and the /metrics + /healthz endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the reconcile-duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Cumulative counts per bucket, then the +Inf count, and the sum in microseconds.
    histogram: Mutex<([u64; BUCKETS.len()], u64, u64)>,
}

impl Metrics {
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let mut h = self.histogram.lock().expect("metrics lock");
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.0[i] += 1;
            }
        }
        h.1 += 1;
        h.2 += took.as_micros() as u64;
    }

    pub fn failed(&self, reason: &str) {
        *self.errors.lock().expect("metrics lock").entry(reason.to_string()).or_default() += 1;
    }

    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    pub fn errors(&self, reason: &str) -> u64 {
        self.errors.lock().expect("metrics lock").get(reason).copied().unwrap_or(0)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP freshet_operator_reconciles_total Reconciliations of Stream resources.\n");
        out.push_str("# TYPE freshet_operator_reconciles_total counter\n");
        out.push_str(&format!("freshet_operator_reconciles_total {}\n", self.reconciles()));
        out.push_str("# HELP freshet_operator_reconcile_errors_total Failed reconciliations by reason.\n");
        out.push_str("# TYPE freshet_operator_reconcile_errors_total counter\n");
        for (reason, n) in self.errors.lock().expect("metrics lock").iter() {
            out.push_str(&format!("freshet_operator_reconcile_errors_total{{reason=\"{reason}\"}} {n}\n"));
        }
        let h = self.histogram.lock().expect("metrics lock");
        out.push_str(
            "# HELP freshet_operator_reconcile_duration_seconds Time spent in one reconciliation.\n",
        );
        out.push_str("# TYPE freshet_operator_reconcile_duration_seconds histogram\n");
        for (i, bound) in BUCKETS.iter().enumerate() {
            out.push_str(&format!(
                "freshet_operator_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {}\n",
                h.0[i]
            ));
        }
        out.push_str(&format!("freshet_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}\n", h.1));
        out.push_str(&format!("freshet_operator_reconcile_duration_seconds_sum {}\n", h.2 as f64 / 1e6));
        out.push_str(&format!("freshet_operator_reconcile_duration_seconds_count {}\n", h.1));
        out
    }
}

/// Serves GET /metrics and GET /healthz until the process ends. Deliberately tiny: two
/// fixed paths, one request per connection.
pub async fn serve(addr: std::net::SocketAddr, metrics: std::sync::Arc<Metrics>) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (mut sock, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/metrics" => ("200 OK", metrics.render()),
                "/healthz" => ("200 OK", "ok\n".to_string()),
                _ => ("404 Not Found", "try /metrics or /healthz\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_durations_and_errors_in_prometheus_text() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(3));
        m.reconciled(Duration::from_millis(300));
        m.failed("Conflict");
        let text = m.render();
        assert!(text.contains("freshet_operator_reconciles_total 2\n"));
        assert!(text.contains("freshet_operator_reconcile_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("freshet_operator_reconcile_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("freshet_operator_reconcile_errors_total{reason=\"Conflict\"} 1\n"));
    }
}
