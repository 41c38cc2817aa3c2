//! [`Flow`]: what an instruction handler tells the step loop to do next. A leaf module, so
//! both the predecoded ops (`op.rs`) and operand access (`operand.rs`) can name it without
//! depending on each other.

/// What the step loop does after a handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The instruction retired normally: advance EIP by its length.
    Next,
    /// The instruction set EIP itself (branch, interrupt, or a REP to be resumed).
    Jump,
    /// A fault with this vector; EIP still points at the instruction's first byte.
    Fault(u8),
    /// HLT retired: advance EIP and stop the run.
    Halt,
    /// The instruction is not implemented: stop with nothing executed.
    Unsupported,
    /// Three faults in a row: the CPU shut down.
    TripleFault,
}
