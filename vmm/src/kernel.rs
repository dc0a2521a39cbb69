//! `--kernel NAME`: a file when one exists at that path, otherwise the
//! built-in image of that name.

use std::borrow::Cow;
use std::path::Path;

use crate::images::{self, BUILTIN};

/// Why `--kernel` names no kernel.
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
}

/// A kernel image and where it came from.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The name it was given by.
    pub name: String,
    /// The ELF image.
    pub image: Cow<'static, [u8]>,
}

/// The kernel `name` means: a file when one exists at that path, else the built-in image of that name.
pub fn resolve(name: &str) -> Result<Kernel, KernelError> {
    let path = Path::new(name);
    if path.exists() {
        let image = std::fs::read(path).map_err(|source| KernelError::Unreadable {
            path: name.to_owned(),
            source,
        })?;
        return Ok(Kernel {
            name: name.to_owned(),
            image: Cow::Owned(image),
        });
    }
    match images::builtin(name) {
        Some(builtin) => Ok(Kernel {
            name: name.to_owned(),
            image: Cow::Borrowed(builtin.elf),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_wins_over_a_builtin_name() {
        let dir = std::env::temp_dir().join(format!("ftvm-kernel-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hello");
        std::fs::write(&file, b"not a kernel").unwrap();
        let kernel = resolve(file.to_str().unwrap()).unwrap();
        assert_eq!(&*kernel.image, b"not a kernel");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_builtin_name_resolves_and_an_unknown_one_does_not() {
        assert!(resolve("hello").unwrap().image.starts_with(b"\x7fELF"));
        assert!(matches!(
            resolve("no-such-kernel"),
            Err(KernelError::NotFound { .. })
        ));
    }
}
