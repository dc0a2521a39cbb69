//! The disk's I/O thread: performs the guest's disk requests on the image,
//! in order, off the vCPU thread, and sends each completion to the vCPU
//! thread as a host input, to be applied (and logged) at a later exit.

use std::sync::Arc;
use std::thread;

use crossbeam_channel::Sender;
use ft_logging::{DiskOp, DiskRequest, Event, STATUS_IOERR, STATUS_OK, SinkError};
use shared_disk::DiskImage;
use tracing::warn;

use super::HostInput;

/// A handle to the I/O thread; clones share it.
#[derive(Debug, Clone)]
pub struct DiskIo {
    requests: Sender<DiskRequest>,
}

impl DiskIo {
    /// Starts the thread on `image`; completions go to `completions`.
    pub fn start(image: DiskImage, completions: Sender<HostInput>) -> std::io::Result<Self> {
        let (requests, incoming) = crossbeam_channel::unbounded::<DiskRequest>();
        let image = Arc::new(image);
        thread::Builder::new()
            .name("disk-io".into())
            .spawn(move || {
                for request in incoming {
                    let done = perform(&image, request);
                    if completions.send(HostInput::Disk(done)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self { requests })
    }

    /// Queues `request` for the I/O thread.
    pub fn submit(&self, request: DiskRequest) -> Result<(), SinkError> {
        self.requests.send(request).map_err(|_| SinkError::DiskGone)
    }
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
