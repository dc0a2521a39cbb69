//! The counters and gauges of a run: moved by the threads that see things
//! happen (the vCPU, the output gate, the channel's watchers), read by the
//! progress events and served as Prometheus metrics. Each is an atomic, so
//! moving one on the vCPU thread costs next to nothing.

use prometheus::{
    Counter, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// Bucket bounds of the output rule's hold time, in seconds: from a
/// loopback round trip to a takeover.
const HOLD_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
    2.0, 5.0, 10.0,
];

/// What this process is to the guest now, as `ftvm_role` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `run` or `record`: no pair.
    Run,
    /// The primary of a pair.
    Primary,
    /// A backup replaying its primary's log.
    Backup,
    /// A backup joining a live primary, not yet holding the guest.
    Standby,
    /// Running the guest without a backup: a primary whose backup was lost
    /// or never came, or a backup that took over.
    Alone,
}

impl Role {
    const ALL: [Role; 5] = [
        Role::Run,
        Role::Primary,
        Role::Backup,
        Role::Standby,
        Role::Alone,
    ];

    /// The `role` label's value.
    pub fn name(self) -> &'static str {
        match self {
            Role::Run => "run",
            Role::Primary => "primary",
            Role::Backup => "backup",
            Role::Standby => "standby",
            Role::Alone => "alone",
        }
    }
}

/// The disk requests and bytes this host's disk was asked for.
#[derive(Debug, Clone)]
pub struct DiskCounters {
    /// Read requests.
    pub reads: IntCounter,
    /// Write requests.
    pub writes: IntCounter,
    /// Flush requests.
    pub flushes: IntCounter,
    /// Bytes read.
    pub read_bytes: IntCounter,
    /// Bytes written.
    pub write_bytes: IntCounter,
}

/// The frames this host's TAP device carried for the guest.
#[derive(Debug, Clone)]
pub struct NetCounters {
    /// Frames handed to the guest.
    pub rx_frames: IntCounter,
    /// Their bytes.
    pub rx_bytes: IntCounter,
    /// Frames sent for the guest.
    pub tx_frames: IntCounter,
    /// Their bytes.
    pub tx_bytes: IntCounter,
    /// Frames that never reached the guest.
    pub discarded_frames: IntCounter,
}

/// Every metric of a run, registered for the Prometheus endpoint.
#[derive(Debug, Clone)]
pub struct Stats {
    registry: Registry,
    /// `ftvm_exits_total`.
    pub exits: IntCounter,
    /// `ftvm_log_bytes_total`.
    pub log_bytes: IntCounter,
    /// `ftvm_takeovers_total`.
    pub takeovers: IntCounter,
    /// `ftvm_divergences_total`.
    pub divergences: IntCounter,
    /// `ftvm_lag_seconds`.
    pub lag_seconds: Gauge,
    roles: IntGaugeVec,
    /// `ftvm_paired`.
    pub paired: IntGauge,
    /// `ftvm_protected`.
    pub protected: IntGauge,
    /// `ftvm_held_outputs`.
    pub held_outputs: IntGauge,
    /// `ftvm_output_hold_seconds`.
    pub output_hold_seconds: Histogram,
    /// `ftvm_stall_seconds_total`.
    pub stall_seconds: Counter,
    /// `ftvm_disk_requests_total` and `ftvm_disk_bytes_total`.
    pub disk: DiskCounters,
    /// `ftvm_net_frames_total`, `ftvm_net_bytes_total` and `ftvm_net_discarded_frames_total`.
    pub net: NetCounters,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// How long flow control has stalled the guest, in milliseconds.
    pub fn stall_ms(&self) -> u64 {
        (self.stall_seconds.get() * 1e3) as u64
    }

