//! Reading a test's ftvm through `--metrics`: a plain HTTP GET of
//! `/metrics`, `promtool check metrics` on what it served, and values.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What `GET /metrics` answered.
#[derive(Debug)]
pub struct Scrape {
    pub status_line: String,
    pub content_type: String,
    pub body: String,
}

impl Scrape {
    /// The value of the sample `series` (a name with its labels, as
    /// written), if served.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.body.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
            rest.split(' ').next()?.parse().ok()
        })
    }

    /// The `q` quantile of histogram `name`, interpolated within its bucket
    /// as Prometheus's `histogram_quantile` does, and the histogram's count.
    pub fn quantile(&self, name: &str, q: f64) -> (f64, f64) {
        let buckets: Vec<(f64, f64)> = self
            .body
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?.strip_prefix("_bucket{le=\"")?;
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.parse().ok()?))
            })
            .collect();
        let total = buckets.last().map_or(0.0, |bucket| bucket.1);
        let rank = q * total;
        let mut below = (0.0, 0.0);
        for &(le, count) in &buckets {
            if count >= rank {
                if le.is_infinite() {
                    return (below.0, total);
                }
                let within = (rank - below.1) / (count - below.1).max(1.0);
                return (below.0 + (le - below.0) * within, total);
            }
            below = (le, count);
        }
        (f64::NAN, total)
    }

    /// The role whose `ftvm_role` sample is 1.
    pub fn role(&self) -> Option<String> {
        self.body.lines().find_map(|line| {
            let role = line
                .strip_prefix("ftvm_role{role=\"")?
                .strip_suffix("\"} 1")?;
            Some(role.to_string())
        })
    }

    /// Asserts `promtool check metrics` finds nothing to say.
    pub fn assert_promtool_clean(&self) {
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool (Debian's prometheus package)");
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(self.body.as_bytes())
            .unwrap();
        let output = promtool.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && said.trim().is_empty(),
            "promtool: {said}\n{}",
            self.body
        );
    }
}

/// `GET /metrics` from `address`; None while nothing answers there.
pub fn scrape(address: SocketAddr) -> Option<Scrape> {
    scrape_on(TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?)
}

/// `GET /metrics` on a connection to an endpoint.
pub fn scrape_on(mut stream: TcpStream) -> Option<Scrape> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: ftvm\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status_line = lines.next()?.to_string();
    let content_type = lines
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Some(Scrape {
        status_line,
        content_type,
        body: body.to_string(),
    })
}
