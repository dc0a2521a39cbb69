//! The validated configuration of a VM: everything the guest can observe
//! of its platform before the first event.

use std::borrow::Cow;

use ft_logging::Header;

use crate::boot::elf::{self, ElfError, PvhKernel};
use crate::kernel::{self, Kernel, KernelError};
use ftvm_core::layout::{CMDLINE_MAX, MAX_MEM_MIB};
use ftvm_core::platform::Devices;

/// Guest RAM unless `--mem-mib` says otherwise.
pub const DEFAULT_MEM_MIB: u32 = 64;

/// Why a VM's configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The memory size is out of range.
    #[error(
        "--mem-mib must be between 1 and {MAX_MEM_MIB} (RAM ends below the MMIO area), not {0}"
    )]
    MemSize(u32),
    /// The command line, with the device words, is too long.
    #[error(
        "the guest's command line is {0} bytes long with its devices; the longest is {CMDLINE_MAX}"
    )]
    CmdlineLength(usize),
    /// The command line holds a byte that is not printable ASCII.
    #[error("--cmdline may hold printable ASCII only (byte {0:#04x} is not)")]
    CmdlineCharacter(u8),
    /// No such kernel.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The kernel is not a PVH ELF64 image.
    #[error("invalid kernel `{name}`: {source}")]
    InvalidKernel {
        /// The kernel.
        name: String,
        /// What is wrong with it.
        source: ElfError,
    },
}

/// A VM's validated configuration.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Guest RAM in MiB.
    pub mem_mib: u32,
    /// The guest's command line, as given.
    pub cmdline: String,
    /// The kernel.
    pub kernel: Kernel,
    /// Where the kernel is entered.
    pub pvh: PvhKernel,
    /// The virtio devices.
    pub devices: Devices,
}

impl VmConfig {
    /// Checks every setting, and the kernel named by `--kernel` against the
    /// RAM it will get, before anything touches KVM.
    pub fn new(
        kernel_name: &str,
        mem_mib: u32,
        cmdline: &str,
        devices: Devices,
    ) -> Result<Self, ConfigError> {
        let kernel = kernel::resolve(kernel_name, u64::from(mem_mib) << 20)?;
        Self::with_kernel(kernel, mem_mib, cmdline, devices)
    }

    /// The same checks, for a kernel already in hand (from a trace).
    pub fn with_kernel(
        kernel: Kernel,
        mem_mib: u32,
        cmdline: &str,
        devices: Devices,
    ) -> Result<Self, ConfigError> {
        if mem_mib == 0 || mem_mib > MAX_MEM_MIB {
            return Err(ConfigError::MemSize(mem_mib));
        }
        if let Some(&byte) = cmdline
            .as_bytes()
            .iter()
            .find(|b| !(b' '..=b'~').contains(*b))
        {
            return Err(ConfigError::CmdlineCharacter(byte));
        }
        let pvh = elf::validate(&kernel.image, u64::from(mem_mib) << 20).map_err(|source| {
            ConfigError::InvalidKernel {
                name: kernel.name.clone(),
                source,
            }
        })?;
        let config = Self {
            mem_mib,
            cmdline: cmdline.to_owned(),
            kernel,
            pvh,
            devices,
        };
        let length = config.guest_cmdline().len();
        if length > CMDLINE_MAX {
            return Err(ConfigError::CmdlineLength(length));
        }
        Ok(config)
    }

    /// The configuration a trace's header (or a VM state's) describes.
    pub fn from_header(header: &Header) -> Result<Self, ConfigError> {
        let kernel = Kernel {
            name: header.kernel_name.clone(),
            image: Cow::Owned(header.kernel.clone()),
        };
        let devices = Devices {
            disk: header.disk,
            net: header.net,
        };
        Self::with_kernel(kernel, header.mem_mib, &header.cmdline, devices)
    }

    /// The command line the guest gets: `--cmdline`, then the words that
    /// announce its virtio devices.
    pub fn guest_cmdline(&self) -> String {
        let mut line = self.cmdline.clone();
        for word in self.devices.cmdline_words() {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        line
    }
}
