//! picoqemu's verification library: everything the differential fuzzer (`picoqemu fuzz` /
//! `diff`), the SingleStepTests runner (`picoqemu sst`) and the backends' own tests share,
//! written once.
//!
//! * [`rng`]: the deterministic SplitMix64 generator and program seeds;
//! * [`flagmask`]: which flags an instruction leaves undefined (the comparison mask model);
//! * [`disasm`]: decoding and formatting guest instructions for reports;
//! * [`program`] and [`gen`]: random test programs, with one profile per use
//!   ([`gen::Profile`]): the fuzz campaign and the compiled-tier loops;
//! * [`shrink`]: delta debugging (ddmin) of a failing program's parts;
//! * [`compare`]: CPU state and RAM comparison under a flags mask;
//! * [`sst`]: the MOO reader, the suite metadata, and the runner generic over any
//!   [`picoqemu_core::Backend`];
//! * [`shared`]: locating `../shared` test data, skipping or failing when it is absent.
//!
//! No backend is a dependency: runners take any `Backend`.
pub mod compare;
pub mod disasm;
pub mod flagmask;
pub mod gen;
pub mod program;
pub mod rng;
pub mod shared;
pub mod shrink;
pub mod sst;
