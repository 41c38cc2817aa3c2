//! VGA text mode (80x25, colour): the CRT controller ports and the screen renderer.
//!
//! The character buffer at 0xB8000 is ordinary guest RAM (so KVM takes no exit per
//! character); this device owns only the CRTC registers (cursor shape and position, display
//! start address) at 0x3D4/0x3D5 and the input status register at 0x3DA, and renders a
//! screen from the RAM it is handed, as plain text or with ANSI colours.
use std::fmt::Write as _;

use crate::device::{Claim, Device, DeviceCtx};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

/// Physical address of the colour text buffer.
pub const TEXT_BASE: usize = 0xB8000;
/// Text columns.
pub const COLS: usize = 80;
/// Text rows.
pub const ROWS: usize = 25;
/// Bytes of one screen (character + attribute per cell).
pub const SCREEN_BYTES: usize = COLS * ROWS * 2;
/// CRTC index register.
pub const CRTC_INDEX: u16 = 0x3D4;
/// CRTC data register.
pub const CRTC_DATA: u16 = 0x3D5;
/// Input status 1 (retrace bits).
pub const INPUT_STATUS: u16 = 0x3DA;
/// First of the VGA's 32 ports (0x3C0–0x3DF).
pub const VGA_PORTS: u16 = 0x3C0;

/// One character cell: code page 437 byte and attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// The character (code page 437).
    pub ch: u8,
    /// The attribute: foreground in bits 0-3, background in bits 4-6, blink in bit 7.
    pub attr: u8,
}

/// CRTC state of a colour VGA in text mode.
#[derive(Debug)]
pub struct VgaText {
    index: u8,
    regs: [u8; 0x19],
    status_toggle: u8,
}

impl Default for VgaText {
    fn default() -> Self {
        let mut regs = [0u8; 0x19];
        regs[0x0A] = 0x0D; // cursor start
        regs[0x0B] = 0x0E; // cursor end
        VgaText { index: 0, regs, status_toggle: 0 }
    }
}

impl VgaText {
    /// Reads a VGA port (0x3D4, 0x3D5 or 0x3DA); other ports of the range read 0xFF.
    pub fn read_port(&mut self, port: u16) -> u8 {
        match port {
            CRTC_INDEX => self.index,
            CRTC_DATA => self.regs.get(self.index as usize).copied().unwrap_or(0xFF),
            INPUT_STATUS => {
                // Alternate retrace bits so "wait for retrace" loops finish both ways.
                self.status_toggle ^= 0x09;
                self.status_toggle
            }
            _ => 0xFF,
        }
    }

    /// Writes a VGA port (0x3D4 or 0x3D5); other writes are ignored.
    pub fn write_port(&mut self, port: u16, value: u8) {
        match port {
            CRTC_INDEX => self.index = value,
            CRTC_DATA => {
                if let Some(r) = self.regs.get_mut(self.index as usize) {
                    *r = value;
                }
            }
            _ => {}
        }
    }

    /// Cursor as (row, column), from CRTC registers 0x0E/0x0F.
    pub fn cursor(&self) -> (usize, usize) {
        let pos = ((self.regs[0x0E] as usize) << 8) | self.regs[0x0F] as usize;
        (pos / COLS, pos % COLS)
    }

    /// Display start offset in cells (CRTC 0x0C/0x0D).
    pub fn start_address(&self) -> usize {
        ((self.regs[0x0C] as usize) << 8) | self.regs[0x0D] as usize
    }

    /// Guest physical address of the visible screen's first cell (the display start wraps
    /// inside the 32 KiB text window).
    pub fn screen_addr(&self) -> usize {
        TEXT_BASE + (self.start_address() * 2) % 0x8000
    }

    /// The bytes of the visible screen from guest RAM (empty if RAM is too small).
    pub fn screen_bytes<'a>(&self, ram: &'a [u8]) -> &'a [u8] {
        let start = self.screen_addr();
        ram.get(start..start + SCREEN_BYTES).unwrap_or(&[])
    }

    /// All 2000 cells of the visible screen, row by row.
    pub fn cells(&self, ram: &[u8]) -> Vec<Cell> {
        self.screen_bytes(ram).chunks_exact(2).map(|c| Cell { ch: c[0], attr: c[1] }).collect()
    }

    /// The screen as text: 25 rows with trailing blanks trimmed, trailing empty rows removed,
    /// code page 437 mapped to Unicode.
    pub fn render_text(&self, ram: &[u8]) -> String {
        Self::text_of(self.screen_bytes(ram))
    }

    /// [`VgaText::render_text`] of the visible screen's bytes (`SCREEN_BYTES` of them, as
    /// read from [`VgaText::screen_addr`]).
    pub fn text_of(screen: &[u8]) -> String {
        let mut rows: Vec<String> = screen
            .chunks_exact(COLS * 2)
            .map(|row| {
                let s: String = row.chunks_exact(2).map(|c| cp437(c[0])).collect();
                s.trim_end().to_string()
            })
            .collect();
        while rows.last().is_some_and(|r| r.is_empty()) {
            rows.pop();
        }
        let mut out = rows.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }

    /// The screen with ANSI colour escapes (all 25 rows, attributes honoured).
    pub fn render_ansi(&self, ram: &[u8]) -> String {
        Self::ansi_of(self.screen_bytes(ram))
    }

    /// [`VgaText::render_ansi`] of the visible screen's bytes.
    pub fn ansi_of(screen: &[u8]) -> String {
        const ANSI: [u8; 8] = [0, 4, 2, 6, 1, 5, 3, 7];
        let mut out = String::new();
        for row in screen.chunks_exact(COLS * 2) {
            let mut last: Option<u8> = None;
            for c in row.chunks_exact(2) {
                let attr = c[1];
                if last != Some(attr) {
                    let fg = attr & 0x0F;
                    let bg = (attr >> 4) & 0x07;
                    let fg_code = if fg >= 8 { 90 + ANSI[(fg - 8) as usize] } else { 30 + ANSI[fg as usize] };
                    let _ = write!(out, "\x1b[0;{};{}m", fg_code, 40 + ANSI[bg as usize]);
                    last = Some(attr);
                }
                out.push(cp437(c[0]));
            }
            out.push_str("\x1b[0m\n");
        }
        out
    }
}