    /// Every metric at zero, the role `run`.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help));
        let gauge = |name: &str, help: &str| register(&registry, IntGauge::new(name, help));
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "ftvm_disk_requests_total",
                    "Requests this host's disk was given for the guest, by operation.",
                ),
                &["op"],
            ),
        );
        let frames = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "ftvm_net_frames_total",
                    "Frames this host's TAP device carried for the guest, by direction.",
                ),
                &["direction"],
            ),
        );
        let net_bytes = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "ftvm_net_bytes_total",
                    "Bytes of the frames this host's TAP device carried for the guest, by direction.",
                ),
                &["direction"],
            ),
        );
        let disk_bytes = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "ftvm_disk_bytes_total",
                    "Bytes this host's disk read or wrote for the guest, by operation.",
                ),
                &["op"],
            ),
        );
        let stats = Self {
            exits: counter(
                "ftvm_exits_total",
                "VM exits the deterministic core has counted.",
            ),
            log_bytes: counter(
                "ftvm_log_bytes_total",
                "Bytes of log sent to the backup (primary), received from the primary (backup) or written to the trace (record).",
            ),
            takeovers: counter(
                "ftvm_takeovers_total",
                "Times this process took over the guest from a lost primary.",
            ),
            divergences: counter(
                "ftvm_divergences_total",
                "Times this backup's replay took another path than the primary's guest.",
            ),
            lag_seconds: register(
                &registry,
                Gauge::new(
                    "ftvm_lag_seconds",
                    "Guest time the backup trails the primary by (primary), or the replay trails the log received (backup).",
                ),
            ),
            roles: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "ftvm_role",
                        "1 for what this process is to the guest now, 0 for the other roles.",
                    ),
                    &["role"],
                ),
            ),
            paired: gauge(
                "ftvm_paired",
                "1 while a primary and its backup are paired.",
            ),
            protected: gauge(
                "ftvm_protected",
                "1 while the guest has a backup that can take over.",
            ),
            held_outputs: gauge(
                "ftvm_held_outputs",
                "Outputs the output rule holds now, waiting for the backup's acknowledgement.",
            ),
            output_hold_seconds: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "ftvm_output_hold_seconds",
                        "How long the output rule held each output before releasing it.",
                    )
                    .buckets(HOLD_BUCKETS.to_vec()),
                ),
            ),
            stall_seconds: register(
                &registry,
                Counter::new(
                    "ftvm_stall_seconds_total",
                    "Time flow control stalled the primary's guest, waiting for its backup.",
                ),
            ),
            disk: DiskCounters {
                reads: requests.with_label_values(&["read"]),
                writes: requests.with_label_values(&["write"]),
                flushes: requests.with_label_values(&["flush"]),
                read_bytes: disk_bytes.with_label_values(&["read"]),
                write_bytes: disk_bytes.with_label_values(&["write"]),
            },
            net: NetCounters {
                rx_frames: frames.with_label_values(&["rx"]),
                rx_bytes: net_bytes.with_label_values(&["rx"]),
                tx_frames: frames.with_label_values(&["tx"]),
                tx_bytes: net_bytes.with_label_values(&["tx"]),
                discarded_frames: counter(
                    "ftvm_net_discarded_frames_total",
                    "Frames dropped before the guest took them: queued on a backup's TAP before it went live, or beyond the guest's receive queue.",
                ),
            },
            registry,
        };
        stats.set_role(Role::Run);
        stats
    }

    /// Makes `role` the one `ftvm_role` says.
    pub fn set_role(&self, role: Role) {
        for each in Role::ALL {
            self.roles
                .with_label_values(&[each.name()])
                .set(i64::from(each == role));
        }
    }

    /// Paired with a backup that can take over (or not any more).
    pub fn set_paired(&self, paired: bool) {
        self.paired.set(i64::from(paired));
        self.protected.set(i64::from(paired));
    }

    /// The metrics in Prometheus's text format, version 0.0.4.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("the text format takes every metric")
    }
}

fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric registered once");
    metric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_and_one_role_is_set() {
        let stats = Stats::new();
        stats.set_role(Role::Alone);
        stats.exits.inc_by(3);
        stats
            .output_hold_seconds
            .observe(std::time::Duration::from_micros(300).as_secs_f64());
        let text = stats.render();
        for family in [
            "ftvm_exits_total",
            "ftvm_log_bytes_total",
            "ftvm_takeovers_total",
            "ftvm_lag_seconds",
            "ftvm_role",
            "ftvm_paired",
            "ftvm_protected",
            "ftvm_output_hold_seconds",
            "ftvm_stall_seconds_total",
            "ftvm_divergences_total",
            "ftvm_disk_requests_total",
            "ftvm_net_frames_total",
        ] {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family}\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}\n{text}"
            );
        }
        assert!(text.contains("ftvm_exits_total 3\n"), "{text}");
        assert!(text.contains("ftvm_role{role=\"alone\"} 1\n"), "{text}");
        assert!(text.contains("ftvm_role{role=\"primary\"} 0\n"), "{text}");
        assert!(
            text.contains("ftvm_output_hold_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
    }
}
