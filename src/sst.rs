//! The SingleStepTests runner (being written).
