//! `--kernel NAME`: a file when one exists at that path, otherwise the
//! built-in image of that name.
//!
//! A kernel file is read only as far as the ELF needs (see
//! [`elf::needed_len`]), and never past the guest's RAM, so a device, a FIFO
//! or a huge file costs neither memory nor time before it is refused.

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::boot::elf;
use crate::images::{self, BUILTIN};

/// What is read first: an ELF64 file header.
const HEAD: u64 = 64;

/// Why `--kernel` names no kernel ftvm can read.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No such file and no built-in image of that name.
    #[error(
        "kernel `{name}` not found: no such file, and no built-in image of that name (built-in: {builtins})"
    )]
    NotFound {
        /// The name given.
        name: String,
        /// The built-in images.
        builtins: String,
    },
    /// The file exists but cannot be read.
    #[error("cannot read kernel `{path}`: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// The error underneath.
        source: std::io::Error,
    },
    /// The path is not a regular file (a device, a FIFO, a directory).
    #[error("cannot read kernel `{path}`: it is not a regular file")]
    NotAFile {
        /// The file.
        path: String,
    },
}

/// A kernel image and where it came from.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The name it was given by.
    pub name: String,
    /// The ELF image, as far as the guest needs it.
    pub image: Cow<'static, [u8]>,
}

/// The kernel `name` names, read as far as a guest with `ram` bytes of
/// memory could need.
pub fn resolve(name: &str, ram: u64) -> Result<Kernel, KernelError> {
    let path = Path::new(name);
    if path.exists() {
        return Ok(Kernel {
            name: name.to_owned(),
            image: Cow::Owned(read(name, ram)?),
        });
    }
    match images::builtin(name) {
        Some(builtin) => {
            // Trimmed as a file would be, so a copy of a built-in image in a
            // file is the same kernel as the built-in.
            let needed = elf::needed_len(builtin.elf).unwrap_or(u64::MAX);
            let len =
                usize::try_from(needed).map_or(builtin.elf.len(), |n| n.min(builtin.elf.len()));
            Ok(Kernel {
                name: name.to_owned(),
                image: Cow::Borrowed(&builtin.elf[..len]),
            })
        }
        None => Err(KernelError::NotFound {
            name: name.to_owned(),
            builtins: BUILTIN
                .iter()
                .map(|b| b.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Reads the ELF header, then the program headers, then what they need,
/// each step no further than the file, `ram`, and what the previous one
/// says. What is not an ELF stops early; validation says what is wrong.
fn read(name: &str, ram: u64) -> Result<Vec<u8>, KernelError> {
    let unreadable = |source| KernelError::Unreadable {
        path: name.to_owned(),
        source,
    };
    // Without waiting for a writer, should it be a FIFO.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(name)
        .map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(KernelError::NotAFile {
            path: name.to_owned(),
        });
    }
    let limit = metadata.len().min(ram.max(HEAD));
    let mut image = Vec::new();
    let mut file = file.take(0);
    let mut upto = |image: &mut Vec<u8>, end: u64| -> io::Result<()> {
        let end = end.min(limit);
        if end > image.len() as u64 {
            file.set_limit(end - image.len() as u64);
            file.read_to_end(image)?;
        }
        Ok(())
    };
    upto(&mut image, HEAD).map_err(unreadable)?;
    if let Some(end) = elf::headers_end(&image) {
        upto(&mut image, end).map_err(unreadable)?;
    }
    if let Some(end) = elf::needed_len(&image) {
        upto(&mut image, end).map_err(unreadable)?;
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_wins_over_a_builtin_name() {
        let dir = std::env::temp_dir().join(format!("ftvm-kernel-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hello");
        std::fs::write(&file, b"not a kernel").unwrap();
        let kernel = resolve(file.to_str().unwrap(), 64 << 20).unwrap();
        assert_eq!(&*kernel.image, b"not a kernel");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_builtin_name_resolves_and_an_unknown_one_does_not() {
        assert!(
            resolve("hello", 64 << 20)
                .unwrap()
                .image
                .starts_with(b"\x7fELF")
        );
        assert!(matches!(
            resolve("no-such-kernel", 64 << 20),
            Err(KernelError::NotFound { .. })
        ));
    }
}
