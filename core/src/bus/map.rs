//! The bus's address map: which device claims which port (a 64 Ki-entry table, so a lookup
//! is one load) and which MMIO range (a short list), built by registration with overlap
//! checks, plus the coalescible ranges the devices declared.
use crate::device::{Claim, CoalescibleRange, Space};
use crate::error::BusError;

/// Number of I/O ports.
const PORTS: usize = 0x1_0000;
/// Top of the MMIO space (guest-physical addresses are below 4 GiB in real mode).
const MMIO_END: u64 = 1 << 32;

/// A claimed port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortRange {
    pub device: usize,
    pub base: u16,
    pub whole: bool,
}

/// A claimed MMIO range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MmioRange {
    pub device: usize,
    pub base: u64,
    pub len: u64,
}

/// Ports and MMIO ranges of the registered devices.
#[derive(Debug)]
pub(crate) struct AddressMap {
    /// Per port: 0 when unclaimed, else 1 + index into `port_ranges`.
    ports: Box<[u8]>,
    port_ranges: Vec<PortRange>,
    mmio: Vec<MmioRange>,
    coalescible: Vec<CoalescibleRange>,
}

impl Default for AddressMap {
    fn default() -> Self {
        AddressMap {
            ports: vec![0u8; PORTS].into_boxed_slice(),
            port_ranges: Vec::new(),
            mmio: Vec::new(),
            coalescible: Vec::new(),
        }
    }
}

fn space_name(space: Space) -> &'static str {
    match space {
        Space::Pio => "ports",
        Space::Mmio => "MMIO",
    }
}

impl AddressMap {
    /// The range that claims `port`, if any.
    #[inline]
    pub fn port(&self, port: u16) -> Option<&PortRange> {
        match self.ports[usize::from(port)] {
            0 => None,
            n => self.port_ranges.get(usize::from(n) - 1),
        }
    }

    /// The range that contains guest-physical `addr`, if any.
    #[inline]
    pub fn mmio(&self, addr: u64) -> Option<&MmioRange> {
        self.mmio.iter().find(|r| addr >= r.base && addr - r.base < r.len)
    }

    /// `(base, len)` of every MMIO range, in registration order.
    pub fn mmio_regions(&self) -> Vec<(u64, u64)> {
        self.mmio.iter().map(|r| (r.base, r.len)).collect()
    }

    /// The coalescible ranges, in registration order.
    pub fn coalescible(&self) -> &[CoalescibleRange] {
        &self.coalescible
    }

    /// Adds every claim of device number `device` (called `name`), or none of them when one
    /// is invalid or overlaps an existing claim; `name_of` names existing devices.
    pub fn add(
        &mut self,
        device: usize,
        name: &'static str,
        claims: &[Claim],
        name_of: impl Fn(usize) -> &'static str,
    ) -> Result<(), BusError> {
        for (i, c) in claims.iter().enumerate() {
            self.check(name, c, &name_of)?;
            if let Some(o) = claims[..i].iter().find(|o| o.space == c.space && overlaps(o, c)) {
                return Err(overlap(name, c, name, o.base));
            }
        }
        let new_ports = claims.iter().filter(|c| c.space == Space::Pio).count();
        if self.port_ranges.len() + new_ports > usize::from(u8::MAX) {
            return Err(BusError::TooManyRanges { device: name });
        }
        for c in claims {
            self.insert(device, c);
        }
        Ok(())
    }

    fn check(
        &self,
        name: &'static str,
        c: &Claim,
        name_of: &impl Fn(usize) -> &'static str,
    ) -> Result<(), BusError> {
        let limit = if c.space == Space::Pio { PORTS as u64 } else { MMIO_END };
        let space = space_name(c.space);
        if c.len == 0 || c.base.checked_add(c.len).is_none_or(|end| end > limit) {
            return Err(BusError::OutOfSpace { device: name, space, base: c.base, len: c.len });
        }
        if let Some(r) = &c.coalescible {
            if r.start >= r.end || r.end > c.len {
                let (start, end) = (r.start, r.end);
                return Err(BusError::BadCoalescible { device: name, base: c.base, len: c.len, start, end });
            }
        }
        let hit = match c.space {
            Space::Pio => (c.base..c.base + c.len)
                .find_map(|p| self.port(p as u16))
                .map(|r| (r.device, u64::from(r.base))),
            Space::Mmio => self
                .mmio
                .iter()
                .find(|r| c.base < r.base + r.len && r.base < c.base + c.len)
                .map(|r| (r.device, r.base)),
        };
        match hit {
            Some((other, other_base)) => Err(overlap(name, c, name_of(other), other_base)),
            None => Ok(()),
        }
    }

