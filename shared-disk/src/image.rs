//! A raw disk image on storage both hosts see: the guest's block device.
//! Only the host I/O thread touches it; the guest sees its contents through
//! logged completions.
//!
//! As QEMU does, the side that writes an image holds an advisory lock on
//! it (an OFD lock, which NFS carries between hosts): a writer's lock is
//! exclusive, a read-only user's shared, so a second VM on an image in use
//! is refused. A backup writes nothing until it is live, so it takes the
//! lock at its first request; the killed primary's lock is gone by then
//! (its kernel closed the file), and one still held (a primary frozen or
//! cut off) is tried for again at every request, the go-live flag fencing
//! that primary meanwhile. An image whose size changes under the VM fails
//! every request from then on, with one warning.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::lock::{self, LockKind};

/// Bytes per sector, the unit the guest addresses the disk in (virtio-blk's,
/// whatever the device announces as its block size).
pub const SECTOR: u64 = 512;

/// Why a disk image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image cannot be opened.
    #[error("cannot open disk image {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: io::Error,
    },
    /// The image is not a regular file.
    #[error("disk image {path} is not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The image is empty.
    #[error("disk image {path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The image is not a whole number of 512-byte sectors.
    #[error("disk image {path} is {len} bytes, not a whole number of 512-byte sectors")]
    PartialSector {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
    },
    /// Another VM holds the image's lock.
    #[error("disk image {path} is in use by another VM (it holds the image's lock)")]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The image's lock cannot be taken.
    #[error("cannot lock disk image {path}: {source}")]
    Lock {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: io::Error,
    },
}

/// When the image's lock is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLock {
    /// At open: a VM that may write at once (run, record, a primary).
    Now,
    /// At the first request: a backup, which issues none before it is live.
    FirstRequest,
}

/// An open disk image and what the guest is told of it.
#[derive(Debug)]
pub struct DiskImage {
    path: PathBuf,
    file: File,
    sectors: u64,
    read_only: bool,
    locked: AtomicBool,
    /// A warning was given: the lock is held elsewhere, the size changed.
    warned_lock: AtomicBool,
    warned_size: AtomicBool,
}

