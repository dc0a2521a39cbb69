//! Whole-file Linux open-file-description (OFD) locks.
//!
//! OFD locks belong to the open file description, not the process: two opens
//! in one process conflict like two processes do, and closing one file does
//! not drop a lock taken through another. On NFS the kernel turns them into
//! NFS byte-range locks, which other hosts see, and taking one revalidates
//! the client's cache so the read that follows sees the server's data.
//! The lock is released when the `File` holding it is closed.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// For reading: excludes writers only.
    Shared,
    /// For read-modify-write: excludes everyone.
    Exclusive,
}

/// Takes the lock, waiting while another open file description holds a
/// conflicting one.
pub(crate) fn lock(file: &File, kind: LockKind) -> io::Result<()> {
    loop {
        match set_lock(file, kind, libc::F_OFD_SETLKW) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Takes the lock if it is free; `Ok(false)` if another open file
/// description holds a conflicting one.
pub(crate) fn try_lock(file: &File, kind: LockKind) -> io::Result<bool> {
    match set_lock(file, kind, libc::F_OFD_SETLK) {
        Ok(()) => Ok(true),
        // fcntl(2): a conflicting lock is reported as EAGAIN or EACCES.
        Err(err) if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(err) => Err(err),
    }
}

fn set_lock(file: &File, kind: LockKind, command: libc::c_int) -> io::Result<()> {
    // SAFETY: `flock` is a plain C struct of integers, for which all zeroes is
    // a valid value; zero `l_pid` is also what OFD locks require.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    } as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = 0 and l_len = 0: the whole file, however long it grows.

    // SAFETY: the descriptor is open for the lifetime of `file`, and `request`
    // is a valid `flock` that the kernel only reads for these commands.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), command, &raw const request) };
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
