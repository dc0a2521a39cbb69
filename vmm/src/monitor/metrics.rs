//! The Prometheus endpoint of `--metrics ADDR:PORT`: `GET /metrics` answers
//! with the run's [`Stats`] in the text exposition format, version 0.0.4.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tiny_http::{Header, Method, Response, Server};

use super::{MonitorError, Stats};

/// The content type of Prometheus's text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The HTTP server and its thread; dropping it stops both.
pub struct MetricsServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `address` now: an address that cannot be bound is
    /// refused before the run.
    pub fn bind(address: SocketAddr, stats: Arc<Stats>) -> Result<Self, MonitorError> {
        let server =
            Server::http(address)
                .map(Arc::new)
                .map_err(|error| MonitorError::Metrics {
                    address,
                    reason: error.to_string(),
                })?;
        let serving = server.clone();
        let thread = thread::Builder::new()
            .name("ftvm-metrics".into())
            .spawn(move || serve(&serving, &stats))
            .map_err(MonitorError::Thread)?;
        Ok(Self {
            server,
            thread: Some(thread),
        })
    }
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("address", &self.server.server_addr().to_ip())
            .finish()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &Server, stats: &Stats) {
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or_default();
        let response = match (request.method(), path) {
            (Method::Get | Method::Head, "/metrics") => Response::from_string(stats.render())
                .with_header(
                    Header::from_bytes("Content-Type", CONTENT_TYPE).expect("a valid header"),
                ),
            (Method::Get | Method::Head, _) => {
                Response::from_string("not found: metrics are at /metrics\n").with_status_code(404)
            }
            _ => Response::from_string("only GET\n").with_status_code(405),
        };
        if let Err(error) = request.respond(response) {
            tracing::debug!(%error, "a metrics client went away");
        }
    }
}
