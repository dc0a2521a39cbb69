//! Guest kernels built into the ftvm binary.

use std::fmt;

/// A guest kernel from `guest-images/`, compiled in by `build.rs`.
pub struct BuiltinImage {
    /// The name `--kernel` knows it by.
    pub name: &'static str,
    /// The ELF file, 16-byte aligned so that ELF headers can be read in place.
    pub elf: &'static [u8],
}

impl fmt::Debug for BuiltinImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltinImage")
            .field("name", &self.name)
            .field("elf_len", &self.elf.len())
            .finish()
    }
}

/// Gives `include_bytes!` data an alignment.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

/// Every built-in image.
pub const BUILTIN: &[BuiltinImage] = include!(concat!(env!("OUT_DIR"), "/images.rs"));

/// The built-in image called `name`.
pub fn builtin(name: &str) -> Option<&'static BuiltinImage> {
    BUILTIN.iter().find(|image| image.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_image_is_an_x86_64_elf64_executable() {
        for image in BUILTIN {
            let elf = image.elf;
            assert!(
                elf.len() > 64,
                "{} is too short for an ELF header",
                image.name
            );
            assert_eq!(&elf[..4], b"\x7fELF", "{} has no ELF magic", image.name);
            assert_eq!(elf[4], 2, "{} is not ELFCLASS64", image.name);
            assert_eq!(elf[5], 1, "{} is not little-endian", image.name);
            assert_eq!(
                u16::from_le_bytes([elf[18], elf[19]]),
                62,
                "{} is not for x86-64",
                image.name
            );
            assert_eq!(
                elf.as_ptr() as usize % 16,
                0,
                "{} is not 16-byte aligned",
                image.name
            );
        }
    }

    #[test]
    fn images_are_found_by_name() {
        for name in ["hello", "ticker", "exitloop"] {
            assert_eq!(builtin(name).map(|image| image.name), Some(name));
        }
        assert!(builtin("no-such-image").is_none());
    }
}
