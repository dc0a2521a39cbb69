//! The disk's I/O thread: performs the guest's disk requests on the image,
//! in order, off the vCPU thread, and sends each completion to the vCPU
//! thread as a host input, to be applied (and logged) at a later exit.
//! It also samples the image for a live transfer's disk check, in order
//! with the requests, so the sample sees every write submitted before it.
//!
//! A paired primary's writes wait here, right before they land, until its
//! lease holds: a write released before the primary was frozen or cut off
//! must not land after its backup may have gone live and written newer
//! data to the same sectors.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use ft_logging::channel::DiskSample;
use ft_logging::{DiskOp, DiskRequest, Event, STATUS_IOERR, STATUS_OK, SinkError};
use sha2::{Digest, Sha256};
use shared_disk::DiskImage;
use shared_disk::image::SECTOR;
use tracing::warn;

use super::{HostInput, OutputLease};

/// How often a write waiting for the lease looks again.
const LEASE_POLL: Duration = Duration::from_millis(1);

/// What the I/O thread does, in the order given.
#[derive(Debug)]
enum Job {
    Request(DiskRequest),
    Sample {
        sectors: Vec<u64>,
        reply: Sender<Vec<DiskSample>>,
    },
}

/// A handle to the I/O thread; clones share it.
#[derive(Debug, Clone)]
pub struct DiskIo {
    jobs: Sender<Job>,
    sectors: u64,
}

impl DiskIo {
    /// Starts the thread on `image`; completions go to `completions`, and
    /// writes and flushes land only while `lease` allows.
    pub fn start(
        image: DiskImage,
        completions: Sender<HostInput>,
        lease: OutputLease,
    ) -> std::io::Result<Self> {
        let (jobs, incoming) = crossbeam_channel::unbounded::<Job>();
        let sectors = image.sectors();
        let image = Arc::new(image);
        thread::Builder::new()
            .name("disk-io".into())
            .spawn(move || {
                for job in incoming {
                    match job {
                        Job::Request(request) => {
                            if !matches!(request.op, DiskOp::Read { .. }) {
                                wait_for_lease(&lease);
                            }
                            let done = perform(&image, request);
                            if completions.send(HostInput::Disk(done)).is_err() {
                                return;
                            }
                        }
                        Job::Sample { sectors, reply } => {
                            let _ = reply.send(sample(&image, &sectors));
                        }
                    }
                }
            })?;
        Ok(Self { jobs, sectors })
    }

    /// Queues `request` for the I/O thread.
    pub fn submit(&self, request: DiskRequest) -> Result<(), SinkError> {
        self.jobs
            .send(Job::Request(request))
            .map_err(|_| SinkError::DiskGone)
    }

    /// The image's size in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// The SHA-256 of each of `sectors`, once every request submitted
    /// before has been done.
    pub fn sample(&self, sectors: Vec<u64>) -> Receiver<Vec<DiskSample>> {
        let (reply, samples) = crossbeam_channel::bounded(1);
        // A thread that is gone drops `reply`: the receiver says so.
        let _ = self.jobs.send(Job::Sample { sectors, reply });
        samples
    }
}

/// Waits until a write may land. A primary whose lease has lapsed for good
/// is fenced and ends meanwhile.
fn wait_for_lease(lease: &OutputLease) {
    while !lease.allows() {
        thread::sleep(LEASE_POLL);
    }
}

/// Hashes each sector; one that cannot be read hashes as no bytes.
fn sample(image: &DiskImage, sectors: &[u64]) -> Vec<DiskSample> {
    sectors
        .iter()
        .map(|&sector| {
            let bytes = image.peek(sector, SECTOR as usize).unwrap_or_default();
            DiskSample {
                sector,
                sha256: Sha256::digest(bytes).into(),
            }
        })
        .collect()
}

/// Which sectors of a disk of `sectors` to compare: the first, the last,
/// and others spread evenly from an offset that changes with `seed`, so
/// that two checks of the same pair of images look at different places.
pub fn sample_sectors(sectors: u64, seed: u64) -> Vec<u64> {
    const SAMPLES: u64 = 64;
    if sectors <= SAMPLES {
        return (0..sectors).collect();
    }
    let stride = sectors / SAMPLES;
    let offset = seed % stride;
    let mut chosen: Vec<u64> = (0..SAMPLES).map(|i| i * stride + offset).collect();
    chosen.extend([0, sectors - 1]);
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// Does one request; an I/O error becomes the guest's IOERR.
fn perform(image: &DiskImage, request: DiskRequest) -> Event {
    let result = match request.op {
        DiskOp::Read { sector, len } => image.read(sector, len as usize),
        DiskOp::Write { sector, ref data } => image.write(sector, data).map(|()| Vec::new()),
        DiskOp::Flush => image.flush().map(|()| Vec::new()),
    };
    let (status, data) = match result {
        Ok(data) => (STATUS_OK, data),
        Err(error) => {
            // A resized image was warned about once, and fails every request.
            if !image.resized() {
                warn!(request = request.id, %error, "disk request failed; the guest sees an I/O error");
            }
            (STATUS_IOERR, Vec::new())
        }
    };
    Event::DiskDone {
        request: request.id,
        status,
        data,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use shared_disk::image::ImageLock;

    use super::*;

    #[test]
    fn a_write_lands_only_while_the_lease_holds() {
        let path = std::env::temp_dir().join(format!("ftvm-disk-io-{}", std::process::id()));
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let image = DiskImage::open(&path, false, ImageLock::Now).unwrap();
        let (completions, done) = crossbeam_channel::unbounded();
        let lease = OutputLease::default();
        let disk = DiskIo::start(image, completions, lease.clone()).unwrap();
        let holds = Arc::new(AtomicBool::new(false));
        lease.set(Some(Arc::new({
            let holds = holds.clone();
            move || holds.load(Ordering::SeqCst)
        })));
        let write = |id| DiskRequest {
            id,
            op: DiskOp::Write {
                sector: 1,
                data: vec![id as u8; SECTOR as usize],
            },
        };
        disk.submit(write(7)).unwrap();
        let pause = Duration::from_millis(100);
        assert!(
            done.recv_timeout(pause).is_err(),
            "it landed without a lease"
        );
        assert_eq!(std::fs::read(&path).unwrap(), [0u8; 4096]);
        holds.store(true, Ordering::SeqCst);
        assert!(matches!(
            done.recv_timeout(Duration::from_secs(5)),
            Ok(HostInput::Disk(Event::DiskDone { request: 7, .. }))
        ));
        assert_eq!(std::fs::read(&path).unwrap()[512..1024], [7u8; 512]);
        // Alone, writes land whatever the lease says.
        holds.store(false, Ordering::SeqCst);
        lease.set(None);
        disk.submit(write(8)).unwrap();
        assert!(done.recv_timeout(Duration::from_secs(5)).is_ok());
        assert_eq!(std::fs::read(&path).unwrap()[512..1024], [8u8; 512]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn samples_cover_both_ends_and_move_with_the_seed() {
        let sectors = 8192;
        let one = sample_sectors(sectors, 1);
        let other = sample_sectors(sectors, 2);
        for chosen in [&one, &other] {
            assert_eq!(chosen.first(), Some(&0));
            assert_eq!(chosen.last(), Some(&(sectors - 1)));
            assert!(chosen.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(chosen.len() >= 64, "{}", chosen.len());
        }
        assert_ne!(one, other);
        // A small disk is compared whole.
        assert_eq!(sample_sectors(3, 9), vec![0, 1, 2]);
    }
}
