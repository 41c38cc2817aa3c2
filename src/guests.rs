//! Guest programs built from source with iced-x86 code_asm (being written).