impl Device for VgaText {
    fn name(&self) -> &'static str {
        "VGA"
    }
    fn claims(&self) -> Vec<Claim> {
        vec![Claim::ports(VGA_PORTS, 0x20)]
    }
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        crate::device::read_byte_ports(base, offset, data, |p| self.read_port(p));
    }
    fn write(&mut self, base: u64, offset: u64, data: &[u8], _ctx: &mut DeviceCtx<'_>) {
        crate::device::write_byte_ports(base, offset, data, |p, b| self.write_port(p, b));
    }
    /// The CRTC index and registers and the retrace toggle (the text itself is RAM).
    fn save(&self, out: &mut StateWriter) {
        out.u8(self.index);
        out.raw(&self.regs);
        out.u8(self.status_toggle);
    }
    fn restore(&mut self, state: &mut StateReader<'_>) -> Result<(), SnapshotError> {
        self.index = state.u8()?;
        let n = self.regs.len();
        self.regs.copy_from_slice(state.raw(n)?);
        self.status_toggle = state.u8()?;
        Ok(())
    }
    fn reset(&mut self) {
        *self = VgaText::default();
    }
}

/// Maps a code page 437 byte to the character a PC would show (NUL as a blank).
pub fn cp437(b: u8) -> char {
    const LOW: [char; 32] = [
        ' ', '☺', '☻', '♥', '♦', '♣', '♠', '•', '◘', '○', '◙', '♂', '♀', '♪', '♫', '☼', '►', '◄', '↕', '‼',
        '¶', '§', '▬', '↨', '↑', '↓', '→', '←', '∟', '↔', '▲', '▼',
    ];
    const HIGH: [char; 128] = [
        'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', 'É', 'æ', 'Æ', 'ô',
        'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', 'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º',
        '¿', '⌐', '¬', '½', '¼', '¡', '«', '»', '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗',
        '╝', '╜', '╛', '┐', '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧',
        '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀', 'α', 'ß', 'Γ', 'π',
        'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', '≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈',
        '°', '∙', '·', '√', 'ⁿ', '²', '■', ' ',
    ];
    match b {
        0x00..=0x1F => LOW[b as usize],
        0x7F => '⌂',
        0x20..=0x7E => b as char,
        _ => HIGH[(b - 0x80) as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram_with(text: &[(usize, &str, u8)]) -> Vec<u8> {
        let mut ram = vec![0u8; TEXT_BASE + 0x8000];
        for &(cell, s, attr) in text {
            for (i, b) in s.bytes().enumerate() {
                ram[TEXT_BASE + (cell + i) * 2] = b;
                ram[TEXT_BASE + (cell + i) * 2 + 1] = attr;
            }
        }
        ram
    }

    #[test]
    fn renders_text_trimmed() {
        let ram = ram_with(&[(0, "Hello", 0x0A), (COLS * 2 + 3, "x", 0x07)]);
        let v = VgaText::default();
        assert_eq!(v.render_text(&ram), "Hello\n\n   x\n");
        let cells = v.cells(&ram);
        assert_eq!(cells.len(), 2000);
        assert_eq!(cells[0], Cell { ch: b'H', attr: 0x0A });
        assert_eq!(VgaText::default().render_text(&vec![0u8; TEXT_BASE + 0x8000]), "");
    }

    #[test]
    fn ansi_has_colours() {
        let ram = ram_with(&[(0, "Hi", 0x1E)]);
        let a = VgaText::default().render_ansi(&ram);
        assert!(a.starts_with("\x1b[0;93;44mHi"));
        assert_eq!(a.matches('\n').count(), ROWS);
    }

    #[test]
    fn crtc_cursor_and_start() {
        let mut v = VgaText::default();
        v.write_port(CRTC_INDEX, 0x0E);
        v.write_port(CRTC_DATA, 0x00);
        v.write_port(CRTC_INDEX, 0x0F);
        v.write_port(CRTC_DATA, 83);
        assert_eq!(v.cursor(), (1, 3));
        assert_eq!(v.read_port(CRTC_INDEX), 0x0F);
        assert_eq!(v.read_port(CRTC_DATA), 83);
        v.write_port(CRTC_INDEX, 0x0D);
        v.write_port(CRTC_DATA, 80);
        let ram = ram_with(&[(80, "second", 7)]);
        assert_eq!(v.render_text(&ram), "second\n");
        let a = v.read_port(INPUT_STATUS);
        let b = v.read_port(INPUT_STATUS);
        assert_ne!(a & 8, b & 8);
    }

    #[test]
    fn cp437_maps() {
        assert_eq!(cp437(0), ' ');
        assert_eq!(cp437(b'A'), 'A');
        assert_eq!(cp437(0xDB), '█');
        assert_eq!(cp437(0xFF), ' ');
        assert_eq!(cp437(0xC4), '─');
    }
}
