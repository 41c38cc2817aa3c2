//! Guest programs built from source with iced-x86's `code_asm` (16-bit): the article's
//! "Hello World!" program (the CLI's built-in demo), a BIOS-style serial boot sector, and small
//! guests for tests and benchmarks (`jmp $`, `vmcall`, `daa`, a compute loop, `rep movsw` /
//! `rep stosw`, an `out 0x80` loop, MMIO console stores, a PIC/PIT timer-interrupt counter for
//! the PC platform). Boot sectors are 512 bytes ending
//! 0x55 0xAA and are assembled for the address they run at (0x7C00).
use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, Code, IcedError, Instruction, MemoryOperand, Register};
use thiserror::Error;

/// Where a BIOS loads a boot sector.
pub const BOOT_ORIGIN: u16 = 0x7C00;
/// Size of a boot sector.
pub const SECTOR_SIZE: usize = 512;
/// Bytes of a boot sector available for code and data (the last two hold the signature).
pub const SECTOR_PAYLOAD: usize = SECTOR_SIZE - 2;

/// COM1's ports.
pub const COM1: u16 = 0x3F8;
/// The Bochs/QEMU debug console port.
pub const DEBUGCON_PORT: u16 = 0xE9;
/// QEMU's `isa-debug-exit` port.
pub const DEBUG_EXIT_PORT: u16 = 0xF4;
/// The POST diagnostic port used by the port-I/O loop.
pub const POST_PORT: u16 = 0x80;
/// A suggested guest-physical address for the MMIO console (`--mmio-console 0xD0000`).
pub const DEFAULT_MMIO_CONSOLE_BASE: u32 = 0xD_0000;

/// What [`serial_hello`] prints on COM1.
pub const SERIAL_HELLO_TEXT: &str = "Hello from COM1!\r\n";
/// What [`serial_hello`] writes to the debug console (port 0xE9).
pub const SERIAL_HELLO_DEBUG_TEXT: &str = "serial_hello: message sent\n";
/// The value [`serial_hello`] writes to the debug-exit port (process exit status 0x21 = 33).
pub const SERIAL_HELLO_EXIT_CODE: u8 = 0x10;

/// What [`daa_guest`] computes: AL = 0x19 + 0x28 = 0x41, DAA corrects it to BCD 0x47, which is
/// written to the debug-exit port (process exit status 0x8F).
pub const DAA_RESULT: u8 = 0x47;

/// Instructions in one iteration of [`compute_loop`].
pub const COMPUTE_BODY_INSTRUCTIONS: u64 = 10;
/// Instructions [`compute_loop`] executes before its loop.
pub const COMPUTE_SETUP_INSTRUCTIONS: u64 = 8;
/// Guest-physical address of the compute loop's 4 KiB buffer.
pub const COMPUTE_BUFFER: u16 = 0x1000;

/// Bytes one iteration of [`rep_movsw`] / [`rep_stosw`] moves (one 4 KiB block).
pub const REP_BLOCK_BYTES: u64 = 4096;

