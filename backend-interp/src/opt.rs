//! The block optimiser: runs once when a block is cached and rewrites its ops in place.
//!
//! * **Dead flags**: walking the block backwards with the set of status flags that may still
//!   be read, an instruction that cannot fault and whose written flags are all overwritten
//!   before any read gets its flag-free handler. Every flag is live at the block end and
//!   before any instruction that may fault, stop the block or read flags ([`Fx::OPAQUE`]), so
//!   EFLAGS is exact wherever execution can leave the block.
//! * **`dec reg; jnz`** at the block end becomes one op (two guest instructions).
//! * **Pure ops**: instructions that cannot fault, stop the block or read EIP (all but the
//!   last op) are marked so the step loop runs them without setting EIP or checking flow.
//!
//! An optimised block is only run whole: the step loop runs a block only when the budget
//! covers all of its instructions and TF is clear, and decodes single instructions afresh
//! otherwise.
use picoqemu_core::flags::STATUS;

use crate::decode::Fx;
use crate::op::Op;

/// Optimises `ops` (with their facts `fx`, same length) in place; returns how many guest
/// instructions the block retires when run to its end.
pub fn optimise(ops: &mut Vec<Op>, fx: &[Fx]) -> u16 {
    let insns = ops.len() as u16;
    let mut n = ops.len();
    if n >= 2 && fx[n - 1].jnz {
        if let Some(h) = fx[n - 2].fuse_jnz {
            let j = ops[n - 1];
            let d = &mut ops[n - 2];
            d.exec = h;
            d.aux = d.len;
            d.len += j.len;
            d.imm = j.imm;
            d.osz = j.osz;
            ops.pop();
            n -= 1;
        }
    }
    let mut live = STATUS;
    // The last op (a fused or any block-ending one) is treated as opaque.
    for i in (0..n.saturating_sub(1)).rev() {
        let f = &fx[i];
        ops[i].pure = f.safe;
        if !f.safe {
            live = STATUS;
            continue;
        }
        if live & f.writes == 0 {
            if let Some(h) = f.nf {
                ops[i].exec = h;
            }
        }
        live &= !f.writes;
    }
    insns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use iced_x86::Instruction;

    fn block(code: &[u8]) -> (Vec<Op>, Vec<Fx>) {
        let mut ins = Instruction::default();
        let (mut ops, mut fx) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < code.len() {
            let mut buf = [0u8; 15];
            let n = (code.len() - i).min(15);
            buf[..n].copy_from_slice(&code[i..i + n]);
            let d = decode(&buf, &mut ins);
            i += d.op.len as usize;
            ops.push(d.op);
            fx.push(d.fx);
        }
        (ops, fx)
    }

    #[test]
    fn fuses_dec_jnz_and_drops_dead_flags_only() {
        // add ax,dx ; xor dx,ax ; mov [bx],ax ; add si,ax ; add bx,2 ; and bx,0xffe ; dec cx ; jnz $
        let code = [
            0x01, 0xD0, 0x31, 0xC2, 0x89, 0x07, 0x01, 0xC6, 0x83, 0xC3, 0x02, 0x81, 0xE3, 0xFE, 0x0F, 0x49,
            0x75, 0xF0,
        ];
        let (mut ops, fx) = block(&code);
        let orig: Vec<usize> = ops.iter().map(|o| o.exec as usize).collect();
        assert_eq!(optimise(&mut ops, &fx), 8);
        assert_eq!(ops.len(), 7);
        let changed: Vec<bool> = ops.iter().zip(&orig).map(|(o, &h)| o.exec as usize != h).collect();
        // add ax,dx: dead (xor overwrites); xor: live (the store may fault); add si / add bx:
        // dead; and: CF live across dec; dec+jnz fused.
        assert_eq!(changed, [true, false, false, true, true, false, true]);
        assert_eq!(ops[6].len, 3);
        assert_eq!(ops[6].aux, 1);
    }

    /// The compute-loop body: mov ax,[bx+0x1000] ; add ax,dx ; xor dx,ax ; rol dx,3 ;
    /// mov [bx+0x1000],dx ; add si,ax ; add bx,2 ; and bx,0xffe ; dec cx ; jnz top ; hlt
    const LOOP: [u8; 29] = [
        0x8B, 0x87, 0x00, 0x10, 0x01, 0xD0, 0x31, 0xC2, 0xC1, 0xC2, 0x03, 0x89, 0x97, 0x00, 0x10, 0x01, 0xC6,
        0x83, 0xC3, 0x02, 0x81, 0xE3, 0xFE, 0x0F, 0x49, 0x75, 0xE5, 0xF4, 0x90,
    ];

    #[test]
    fn optimised_blocks_step_exactly_like_whole_runs() {
        use crate::testutil::T;
        use picoqemu_core::{Backend, RunLimits, StopReason};
        // Whole run (optimised blocks) vs one instruction per run, compared at every step
        // count: budgets ending inside a fused or flag-free stretch must see exact state.
        let setup = |t: &mut T| {
            t.cpu.gpr[1] = 5; // CX
            t.cpu.gpr[2] = 0x1234;
            t.cpu.gpr[0] = 0xFFFF;
            t.poke(0x1000, &[0x80, 0x7F, 0xFF, 0x01]);
        };
        let mut whole = T::new(&LOOP);
        setup(&mut whole);
        let mut step = T::new(&LOOP);
        setup(&mut step);
        for k in 1..=51u64 {
            // Fresh cache state for the budgeted run: run k instructions from the start.
            let mut t = T::new(&LOOP);
            setup(&mut t);
            let r = t.run_limited(RunLimits::instructions(k));
            let s = step.run_limited(RunLimits::instructions(1));
            assert_eq!(r.st, s.st, "after {k} instructions");
            assert_eq!(r.st.eflags, s.st.eflags, "after {k} instructions");
        }
        let r = whole.run();
        assert_eq!(r.stop, StopReason::Halted);
        assert_eq!(r.st.gpr[1], 0);
        assert_eq!(whole.be.stats().instructions, Some(5 * 10 + 1));
    }
}
