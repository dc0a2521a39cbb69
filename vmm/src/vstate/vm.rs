//! The KVM VM: guest memory, the MSR filter, the CPU model, and creating
//! the vCPU.

use std::sync::Arc;

use kvm_bindings::{
    KVM_CAP_X86_USER_SPACE_MSR, KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MSR_EXIT_REASON_FILTER, kvm_enable_cap, kvm_userspace_memory_region,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use ft_logging::CpuidLeaf;
use ftvm_core::memory::GuestRam;

use super::cpuid::{self, CpuidError};
use super::{MemoryTracker, Vcpu, msr_filter};

/// Where KVM may keep the TSS it needs on Intel; just below 4 GiB, clear of
/// RAM and of the MMIO area.
const TSS_ADDRESS: usize = 0xfffb_d000;

/// Why KVM would not make or run the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Cannot open /dev/kvm.
    #[error("cannot open /dev/kvm: {0}")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// KVM's API version is not 12.
    #[error("KVM API version {0} is not the supported version 12")]
    ApiVersion(i32),
    /// KVM lacks a capability ftvm needs.
    #[error("this host's KVM lacks {0}")]
    MissingCapability(&'static str),
    /// Cannot create the VM.
    #[error("cannot create the VM: {0}")]
    CreateVm(#[source] kvm_ioctls::Error),
    /// Cannot set the TSS address.
    #[error("cannot set the TSS address: {0}")]
    SetTss(#[source] kvm_ioctls::Error),
    /// Guest memory cannot be allocated.
    #[error("cannot allocate {mib} MiB of guest memory: {source}")]
    AllocateMemory {
        /// The memory size in MiB.
        mib: u32,
        /// The error underneath.
        source: vm_memory::mmap::FromRangesError,
    },
    /// Cannot register guest memory with KVM.
    #[error("cannot register guest memory with KVM: {0}")]
    SetMemoryRegion(#[source] kvm_ioctls::Error),
    /// Cannot read KVM's dirty page log.
    #[error("cannot read KVM's dirty page log: {0}")]
    DirtyLog(#[source] kvm_ioctls::Error),
    /// Cannot list the MSRs KVM saves.
    #[error("cannot list the MSRs KVM saves: {0}")]
    MsrList(#[source] kvm_ioctls::Error),
    /// Cannot enable user-space MSR exits.
    #[error("cannot enable user-space MSR exits: {0}")]
    UserSpaceMsr(#[source] kvm_ioctls::Error),
    /// Cannot install the MSR filter.
    #[error("cannot install the MSR filter: {0}")]
    MsrFilter(#[source] kvm_ioctls::Error),
    /// Cannot read the host's supported CPUID.
    #[error("cannot read the host's supported CPUID: {0}")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
    /// Cannot create the vCPU.
    #[error("cannot create the vCPU: {0}")]
    CreateVcpu(#[source] kvm_ioctls::Error),
    /// KVM refused part of the vCPU's initial state.
    #[error("cannot set the vCPU's {what}: {source}")]
    SetVcpuState {
        /// Which part.
        what: &'static str,
        /// The error underneath.
        source: kvm_ioctls::Error,
    },
    /// KVM refused an initial MSR.
    #[error("KVM refused initial MSR {index:#x}")]
    SetMsr {
        /// The MSR.
        index: u32,
    },
    /// This host cannot present the CPU model.
    #[error(transparent)]
    Cpuid(#[from] CpuidError),
}

/// A KVM VM with its guest memory, before its vCPU exists.
#[derive(Debug)]
pub struct Vm {
    kvm: Kvm,
    fd: Arc<VmFd>,
    memory: GuestRam,
}

impl Vm {
    /// A VM with `mem_mib` MiB of RAM from guest-physical address 0, no
    /// in-kernel irqchip, PIT or LAPIC, and the MSR filter installed.
    pub fn new(mem_mib: u32) -> Result<Self, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(VmError::ApiVersion(version));
        }
        for (cap, name) in [
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::SyncRegs, "KVM_CAP_SYNC_REGS"),
            (Cap::X86UserSpaceMsr, "KVM_CAP_X86_USER_SPACE_MSR"),
            (Cap::X86MsrFilter, "KVM_CAP_X86_MSR_FILTER"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(VmError::MissingCapability(name));
            }
        }
        let fd = kvm.create_vm().map_err(VmError::CreateVm)?;
        fd.set_tss_address(TSS_ADDRESS).map_err(VmError::SetTss)?;

        let bytes = u64::from(mem_mib) << 20;
        let memory =
            GuestRam::from_ranges(&[(GuestAddress(0), bytes as usize)]).map_err(|source| {
                VmError::AllocateMemory {
                    mib: mem_mib,
                    source,
                }
            })?;
        register_memory(&fd, &memory, false)?;

        let cap = kvm_enable_cap {
            cap: KVM_CAP_X86_USER_SPACE_MSR,
            args: [u64::from(KVM_MSR_EXIT_REASON_FILTER), 0, 0, 0],
            ..Default::default()
        };
        fd.enable_cap(&cap).map_err(VmError::UserSpaceMsr)?;
        msr_filter::install(&fd).map_err(VmError::MsrFilter)?;
        Ok(Self {
            kvm,
            fd: Arc::new(fd),
            memory,
        })
    }

    /// Guest RAM.
    pub fn memory(&self) -> &GuestRam {
        &self.memory
    }

    /// A handle on guest memory and its dirty pages, for any thread.
    pub fn memory_tracker(&self) -> MemoryTracker {
        MemoryTracker::new(Arc::clone(&self.fd), self.memory.clone())
    }

    /// Bytes of RAM.
    pub fn ram_end(&self) -> u64 {
        self.memory.last_addr().0 + 1
    }

    /// Our CPU model as this host presents it.
    pub fn cpu_model(&self) -> Result<Vec<CpuidLeaf>, VmError> {
        Ok(cpuid::cpu_model(&self.supported_cpuid()?))
    }

    /// Checks that this host can present a recorded CPU model.
    pub fn check_cpuid(&self, recorded: &[CpuidLeaf]) -> Result<(), VmError> {
        Ok(cpuid::check_presentable(
            recorded,
            &self.supported_cpuid()?,
        )?)
    }

    fn supported_cpuid(&self) -> Result<kvm_bindings::CpuId, VmError> {
        self.kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(VmError::SupportedCpuid)
    }

    /// The one vCPU with this CPUID table, in the PVH entry state at `entry`.
    pub fn create_vcpu(&self, entry: u32, cpuid: &[CpuidLeaf]) -> Result<Vcpu, VmError> {
        let table = cpuid::from_leaves(cpuid)?;
        let fd = self.fd.create_vcpu(0).map_err(VmError::CreateVcpu)?;
        let msrs = self.kvm.get_msr_index_list().map_err(VmError::MsrList)?;
        Vcpu::new(fd, &table, entry, self.memory.clone(), msrs.as_slice())
    }
}

/// Registers each region of `memory` with KVM, logging dirty pages or not.
pub(super) fn register_memory(
    fd: &VmFd,
    memory: &GuestRam,
    log_dirty: bool,
) -> Result<(), VmError> {
    for (slot, region) in memory.iter().enumerate() {
        let region_desc = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: if log_dirty {
                KVM_MEM_LOG_DIRTY_PAGES
            } else {
                0
            },
        };
        // SAFETY: the region's host mapping lives as long as any clone of
        // `memory`, and whatever holds the VM fd (the Vm, a MemoryTracker)
        // holds such a clone and drops it after the fd; changing only the
        // flags of a slot keeps its mapping.
        unsafe { fd.set_user_memory_region(region_desc) }.map_err(VmError::SetMemoryRegion)?;
    }
    Ok(())
}