/// Why a guest could not be built.
#[derive(Debug, Error)]
pub enum GuestError {
    /// iced-x86 rejected the program (a bug in this module).
    #[error("assembling the guest failed: {0}")]
    Asm(#[from] IcedError),
    /// The program does not fit in a boot sector.
    #[error("the guest needs {0} bytes, more than the {SECTOR_PAYLOAD} a boot sector holds")]
    TooLarge(usize),
    /// A parameter is outside what the guest supports.
    #[error("invalid guest parameter: {0}")]
    BadParameter(String),
}

/// Pads `payload` with zeros to 510 bytes and appends the 0x55 0xAA signature.
pub fn boot_sector(payload: &[u8]) -> Result<Vec<u8>, GuestError> {
    if payload.len() > SECTOR_PAYLOAD {
        return Err(GuestError::TooLarge(payload.len()));
    }
    let mut sector = payload.to_vec();
    sector.resize(SECTOR_PAYLOAD, 0);
    sector.extend_from_slice(&[0x55, 0xAA]);
    Ok(sector)
}

/// Assembles a boot sector at 0x7C00 from `build`, which receives the address where `data`
/// will sit (right after the code) so it can refer to it. The code is assembled twice: once
/// to measure it, once with the real data address (16-bit immediates keep their size).
fn sector_with_data(
    data: &[u8],
    build: impl Fn(&mut CodeAssembler, u16) -> Result<(), IcedError>,
) -> Result<Vec<u8>, GuestError> {
    let origin = u64::from(BOOT_ORIGIN);
    let mut a = CodeAssembler::new(16)?;
    build(&mut a, BOOT_ORIGIN)?;
    let probe_len = a.assemble(origin)?.len();
    let data_addr = BOOT_ORIGIN as usize + probe_len;
    let data_addr = u16::try_from(data_addr).map_err(|_| GuestError::TooLarge(probe_len + data.len()))?;
    let mut a = CodeAssembler::new(16)?;
    build(&mut a, data_addr)?;
    let mut code = a.assemble(origin)?;
    if code.len() != probe_len {
        return Err(GuestError::BadParameter(format!(
            "code size changed between passes ({probe_len} -> {})",
            code.len()
        )));
    }
    code.extend_from_slice(data);
    boot_sector(&code)
}

/// Assembles a boot sector at 0x7C00 with no data.
fn sector(build: impl Fn(&mut CodeAssembler) -> Result<(), IcedError>) -> Result<Vec<u8>, GuestError> {
    sector_with_data(&[], |a, _| build(a))
}

/// The five rows of the article's ASCII-art banner (each padded with blanks to 80 columns).
pub const HELLO_ROWS: [&str; 5] = [
    r" _   _      _ _        __        __         _     _ _",
    r"| | | | ___| | | ___   \ \      / /__  _ __| | __| | |",
    r"| |_| |/ _ \ | |/ _ \   \ \ /\ / / _ \| '__| |/ _` | |",
    r"|  _  |  __/ | | (_) |   \ V  V / (_) | |  | | (_| |_|",
    r"|_| |_|\___|_|_|\___/     \_/\_/ \___/|_|  |_|\__,_(_)",
];

/// The attribute the article's program gives every cell (light green on black).
pub const HELLO_ATTR: u8 = 0x0A;

/// The article's program, byte for byte what nasm makes of it (`[ORG 0x0]`, 512 bytes with the
/// 0x55 0xAA signature). It expects the raw layout: loaded at physical 0, started at 0000:0000.
///
/// ```text
///   mov ax, 0x0000 / mov ds, ax / mov ax, 0xB800 / mov es, ax / mov si, 0
/// .SCREENCLEARLOOP:
///   mov byte [es:si], 0 / mov byte [es:si+1], 0x0A / add si, 2
///   cmp si, 80*25*2 / jl .SCREENCLEARLOOP
///   mov si, 0 / mov di, 0
/// .MESSAGELOOP:
///   mov cl, byte [si + MESSAGE1] / cmp cl, 0 / je .MESSAGEEND
///   mov byte [es:di], cl / add si, 1 / add di, 2 / jmp .MESSAGELOOP
/// .MESSAGEEND:
///   hlt
/// MESSAGE1: db "<five rows of 80 characters>", 0
/// ```
pub fn hello() -> Result<Vec<u8>, GuestError> {
    let mut message: Vec<u8> = Vec::with_capacity(HELLO_ROWS.len() * 80 + 1);
    for row in HELLO_ROWS {
        message.extend_from_slice(format!("{row:<80}").as_bytes());
    }
    message.push(0);

    let mut a = CodeAssembler::new(16)?;
    let mut clear_loop = a.create_label();
    let mut message_loop = a.create_label();
    let mut message_end = a.create_label();
    let mut message1 = a.create_label();

    a.mov(ax, 0x0000)?;
    a.mov(ds, ax)?;
    a.mov(ax, 0xB800)?;
    a.mov(es, ax)?;
    a.mov(si, 0)?;
    a.set_label(&mut clear_loop)?;
    a.mov(byte_ptr(si).es(), 0)?;
    a.mov(byte_ptr(si + 1).es(), 0x0A)?;
    a.add(si, 2)?;
    a.cmp(si, 80 * 25 * 2)?;
    a.jl(clear_loop)?;
    a.mov(si, 0)?;
    a.mov(di, 0)?;
    a.set_label(&mut message_loop)?;
    // `mov cl, [si + MESSAGE1]`: MESSAGE1 is a forward reference, so nasm encodes a 16-bit
    // displacement even though the value (0x3A) would fit in 8 bits. code_asm always picks
    // the short form, so this one instruction is built with an explicit displacement size.
    // The displacement is checked against MESSAGE1's address below.
    let message_offset = 0x3A;
    a.add_instruction(Instruction::with2(
        Code::Mov_r8_rm8,
        Register::CL,
        MemoryOperand::with_base_displ_size(Register::SI, message_offset, 2),
    )?)?;
    a.cmp(cl, 0)?;
    a.je(message_end)?;
    a.mov(byte_ptr(di).es(), cl)?;
    a.add(si, 1)?;
    a.add(di, 2)?;
    a.jmp(message_loop)?;
    a.set_label(&mut message_end)?;
    a.hlt()?;
    a.set_label(&mut message1)?;
    a.db(&message)?;

    let result = a.assemble_options(0, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let actual = result.label_ip(&message1)?;
    if actual != message_offset as u64 {
        return Err(GuestError::BadParameter(format!(
            "MESSAGE1 moved to {actual:#x}, the code expects {message_offset:#x}"
        )));
    }
    boot_sector(&result.inner.code_buffer)
}

/// A boot sector that does what [`serial_hello`] does with any text, debug line and exit code.
///
/// ```text
///   cli / cld / xor ax, ax / mov ds, ax
///   ; COM1 init, as a BIOS does: IER=0, DLAB=1, divisor 1 (115200 baud), 8N1 (DLAB=0),
///   ; FIFO enabled and cleared (14-byte trigger), DTR|RTS|OUT2
///   mov si, text
/// .next: lodsb / test al, al / jz .debug / mov ah, al
/// .wait: mov dx, 0x3FD / in al, dx / test al, 0x20 / jz .wait     ; THRE
///   mov al, ah / mov dx, 0x3F8 / out dx, al / jmp .next
/// .debug: mov si, debug_text / mov dx, 0xE9
/// .dnext: lodsb / test al, al / jz .exit / out dx, al / jmp .dnext
/// .exit: mov al, code / out 0xF4, al / hlt / jmp .exit
/// ```
pub fn serial_program(text: &str, debug_text: &str, exit_code: u8) -> Result<Vec<u8>, GuestError> {
    let mut data = Vec::with_capacity(text.len() + debug_text.len() + 2);
    data.extend_from_slice(text.as_bytes());
    data.push(0);
    let debug_offset = data.len() as u16;
    data.extend_from_slice(debug_text.as_bytes());
    data.push(0);
    if text.bytes().any(|b| b == 0) || debug_text.bytes().any(|b| b == 0) {
        return Err(GuestError::BadParameter("texts must not contain NUL bytes".into()));
    }
    sector_with_data(&data, |a, data_addr| {
        let mut next = a.create_label();
        let mut wait = a.create_label();
        let mut debug = a.create_label();
        let mut dnext = a.create_label();
        let mut exit = a.create_label();
        a.cli()?;
        a.cld()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        // COM1 initialisation.
        for (offset, value) in
            [(1u16, 0x00u8), (3, 0x80), (0, 0x01), (1, 0x00), (3, 0x03), (2, 0xC7), (4, 0x0B)]
        {
            a.mov(dx, (COM1 + offset) as u32)?;
            a.mov(al, value as u32)?;
            a.out(dx, al)?;
        }
        a.mov(si, data_addr as u32)?;
        a.set_label(&mut next)?;
        a.lodsb()?;
        a.test(al, al)?;
        a.jz(debug)?;
        a.mov(ah, al)?;
        a.set_label(&mut wait)?;
        a.mov(dx, (COM1 + 5) as u32)?;
        a.in_(al, dx)?;
        a.test(al, 0x20)?;
        a.jz(wait)?;
        a.mov(al, ah)?;
        a.mov(dx, COM1 as u32)?;
        a.out(dx, al)?;
        a.jmp(next)?;
        a.set_label(&mut debug)?;
        a.mov(si, data_addr.wrapping_add(debug_offset) as u32)?;
        a.mov(dx, DEBUGCON_PORT as u32)?;
        a.set_label(&mut dnext)?;
        a.lodsb()?;
        a.test(al, al)?;
        a.jz(exit)?;
        a.out(dx, al)?;
        a.jmp(dnext)?;
        a.set_label(&mut exit)?;
        a.mov(al, exit_code as u32)?;
        a.out(DEBUG_EXIT_PORT as u32, al)?;
        a.hlt()?;
        a.jmp(exit)?;
        Ok(())
    })
}

/// A boot sector that initialises COM1 like a BIOS, prints [`SERIAL_HELLO_TEXT`] polling LSR
/// for THRE before each byte, writes [`SERIAL_HELLO_DEBUG_TEXT`] to port 0xE9 and exits through
/// port 0xF4 with [`SERIAL_HELLO_EXIT_CODE`] (process exit status 33).
pub fn serial_hello() -> Result<Vec<u8>, GuestError> {
    serial_program(SERIAL_HELLO_TEXT, SERIAL_HELLO_DEBUG_TEXT, SERIAL_HELLO_EXIT_CODE)
}

/// `jmp $`: a boot sector that never stops on its own (needs a timeout or budget).
pub fn jmp_self() -> Result<Vec<u8>, GuestError> {
    sector(|a| {
        let mut here = a.create_label();
        a.set_label(&mut here)?;
        a.jmp(here)
    })
}

/// `vmcall` then `hlt`. On KVM here `vmcall` can hang `KVM_RUN` (the watchdog must end the
/// run); in real mode without a hypervisor it is an invalid opcode.
pub fn vmcall() -> Result<Vec<u8>, GuestError> {
    sector(|a| {
        a.vmcall()?;
        a.hlt()
    })
}

/// `mov al, 0x19 / add al, 0x28 / daa / out 0xF4, al / hlt`: exits with [`DAA_RESULT`] where
/// DAA works; KVM's emulator here reports an emulation failure instead.
pub fn daa_guest() -> Result<Vec<u8>, GuestError> {
    sector(|a| {
        a.mov(al, 0x19)?;
        a.add(al, 0x28)?;
        a.daa()?;
        a.out(DEBUG_EXIT_PORT as u32, al)?;
        a.hlt()
    })
}

fn nonzero(iterations: u32, what: &str) -> Result<(), GuestError> {
    if iterations == 0 {
        return Err(GuestError::BadParameter(format!("{what}: the iteration count must be at least 1")));
    }
    Ok(())
}

/// The compute benchmark: a loop whose body is exactly [`COMPUTE_BODY_INSTRUCTIONS`]
/// instructions, run `iterations` times, then `hlt`.
///
/// ```text
///   xor ax, ax / mov ds, ax / xor bx, bx / mov dx, 0x1234 / xor si, si
///   mov bp, 0x5A5A / mov ecx, iterations / xor di, di             ; 8 setup instructions
/// .loop:
///   mov ax, [bx+0x1000]      ; load a word from the 4 KiB buffer at 0x1000
///   add ax, dx               ; add
///   xor dx, ax               ; xor
///   rol dx, 3                ; rotate
///   mov [bx+0x1000], dx      ; store
///   add si, ax               ; add
///   add bx, 2                ; advance the index
///   and bx, 0x0FFE           ; wrap it inside the buffer
///   dec ecx
///   jnz .loop
///   hlt
/// ```
/// It executes [`compute_instruction_count`]`(iterations)` instructions including the `hlt`.
pub fn compute_loop(iterations: u32) -> Result<Vec<u8>, GuestError> {
    nonzero(iterations, "compute_loop")?;
    sector(|a| {
        let mut top = a.create_label();
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.xor(bx, bx)?;
        a.mov(dx, 0x1234)?;
        a.xor(si, si)?;
        a.mov(bp, 0x5A5A)?;
        a.mov(ecx, iterations)?;
        a.xor(di, di)?;
        a.set_label(&mut top)?;
        a.mov(ax, word_ptr(bx + COMPUTE_BUFFER as i32))?;
        a.add(ax, dx)?;
        a.xor(dx, ax)?;
        a.rol(dx, 3)?;
        a.mov(word_ptr(bx + COMPUTE_BUFFER as i32), dx)?;
        a.add(si, ax)?;
        a.add(bx, 2)?;
        a.and(bx, 0x0FFE)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    })
}

/// Instructions [`compute_loop`]`(iterations)` retires, the final `hlt` included.
pub fn compute_instruction_count(iterations: u32) -> u64 {
    COMPUTE_SETUP_INSTRUCTIONS + COMPUTE_BODY_INSTRUCTIONS * u64::from(iterations) + 1
}

/// Copies a 4 KiB block from 1000:0000 to 2000:0000 with `rep movsw`, `blocks` times, then
/// `hlt` ([`REP_BLOCK_BYTES`] bytes per block).
///
/// ```text
///   cld / mov ax, 0x1000 / mov ds, ax / mov ax, 0x2000 / mov es, ax / mov ebx, blocks
/// .block: xor si, si / xor di, di / mov cx, 2048 / rep movsw / dec ebx / jnz .block / hlt
/// ```
pub fn rep_movsw(blocks: u32) -> Result<Vec<u8>, GuestError> {
    nonzero(blocks, "rep_movsw")?;
    sector(|a| {
        let mut block = a.create_label();
        a.cld()?;
        a.mov(ax, 0x1000)?;
        a.mov(ds, ax)?;
        a.mov(ax, 0x2000)?;
        a.mov(es, ax)?;
        a.mov(ebx, blocks)?;
        a.set_label(&mut block)?;
        a.xor(si, si)?;
        a.xor(di, di)?;
        a.mov(cx, (REP_BLOCK_BYTES / 2) as u32)?;
        a.rep().movsw()?;
        a.dec(ebx)?;
        a.jnz(block)?;
        a.hlt()
    })
}

/// Fills the 4 KiB block at 2000:0000 with the word 0xA55A using `rep stosw`, `blocks` times,
/// then `hlt`.
///
/// ```text
///   cld / mov ax, 0x2000 / mov es, ax / mov ax, 0xA55A / mov ebx, blocks
/// .block: xor di, di / mov cx, 2048 / rep stosw / dec ebx / jnz .block / hlt
/// ```
pub fn rep_stosw(blocks: u32) -> Result<Vec<u8>, GuestError> {
    nonzero(blocks, "rep_stosw")?;
    sector(|a| {
        let mut block = a.create_label();
        a.cld()?;
        a.mov(ax, 0x2000)?;
        a.mov(es, ax)?;
        a.mov(ax, 0xA55A)?;
        a.mov(ebx, blocks)?;
        a.set_label(&mut block)?;
        a.xor(di, di)?;
        a.mov(cx, (REP_BLOCK_BYTES / 2) as u32)?;
        a.rep().stosw()?;
        a.dec(ebx)?;
        a.jnz(block)?;
        a.hlt()
    })
}

/// `iterations` writes of AL to port 0x80, then `hlt`.
///
/// ```text
///   mov dx, 0x80 / mov ecx, iterations
/// .loop: out dx, al / inc al / dec ecx / jnz .loop / hlt
/// ```
/// The POST register ends holding `(iterations - 1) as u8`.
pub fn out_loop(iterations: u32) -> Result<Vec<u8>, GuestError> {
    out_port_loop(POST_PORT, iterations)
}

/// [`out_loop`] writing to any `port` (e.g. 0xE9 to measure coalesced port I/O).
pub fn out_port_loop(port: u16, iterations: u32) -> Result<Vec<u8>, GuestError> {
    nonzero(iterations, "out_port_loop")?;
    sector(|a| {
        let mut top = a.create_label();
        a.xor(ax, ax)?;
        a.mov(dx, u32::from(port))?;
        a.mov(ecx, iterations)?;
        a.set_label(&mut top)?;
        a.out(dx, al)?;
        a.inc(al)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    })
}

/// Where [`pit_ticks`] counts timer interrupts (a word in free low memory).
pub const PIT_TICKS_COUNTER: u16 = 0x0600;
/// The value [`pit_ticks`] writes to the debug-exit port.
pub const PIT_TICKS_EXIT_CODE: u8 = 0x20;
/// The vector [`pit_ticks`] gives IRQ 0 (the PC BIOS's: master PIC base 0x08).
pub const PIT_TICKS_VECTOR: u8 = 0x08;

/// A timer-driven guest for the PC platform: it programs the 8259A pair as a PC BIOS does
/// (ICW1-4, vectors 0x08/0x70, everything but IRQ 0 masked), installs an IRQ 0 handler in the
/// IVT that counts ticks at [`PIT_TICKS_COUNTER`] and sends a non-specific EOI, programs PIT
/// channel 0 in mode 2 with `divisor`, then waits with `sti; hlt` until `ticks` interrupts
/// have come, writes the count to port 0xE9 (two bytes, little endian) and exits through
/// port 0xF4 with [`PIT_TICKS_EXIT_CODE`].
///
/// ```text
///   cli / xor ax, ax / mov ds, ax / mov ss, ax / mov sp, 0x7C00
///   mov word [0x08*4], handler / mov word [0x08*4+2], 0 / mov word [COUNTER], 0
///   (PIC) 0x11 -> 0x20, 0xA0; 0x08 -> 0x21; 0x70 -> 0xA1; 0x04 -> 0x21; 0x02 -> 0xA1;
///         0x01 -> 0x21, 0xA1; 0xFE -> 0x21; 0xFF -> 0xA1
///   (PIT) 0x34 -> 0x43; divisor low, high -> 0x40
/// .wait: cli / cmp word [COUNTER], ticks / jae .done / sti / hlt / jmp .wait
/// .done: mov ax, [COUNTER] / out 0xE9, al / mov al, ah / out 0xE9, al
///   mov al, EXIT / out 0xF4, al / hlt
/// handler: push ax / inc word [cs:COUNTER] / mov al, 0x20 / out 0x20, al / pop ax / iret
/// ```
pub fn pit_ticks(divisor: u16, ticks: u16) -> Result<Vec<u8>, GuestError> {
    if divisor < 2 || ticks == 0 {
        return Err(GuestError::BadParameter(format!(
            "pit_ticks needs a divisor of at least 2 and at least one tick (got {divisor}, {ticks})"
        )));
    }
    let mut h = CodeAssembler::new(16)?;
    h.push(ax)?;
    h.inc(word_ptr(u32::from(PIT_TICKS_COUNTER)).cs())?;
    h.mov(al, 0x20u32)?;
    h.out(0x20u32, al)?;
    h.pop(ax)?;
    h.iret()?;
    let handler = h.assemble(0)?;
    sector_with_data(&handler, |a, handler_addr| {
        let (mut wait, mut done) = (a.create_label(), a.create_label());
        let counter = word_ptr(u32::from(PIT_TICKS_COUNTER));
        let vector = u32::from(PIT_TICKS_VECTOR) * 4;
        a.cli()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(ss, ax)?;
        a.mov(sp, u32::from(BOOT_ORIGIN))?;
        a.mov(word_ptr(vector), u32::from(handler_addr))?;
        a.mov(word_ptr(vector + 2), 0u32)?;
        a.mov(counter, 0u32)?;
        let init = [(0x11, 0x20), (0x11, 0xA0), (0x08, 0x21), (0x70, 0xA1), (0x04, 0x21), (0x02, 0xA1)];
        let rest = [(0x01, 0x21), (0x01, 0xA1), (0xFE, 0x21), (0xFF, 0xA1), (0x34, 0x43)];
        let pit = [(u32::from(divisor & 0xFF), 0x40), (u32::from(divisor >> 8), 0x40)];
        for (value, port) in init.into_iter().chain(rest).chain(pit) {
            a.mov(al, value)?;
            a.out(port, al)?;
        }
        a.set_label(&mut wait)?;
        a.cli()?;
        a.cmp(counter, u32::from(ticks))?;
        a.jae(done)?;
        a.sti()?;
        a.hlt()?;
        a.jmp(wait)?;
        a.set_label(&mut done)?;
        a.mov(ax, counter)?;
        a.out(u32::from(DEBUGCON_PORT), al)?;
        a.mov(al, ah)?;
        a.out(u32::from(DEBUGCON_PORT), al)?;
        a.mov(al, u32::from(PIT_TICKS_EXIT_CODE))?;
        a.out(u32::from(DEBUG_EXIT_PORT), al)?;
        a.hlt()
    })
}

/// Checks that `base` can be reached as ES:0000 and returns the segment.
fn mmio_segment(base: u32) -> Result<u16, GuestError> {
    if !base.is_multiple_of(16) || base > 0xF_FFF0 {
        return Err(GuestError::BadParameter(format!(
            "MMIO base {base:#x} must be a multiple of 16 below 1 MiB"
        )));
    }
    Ok((base >> 4) as u16)
}

/// Stores `iterations` bytes `'.'` and then `'\n'` to the MMIO console at `base` (each store
/// to offset 0 is printed), then `hlt`. The console's counter ends at `iterations + 1`.
///
/// ```text
///   mov ax, base >> 4 / mov es, ax / mov ecx, iterations / mov al, '.'
/// .loop: mov [es:0], al / dec ecx / jnz .loop
///   mov byte [es:0], 10 / hlt
/// ```
pub fn mmio_store_loop(base: u32, iterations: u32) -> Result<Vec<u8>, GuestError> {
    nonzero(iterations, "mmio_store_loop")?;
    let segment = mmio_segment(base)?;
    sector(|a| {
        let mut top = a.create_label();
        a.mov(ax, segment as u32)?;
        a.mov(es, ax)?;
        a.mov(ecx, iterations)?;
        a.mov(al, b'.' as u32)?;
        a.set_label(&mut top)?;
        a.mov(byte_ptr(0).es(), al)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.mov(byte_ptr(0).es(), b'\n' as u32)?;
        a.hlt()
    })
}

/// Prints `text` through the MMIO console at `base` (one byte store per character), then `hlt`.
///
/// ```text
///   cld / xor ax, ax / mov ds, ax / mov ax, base >> 4 / mov es, ax / mov si, text
/// .next: lodsb / test al, al / jz .done / mov [es:0], al / jmp .next
/// .done: hlt
/// ```
pub fn mmio_print(base: u32, text: &str) -> Result<Vec<u8>, GuestError> {
    let segment = mmio_segment(base)?;
    if text.bytes().any(|b| b == 0) {
        return Err(GuestError::BadParameter("the text must not contain NUL bytes".into()));
    }
    let mut data = text.as_bytes().to_vec();
    data.push(0);
    sector_with_data(&data, |a, data_addr| {
        let mut next = a.create_label();
        let mut done = a.create_label();
        a.cld()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(ax, segment as u32)?;
        a.mov(es, ax)?;
        a.mov(si, data_addr as u32)?;
        a.set_label(&mut next)?;
        a.lodsb()?;
        a.test(al, al)?;
        a.jz(done)?;
        a.mov(byte_ptr(0).es(), al)?;
        a.jmp(next)?;
        a.set_label(&mut done)?;
        a.hlt()
    })
}

/// A guest the CLI can run by name (`picoqemu run --builtin NAME`).
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub name: &'static str,
    pub about: &'static str,
    /// True for the article's raw layout (loaded at 0), false for a 0x7C00 boot sector.
    pub raw: bool,
    build: fn() -> Result<Vec<u8>, GuestError>,
}

impl Builtin {
    /// Assembles the guest.
    pub fn image(&self) -> Result<Vec<u8>, GuestError> {
        (self.build)()
    }
}

fn mmio_hello() -> Result<Vec<u8>, GuestError> {
    mmio_print(DEFAULT_MMIO_CONSOLE_BASE, "Hello from the MMIO console!\n")
}

/// Every guest the CLI can run by name.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "hello",
        about: "the article's Hello World! screen (raw layout)",
        raw: true,
        build: hello,
    },
    Builtin {
        name: "serial-hello",
        about: "prints on COM1 and port 0xE9, exits with status 33",
        raw: false,
        build: serial_hello,
    },
    Builtin { name: "jmp-self", about: "jmp $ (needs --timeout)", raw: false, build: jmp_self },
    Builtin { name: "vmcall", about: "vmcall, then hlt", raw: false, build: vmcall },
    Builtin { name: "daa", about: "daa, exits with status 143", raw: false, build: daa_guest },
    Builtin {
        name: "mmio-hello",
        about: "prints through the MMIO console (needs --mmio-console 0xd0000)",
        raw: false,
        build: mmio_hello,
    },
];