    fn insert(&mut self, device: usize, c: &Claim) {
        match c.space {
            Space::Pio => {
                self.port_ranges.push(PortRange { device, base: c.base as u16, whole: c.whole });
                let slot = self.port_ranges.len() as u8;
                self.ports[c.base as usize..(c.base + c.len) as usize].fill(slot);
            }
            Space::Mmio => self.mmio.push(MmioRange { device, base: c.base, len: c.len }),
        }
        if let Some(r) = &c.coalescible {
            let (space, base, len) = (c.space, c.base + r.start, r.end - r.start);
            self.coalescible.push(CoalescibleRange { space, base, len });
        }
    }
}

fn overlaps(a: &Claim, b: &Claim) -> bool {
    a.base < b.base + b.len && b.base < a.base + a.len
}

fn overlap(device: &'static str, c: &Claim, other: &'static str, other_base: u64) -> BusError {
    BusError::Overlap { device, space: space_name(c.space), base: c.base, len: c.len, other, other_base }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(_: usize) -> &'static str {
        "other"
    }

    #[test]
    fn ports_are_looked_up_by_table() {
        let mut m = AddressMap::default();
        m.add(0, "a", &[Claim::ports(0x3F8, 8), Claim::ports(0xF4, 1).whole_access()], names).unwrap();
        m.add(1, "b", &[Claim::ports(0xFFFF, 1)], names).unwrap();
        assert_eq!(m.port(0x3F8), Some(&PortRange { device: 0, base: 0x3F8, whole: false }));
        assert_eq!(m.port(0x3FF).map(|r| r.base), Some(0x3F8));
        assert_eq!(m.port(0xF4), Some(&PortRange { device: 0, base: 0xF4, whole: true }));
        assert_eq!(m.port(0xFFFF).map(|r| r.device), Some(1));
        for p in [0x3F7, 0x400, 0xF3, 0xF5, 0] {
            assert_eq!(m.port(p), None, "{p:#x}");
        }
    }

    #[test]
    fn overlaps_and_bad_ranges_are_rejected_whole() {
        let mut m = AddressMap::default();
        m.add(0, "uart", &[Claim::ports(0x3F8, 8)], names).unwrap();
        let e = m.add(1, "new", &[Claim::ports(0x80, 1), Claim::ports(0x3FF, 2)], names).unwrap_err();
        assert!(matches!(e, BusError::Overlap { other: "other", other_base: 0x3F8, .. }), "{e}");
        assert_eq!(m.port(0x80), None, "nothing of a rejected device is added");
        let e = m.add(1, "new", &[Claim::ports(0x10, 4), Claim::ports(0x12, 1)], names).unwrap_err();
        assert!(matches!(e, BusError::Overlap { other: "new", .. }), "{e}");
        for bad in [Claim::ports(0x10, 0), Claim::ports(0xFFFF, 2), Claim::mmio(0xFFFF_F000, 0x2000)] {
            assert!(matches!(m.add(1, "new", &[bad], names), Err(BusError::OutOfSpace { .. })));
        }
        let bad = Claim::mmio(0xD0000, 0x1000).coalescible(0x800..0x1001);
        assert!(matches!(m.add(1, "new", &[bad], names), Err(BusError::BadCoalescible { .. })));
        m.add(1, "con", &[Claim::mmio(0xD0000, 0x1000).coalescible(0..4)], names).unwrap();
        let e = m.add(2, "x", &[Claim::mmio(0xCF000, 0x1001)], names).unwrap_err();
        assert!(e.to_string().contains("overlaps other's range at 0xd0000"), "{e}");
        m.add(2, "x", &[Claim::mmio(0xCF000, 0x1000)], names).unwrap();
        assert_eq!(m.mmio(0xD0FFF).map(|r| r.device), Some(1));
        assert_eq!(m.mmio(0xD1000), None);
        assert_eq!(m.mmio_regions(), vec![(0xD0000, 0x1000), (0xCF000, 0x1000)]);
        assert_eq!(m.coalescible(), &[CoalescibleRange { space: Space::Mmio, base: 0xD0000, len: 4 }]);
    }

    #[test]
    fn at_most_255_port_ranges() {
        let mut m = AddressMap::default();
        for i in 0..255u16 {
            m.add(0, "d", &[Claim::ports(i * 2, 1)], names).unwrap();
        }
        let e = m.add(1, "last", &[Claim::ports(0x1000, 1)], names).unwrap_err();
        assert_eq!(e, BusError::TooManyRanges { device: "last" });
        assert_eq!(m.port(508).map(|r| r.base), Some(508));
    }
}
