//! [`KvmError`]: host-side failures of the KVM backend, each naming the ioctl or step that failed.
use thiserror::Error;

/// Why the KVM backend could not be created or driven (guest behaviour is never an error:
/// it is a [`picoqemu_core::StopReason`]).
#[derive(Debug, Error)]
pub enum KvmError {
    /// /dev/kvm cannot be opened or does not offer what we need.
    #[error("KVM is not available: {0}")]
    Unavailable(String),
    /// A KVM ioctl failed.
    #[error("{ioctl} failed: {source}")]
    Ioctl {
        /// The ioctl (or kvm-ioctls call) that failed, e.g. `KVM_SET_USER_MEMORY_REGION`.
        ioctl: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The machine's RAM cannot be mapped into the VM as it is laid out.
    #[error("guest memory layout is not supported: {0}")]
    Memory(String),
    /// The vCPU's state cannot be saved now (an event is in flight).
    #[error("{0}")]
    Snapshot(String),
    /// The watchdog (POSIX timer and signal) could not be set up.
    #[error("watchdog: {what} failed: {source}")]
    Watchdog {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl KvmError {
    /// Wraps a kvm-ioctls error with the name of the ioctl.
    pub(crate) fn ioctl(ioctl: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
        move |source| KvmError::Ioctl { ioctl, source }
    }
}

impl From<KvmError> for picoqemu_core::BackendError {
    fn from(e: KvmError) -> Self {
        picoqemu_core::BackendError::new("kvm", e)
    }
}
