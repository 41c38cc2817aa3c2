//! Random real-mode test programs: one generator entry point with a *profile* per use.
//!
//! * [`Profile::Campaign`] ([`campaign`]): the differential fuzz campaign of `picoqemu fuzz`:
//!   programs of self-contained units drawn from every legacy integer instruction form of an
//!   8086–486, run on KVM and the interpreter. Program `k` of seed `S` is
//!   [`campaign::generate`]`(`[`crate::rng::program_seed`]`(S, k))`; its bytes are pinned by a
//!   test, since CI's fixed-seed campaign relies on its known divergences being explained.
//! * [`Profile::Loops`] ([`loops`]): loops made of the instructions the interpreter's compiled
//!   tier accepts, in program classes that reach its side exits (self-modifying code, MMIO,
//!   A20, segment-limit edges), compared across the interpreter's tiers.
//!
//! Both draw from the same [`crate::rng::SplitMix64`], keep programs free of reads of
//! undefined flags with the same [`crate::flagmask`] model, and share the register tables
//! below.
use iced_x86::Register;

use crate::rng::SplitMix64;

pub mod campaign;
pub mod loops;

/// 8-bit registers in encoding order.
pub(crate) const R8: [Register; 8] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::AH,
    Register::CH,
    Register::DH,
    Register::BH,
];
/// 16-bit registers in encoding (and guest GPR index) order.
pub(crate) const R16: [Register; 8] = [
    Register::AX,
    Register::CX,
    Register::DX,
    Register::BX,
    Register::SP,
    Register::BP,
    Register::SI,
    Register::DI,
];
/// 32-bit registers in encoding order.
pub(crate) const R32: [Register; 8] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBX,
    Register::ESP,
    Register::EBP,
    Register::ESI,
    Register::EDI,
];
/// Segment registers in encoding order.
pub(crate) const SEGS: [Register; 6] =
    [Register::ES, Register::CS, Register::SS, Register::DS, Register::FS, Register::GS];

/// The 16-bit addressing forms: (base, index).
pub(crate) const ADDR16_FORMS: [(Register, Register); 9] = [
    (Register::BX, Register::SI),
    (Register::BX, Register::DI),
    (Register::BP, Register::SI),
    (Register::BP, Register::DI),
    (Register::SI, Register::None),
    (Register::DI, Register::None),
    (Register::BP, Register::None),
    (Register::BX, Register::None),
    (Register::None, Register::None),
];

/// What a generated program is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The KVM/interpreter fuzz campaign.
    Campaign,
    /// Loops for the interpreter's compiled tier.
    Loops,
}

/// A program of either profile.
#[derive(Debug, Clone)]
pub enum Generated {
    Campaign(crate::program::Program),
    Loops(loops::Program),
}

/// The program of `profile` with seed `seed` (the same on every machine).
pub fn generate(profile: Profile, seed: u64) -> Generated {
    match profile {
        Profile::Campaign => Generated::Campaign(campaign::generate(seed)),
        Profile::Loops => Generated::Loops(loops::generate(&mut SplitMix64::new(seed), loops::catalogue())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_profiles_are_deterministic_in_their_seed() {
        for seed in 0..20 {
            match (generate(Profile::Campaign, seed), generate(Profile::Campaign, seed)) {
                (Generated::Campaign(a), Generated::Campaign(b)) => assert_eq!(a, b),
                _ => panic!("wrong profile"),
            }
            match (generate(Profile::Loops, seed), generate(Profile::Loops, seed)) {
                (Generated::Loops(a), Generated::Loops(b)) => {
                    assert_eq!((a.class, &a.prefix, &a.body, a.init), (b.class, &b.prefix, &b.body, b.init))
                }
                _ => panic!("wrong profile"),
            }
        }
    }
}