impl DiskImage {
    /// Opens the image at `path`, for writing unless `read_only` is set. An
    /// image this process may not write is opened read-only instead, and
    /// offered to the guest as such. With [`ImageLock::Now`], an image
    /// another VM holds is refused with [`ImageError::InUse`].
    pub fn open(path: &Path, read_only: bool, lock: ImageLock) -> Result<Self, ImageError> {
        let open_error = |source| ImageError::Open {
            path: path.to_owned(),
            source,
        };
        let (file, read_only) = if read_only {
            (File::open(path).map_err(open_error)?, true)
        } else {
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(file) => (file, false),
                Err(error)
                    if matches!(
                        error.raw_os_error(),
                        Some(libc::EACCES | libc::EROFS | libc::EPERM)
                    ) =>
                {
                    tracing::warn!(path = %path.display(), %error, "disk image not writable: offered read-only");
                    (File::open(path).map_err(open_error)?, true)
                }
                Err(error) => return Err(open_error(error)),
            }
        };
        let metadata = file.metadata().map_err(open_error)?;
        if !metadata.is_file() {
            return Err(ImageError::NotAFile {
                path: path.to_owned(),
            });
        }
        let len = metadata.len();
        if len == 0 {
            return Err(ImageError::Empty {
                path: path.to_owned(),
            });
        }
        if !len.is_multiple_of(SECTOR) {
            return Err(ImageError::PartialSector {
                path: path.to_owned(),
                len,
            });
        }
        let image = Self {
            path: path.to_owned(),
            file,
            sectors: len / SECTOR,
            read_only,
            locked: AtomicBool::new(false),
            warned_lock: AtomicBool::new(false),
            warned_size: AtomicBool::new(false),
        };
        if lock == ImageLock::Now && !image.try_lock()? {
            return Err(ImageError::InUse {
                path: path.to_owned(),
            });
        }
        Ok(image)
    }

    /// Takes the lock unless another VM holds it; true once held.
    fn try_lock(&self) -> Result<bool, ImageError> {
        if self.locked.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let kind = if self.read_only {
            LockKind::Shared
        } else {
            LockKind::Exclusive
        };
        let held = lock::try_lock(&self.file, kind).map_err(|source| ImageError::Lock {
            path: self.path.clone(),
            source,
        })?;
        self.locked.store(held, Ordering::SeqCst);
        Ok(held)
    }

    /// Before each request: the lock (taken now if it was deferred), and
    /// the size the guest was told.
    fn check(&self) -> io::Result<()> {
        match self.try_lock() {
            Ok(true) => {}
            result => {
                if !self.warned_lock.swap(true, Ordering::SeqCst) {
                    let problem = result
                        .err()
                        .map_or("another VM holds it".into(), |e| e.to_string());
                    tracing::warn!(path = %self.path.display(), %problem, "going on without the disk image's lock; trying again at each request");
                }
            }
        }
        let len = self.file.metadata()?.len();
        if len != self.sectors * SECTOR {
            if !self.warned_size.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    path = %self.path.display(),
                    was = self.sectors * SECTOR,
                    now = len,
                    "the disk image changed size under the VM; the guest's requests fail from now on"
                );
            }
            return Err(io::Error::other(format!(
                "the disk image changed size ({len} bytes, was {})",
                self.sectors * SECTOR
            )));
        }
        Ok(())
    }

    /// Whether the image changed size under the VM (and that was warned about).
    pub fn resized(&self) -> bool {
        self.warned_size.load(Ordering::SeqCst)
    }

    /// Its size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether the guest may only read it.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Reads `len` bytes from `sector`.
    pub fn read(&self, sector: u64, len: usize) -> io::Result<Vec<u8>> {
        self.check()?;
        let mut data = vec![0; len];
        self.file
            .read_exact_at(&mut data, self.offset(sector, len)?)?;
        Ok(data)
    }

    /// Writes `data` at `sector`.
    pub fn write(&self, sector: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.file
            .write_all_at(data, self.offset(sector, data.len())?)
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> io::Result<()> {
        self.check()?;
        self.file.sync_data()
    }

    /// The byte offset of `sector`, checked so that `len` bytes from it
    /// stay on the disk.
    fn offset(&self, sector: u64, len: usize) -> io::Result<u64> {
        let end = sector
            .checked_mul(SECTOR)
            .and_then(|offset| offset.checked_add(len as u64).map(|end| (offset, end)));
        match end {
            Some((offset, end)) if end <= self.sectors * SECTOR => Ok(offset),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request beyond the end of the disk",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn image(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn reads_what_was_written_and_stays_within_the_disk() {
        let file = image(&[0; 4096]);
        let disk = DiskImage::open(file.path(), false, ImageLock::Now).unwrap();
        assert_eq!(disk.sectors(), 8);
        assert!(!disk.read_only());
        disk.write(7, &[0xab; 512]).unwrap();
        disk.flush().unwrap();
        assert_eq!(disk.read(7, 512).unwrap(), vec![0xab; 512]);
        assert!(disk.write(7, &[0; 1024]).is_err());
        assert!(disk.read(u64::MAX, 512).is_err());
    }

    #[test]
    fn a_read_only_image_refuses_writes() {
        let file = image(&[1; 512]);
        let disk = DiskImage::open(file.path(), true, ImageLock::Now).unwrap();
        assert!(disk.read_only());
        assert!(disk.write(0, &[0; 512]).is_err());
        assert_eq!(disk.read(0, 512).unwrap(), vec![1; 512]);
    }

    #[test]
    fn bad_images_are_refused_with_their_problem() {
        let missing =
            DiskImage::open(Path::new("/nonexistent/disk.img"), false, ImageLock::Now).unwrap_err();
        assert!(matches!(missing, ImageError::Open { .. }), "{missing}");
        let empty = image(&[]);
        let error = DiskImage::open(empty.path(), false, ImageLock::Now).unwrap_err();
        assert!(matches!(error, ImageError::Empty { .. }), "{error}");
        let odd = image(&[0; 700]);
        let error = DiskImage::open(odd.path(), false, ImageLock::Now).unwrap_err();
        assert!(error.to_string().contains("700 bytes"), "{error}");
        let error = DiskImage::open(Path::new("/tmp"), false, ImageLock::Now).unwrap_err();
        assert!(
            matches!(error, ImageError::NotAFile { .. } | ImageError::Open { .. }),
            "{error}"
        );
    }

    #[test]
    fn a_second_user_of_an_image_in_use_is_refused() {
        let file = image(&[0; 4096]);
        let first = DiskImage::open(file.path(), false, ImageLock::Now).unwrap();
        for read_only in [false, true] {
            let error = DiskImage::open(file.path(), read_only, ImageLock::Now).unwrap_err();
            assert!(matches!(error, ImageError::InUse { .. }), "{error}");
        }
        // Readers share, and keep a writer out.
        drop(first);
        let reader = DiskImage::open(file.path(), true, ImageLock::Now).unwrap();
        let _second_reader = DiskImage::open(file.path(), true, ImageLock::Now).unwrap();
        assert!(DiskImage::open(file.path(), false, ImageLock::Now).is_err());
        drop(reader);
    }

    #[test]
    fn a_backup_takes_the_lock_at_its_first_request() {
        let file = image(&[0; 4096]);
        let primary = DiskImage::open(file.path(), false, ImageLock::Now).unwrap();
        let backup = DiskImage::open(file.path(), false, ImageLock::FirstRequest).unwrap();
        // The primary still holds it: the request goes on without it.
        backup.write(0, &[1; 512]).unwrap();
        drop(primary);
        backup.write(1, &[2; 512]).unwrap();
        let error = DiskImage::open(file.path(), false, ImageLock::Now).unwrap_err();
        assert!(matches!(error, ImageError::InUse { .. }), "{error}");
    }

    #[test]
    fn an_image_that_changes_size_fails_every_request() {
        let file = image(&[0; 4096]);
        let disk = DiskImage::open(file.path(), false, ImageLock::Now).unwrap();
        file.as_file().set_len(2048).unwrap();
        assert!(disk.read(0, 512).is_err());
        assert!(disk.write(0, &[0; 512]).is_err());
        assert!(disk.flush().is_err());
        assert!(disk.resized());
    }
}
