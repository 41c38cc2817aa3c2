//! The bus's part of a machine snapshot ([`crate::snapshot`]): the state of every registered
//! device (one payload per device, matched by name and order of registration), the IRQ
//! lines, the embedder's interrupt queue and the clock.
use super::IoBus;
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

impl IoBus {
    /// Every device's name and saved state, in registration order.
    pub(crate) fn save_devices(&self) -> Vec<(&'static str, Vec<u8>)> {
        self.slots
            .iter()
            .map(|s| {
                let mut w = StateWriter::new();
                s.device.save(&mut w);
                (s.device.name(), w.into_vec())
            })
            .collect()
    }

    /// For each device (registration order), the index of its section in `saved`: the k-th
    /// device named N takes the k-th section named N.
    fn match_devices(&self, saved: &[(String, &[u8])]) -> Result<Vec<usize>, SnapshotError> {
        let mut used = vec![false; saved.len()];
        let mut order = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let name = s.device.name();
            let i = (0..saved.len())
                .find(|&i| !used[i] && saved[i].0 == name)
                .ok_or_else(|| SnapshotError::MissingDevice(name.to_string()))?;
            used[i] = true;
            order.push(i);
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(SnapshotError::UnknownDevice(saved[i].0.clone()));
        }
        Ok(order)
    }

    /// Checks that `saved` holds exactly one section for each device of this bus.
    pub(crate) fn check_devices(&self, saved: &[(String, &[u8])]) -> Result<(), SnapshotError> {
        self.match_devices(saved).map(|_| ())
    }

    /// Loads every device's state from `saved` (see [`IoBus::check_devices`]), then the
    /// deadlines and the interrupt controller's output follow from the restored devices.
    pub(crate) fn restore_devices(&mut self, saved: &[(String, &[u8])]) -> Result<(), SnapshotError> {
        let order = self.match_devices(saved)?;
        for (slot, &i) in self.slots.iter_mut().zip(&order) {
            let mut r = StateReader::new(format!("DEV '{}'", saved[i].0), saved[i].1);
            slot.device.restore(&mut r)?;
            r.finish()?;
        }
        self.refresh_deadline();
        self.intr = match self.intc.and_then(|i| self.slots[i].device.interrupt_controller()) {
            Some(ic) => ic.intr(),
            None => false,
        };
        Ok(())
    }

    /// The IRQ lines and the queue of raised interrupt vectors.
    pub(crate) fn save_interrupts(&self, w: &mut StateWriter) {
        self.lines.save(w);
        self.interrupts.save(w);
    }

    /// Loads what [`IoBus::save_interrupts`] wrote and sets the clock to `now_ns`.
    pub(crate) fn restore_interrupts(
        &mut self,
        r: &mut StateReader<'_>,
        now_ns: u64,
    ) -> Result<(), SnapshotError> {
        self.lines = crate::irq::IrqLines::restore(r)?;
        self.interrupts = crate::irq::InterruptQueue::restore(r)?;
        r.finish()?;
        self.clock.restore_ns(now_ns);
        self.stats = super::IoStats::default();
        Ok(())
    }
}
