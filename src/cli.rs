//! The command-line interface (being written).
