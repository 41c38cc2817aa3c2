//! Snapshot encoding of one 8259A ([`Pic8259::save`], [`Pic8259::restore`]).
use super::{Init, Pic8259};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

impl Init {
    fn code(self) -> u8 {
        match self {
            Init::PowerOn => 0,
            Init::Icw2 => 1,
            Init::Icw3 => 2,
            Init::Icw4 => 3,
            Init::Ready => 4,
        }
    }
}

impl Pic8259 {
    /// Registers, initialisation step and mode bits.
    pub(super) fn save(&self, w: &mut StateWriter) {
        for r in [self.irr, self.isr, self.imr, self.levels, self.base, self.top, self.init.code()] {
            w.u8(r);
        }
        let modes = [
            self.need_icw4,
            self.single,
            self.level_mode,
            self.auto_eoi,
            self.rotate_on_auto_eoi,
            self.fully_nested,
            self.read_isr,
            self.poll,
            self.special_mask,
        ];
        for m in modes {
            w.bool(m);
        }
    }

    /// Reads what [`Pic8259::save`] wrote.
    pub(super) fn restore(r: &mut StateReader<'_>) -> Result<Self, SnapshotError> {
        let (irr, isr, imr, levels, base, top) = (r.u8()?, r.u8()?, r.u8()?, r.u8()?, r.u8()?, r.u8()?);
        let init = match r.u8()? {
            0 => Init::PowerOn,
            1 => Init::Icw2,
            2 => Init::Icw3,
            3 => Init::Icw4,
            4 => Init::Ready,
            v => return Err(r.invalid(format!("8259A initialisation step {v} does not exist"))),
        };
        if top > 7 {
            return Err(r.invalid(format!("8259A priority {top} is not 0-7")));
        }
        Ok(Pic8259 {
            irr,
            isr,
            imr,
            levels,
            base: base & 0xF8,
            top,
            init,
            need_icw4: r.bool()?,
            single: r.bool()?,
            level_mode: r.bool()?,
            auto_eoi: r.bool()?,
            rotate_on_auto_eoi: r.bool()?,
            fully_nested: r.bool()?,
            read_isr: r.bool()?,
            poll: r.bool()?,
            special_mask: r.bool()?,
        })
    }
}