/// Looks a built-in guest up by name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_have_the_signature() {
        for b in BUILTINS {
            let img = b.image().unwrap();
            assert_eq!(img.len(), 512, "{}", b.name);
            assert_eq!(&img[510..], &[0x55, 0xAA], "{}", b.name);
        }
        for img in [
            compute_loop(3),
            rep_movsw(2),
            rep_stosw(2),
            out_loop(5),
            mmio_store_loop(0xD0000, 4),
            pit_ticks(100, 3),
        ] {
            let img = img.unwrap();
            assert_eq!(img.len(), 512);
            assert_eq!(&img[510..], &[0x55, 0xAA]);
        }
    }

    #[test]
    fn pit_ticks_checks_its_parameters() {
        assert!(matches!(pit_ticks(1, 5), Err(GuestError::BadParameter(_))));
        assert!(matches!(pit_ticks(100, 0), Err(GuestError::BadParameter(_))));
    }

    #[test]
    fn boot_sector_rejects_oversized_payloads() {
        assert!(matches!(boot_sector(&[0; 511]), Err(GuestError::TooLarge(511))));
        assert_eq!(boot_sector(&[0x90; 510]).unwrap().len(), 512);
    }

    #[test]
    fn jmp_self_is_eb_fe() {
        assert_eq!(&jmp_self().unwrap()[..2], &[0xEB, 0xFE]);
    }

    #[test]
    fn vmcall_and_daa_encodings() {
        assert_eq!(&vmcall().unwrap()[..4], &[0x0F, 0x01, 0xC1, 0xF4]);
        assert_eq!(&daa_guest().unwrap()[..8], &[0xB0, 0x19, 0x04, 0x28, 0x27, 0xE6, 0xF4, 0xF4]);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(matches!(compute_loop(0), Err(GuestError::BadParameter(_))));
        assert!(matches!(mmio_store_loop(0xD0001, 1), Err(GuestError::BadParameter(_))));
        assert!(matches!(mmio_print(0x200000, "x"), Err(GuestError::BadParameter(_))));
        assert!(matches!(serial_program("a\0b", "", 0), Err(GuestError::BadParameter(_))));
        assert!(matches!(serial_program(&"x".repeat(600), "", 0), Err(GuestError::TooLarge(_))));
    }

    #[test]
    fn serial_text_is_embedded_after_the_code() {
        let img = serial_hello().unwrap();
        let pos =
            img.windows(SERIAL_HELLO_TEXT.len()).position(|w| w == SERIAL_HELLO_TEXT.as_bytes()).unwrap();
        // `mov si, imm16` (BE lo hi) must point at the text.
        let addr = (BOOT_ORIGIN as usize + pos) as u16;
        let needle = [0xBE, addr as u8, (addr >> 8) as u8];
        assert!(img.windows(3).any(|w| w == needle), "mov si, {addr:#x} not found");
    }

    #[test]
    fn builtin_lookup() {
        assert!(builtin("hello").unwrap().raw);
        assert!(builtin("nope").is_none());
    }
}
