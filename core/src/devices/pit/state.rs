//! Snapshot encoding of one 8254 counter ([`Channel::save`], [`Channel::restore`]). A loaded
//! counter is checked so that no later computation can divide by zero or overflow.
use super::channel::{Access, Channel};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

/// Largest tick a file may hold (about 122,000 years of PIT input clock; keeps sums in range).
const MAX_TICK: u64 = 1 << 62;

fn put_opt_pair(w: &mut StateWriter, v: Option<(u32, u64)>) {
    w.bool(v.is_some());
    let (a, b) = v.unwrap_or((0, 0));
    w.u32(a);
    w.u64(b);
}

fn get_opt_pair(r: &mut StateReader<'_>) -> Result<Option<(u32, u64)>, SnapshotError> {
    let some = r.bool()?;
    let (a, b) = (r.u32()?, r.u64()?);
    Ok(some.then_some((a, b)))
}

fn tick(r: &StateReader<'_>, t: Option<u64>) -> Result<Option<u64>, SnapshotError> {
    match t {
        Some(t) if t > MAX_TICK => Err(r.invalid(format!("PIT tick {t} is out of range"))),
        t => Ok(t),
    }
}

impl Channel {
    pub(super) fn save(&self, w: &mut StateWriter) {
        let f = self.fields();
        w.u8(f.mode);
        w.u8(match f.access {
            Access::Lo => 1,
            Access::Hi => 2,
            Access::LoHi => 3,
        });
        w.bool(f.bcd);
        w.u32(f.count);
        w.opt_u64(f.origin);
        w.opt_u64(f.paused_at);
        put_opt_pair(w, f.pending);
        w.bool(f.gate);
        w.u32(f.idle_value);
        w.bool(f.write_lo.is_some());
        w.u8(f.write_lo.unwrap_or(0));
        w.bool(f.read_hi);
        put_opt_pair(w, f.latched.map(|(v, n)| (v, u64::from(n))));
        w.bool(f.status.is_some());
        w.u8(f.status.unwrap_or(0));
        w.bool(f.null_count);
    }

    pub(super) fn restore(r: &mut StateReader<'_>) -> Result<Self, SnapshotError> {
        let mode = r.u8()?;
        let access = match r.u8()? {
            1 => Access::Lo,
            2 => Access::Hi,
            3 => Access::LoHi,
            v => return Err(r.invalid(format!("PIT access mode {v} is not 1-3"))),
        };
        let bcd = r.bool()?;
        let count = r.u32()?;
        let origin = r.opt_u64()?;
        let paused_at = r.opt_u64()?;
        let pending = get_opt_pair(r)?;
        let gate = r.bool()?;
        let idle_value = r.u32()?;
        let write_lo = if r.bool()? { Some(r.u8()?) } else { r.u8().map(|_| None)? };
        let read_hi = r.bool()?;
        let latched = get_opt_pair(r)?;
        let status = if r.bool()? { Some(r.u8()?) } else { r.u8().map(|_| None)? };
        let null_count = r.bool()?;
        let modulus = if bcd { 10_000 } else { 0x1_0000 };
        let counts = |n: u32| (1..=modulus).contains(&n);
        if mode > 5 {
            return Err(r.invalid(format!("PIT mode {mode} is not 0-5")));
        }
        if count > modulus || (origin.is_some() && !counts(count)) || pending.is_some_and(|(n, _)| !counts(n))
        {
            return Err(r.invalid(format!("PIT count {count} is impossible in this state")));
        }
        if idle_value >= modulus || latched.is_some_and(|(v, n)| v >= modulus || n > 2) {
            return Err(r.invalid("a PIT counter value is out of range"));
        }
        tick(r, origin)?;
        tick(r, paused_at)?;
        tick(r, pending.map(|p| p.1))?;
        let latched = latched.map(|(v, n)| (v, n as u8));
        Ok(Channel::from_fields(super::channel::Fields {
            mode,
            access,
            bcd,
            count,
            origin,
            paused_at,
            pending,
            gate,
            idle_value,
            write_lo,
            read_hi,
            latched,
            status,
            null_count,
        }))
    }
}
