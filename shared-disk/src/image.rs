//! A raw disk image on storage both hosts see: the guest's block device.
//! Only the host I/O thread touches it; the guest sees its contents through
//! logged completions.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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
}

/// An open disk image and what the guest is told of it.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    sectors: u64,
    read_only: bool,
}

impl DiskImage {
    /// Opens the image at `path`, for writing unless `read_only` is set. An
    /// image this process may not write is opened read-only instead, and
    /// offered to the guest as such.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, ImageError> {
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
        Ok(Self {
            file,
            sectors: len / SECTOR,
            read_only,
        })
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
        let mut data = vec![0; len];
        self.file
            .read_exact_at(&mut data, self.offset(sector, len)?)?;
        Ok(data)
    }

    /// Writes `data` at `sector`.
    pub fn write(&self, sector: u64, data: &[u8]) -> io::Result<()> {
        self.file
            .write_all_at(data, self.offset(sector, data.len())?)
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> io::Result<()> {
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
        let disk = DiskImage::open(file.path(), false).unwrap();
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
        let disk = DiskImage::open(file.path(), true).unwrap();
        assert!(disk.read_only());
        assert!(disk.write(0, &[0; 512]).is_err());
        assert_eq!(disk.read(0, 512).unwrap(), vec![1; 512]);
    }

    #[test]
    fn bad_images_are_refused_with_their_problem() {
        let missing = DiskImage::open(Path::new("/nonexistent/disk.img"), false).unwrap_err();
        assert!(matches!(missing, ImageError::Open { .. }), "{missing}");
        let empty = image(&[]);
        let error = DiskImage::open(empty.path(), false).unwrap_err();
        assert!(matches!(error, ImageError::Empty { .. }), "{error}");
        let odd = image(&[0; 700]);
        let error = DiskImage::open(odd.path(), false).unwrap_err();
        assert!(error.to_string().contains("700 bytes"), "{error}");
        let error = DiskImage::open(Path::new("/tmp"), false).unwrap_err();
        assert!(
            matches!(error, ImageError::NotAFile { .. } | ImageError::Open { .. }),
            "{error}"
        );
    }
}
