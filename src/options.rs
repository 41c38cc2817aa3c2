//! Command-line option types shared by every subcommand, and the one parser of each value kind
//! (sizes, durations, addresses).
//!
//! Each group is a clap `Args` struct that commands `#[command(flatten)]`, so a flag means the
//! same thing, with the same help text and the same parser, wherever it is offered: `--backend`
//! ([`CpuOpts`]), `--jit` ([`JitOpts`]), `--mem`/`--a20-wrap`/`--mmio-console`
//! ([`MachineOpts`]), `--timeout`/`--max-instructions` ([`LimitOpts`]). A command that has no use
//! for a group does not offer it. This module depends on nothing of `cli`, `diff`, `fuzz` or
//! `sst`; they all depend on it.
use std::time::Duration;

use clap::{Args, ValueEnum};
use picoqemu_core::ram::MAX_MEM_SIZE;
use picoqemu_core::{RunLimits, DEFAULT_MEM_SIZE, MIN_MEM_SIZE};
use picoqemu_interp::JitMode;

/// Which CPU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The host's KVM.
    Kvm,
    /// picoqemu's software interpreter.
    Interp,
    /// KVM when /dev/kvm works, otherwise the interpreter (with one line on stderr saying why).
    Auto,
}

/// When the interpreter compiles hot loops to host code (its compiled-block tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum JitChoice {
    /// Never: every instruction is interpreted.
    Off,
    /// Loops that started 64 times (the default).
    #[default]
    Hot,
    /// Every eligible loop, the first time it runs (for testing the tier).
    Eager,
}

impl From<JitChoice> for JitMode {
    fn from(c: JitChoice) -> JitMode {
        match c {
            JitChoice::Off => JitMode::Off,
            JitChoice::Hot => JitMode::Hot,
            JitChoice::Eager => JitMode::Eager,
        }
    }
}

/// `--jit`: the interpreter's compiled-loop tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Args)]
pub struct JitOpts {
    /// Interpreter only: when hot loops are compiled to host code (x86-64 Linux hosts).
    #[arg(long, value_enum, default_value_t = JitChoice::Hot)]
    pub jit: JitChoice,
}

/// `--backend` and `--jit`: which CPU runs the guest (for commands that run on one CPU).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Args)]
pub struct CpuOpts {
    /// CPU backend: kvm, interp or auto (KVM if usable, else the interpreter). Default: auto for
    /// `run`, interp for `sst`.
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub backend: Option<BackendChoice>,
    #[command(flatten)]
    pub jit: JitOpts,
}

impl CpuOpts {
    /// The chosen backend, or `default` when `--backend` was not given.
    pub fn backend_or(&self, default: BackendChoice) -> BackendChoice {
        self.backend.unwrap_or(default)
    }
}

/// `--mem`, `--a20-wrap`, `--mmio-console`: the shape of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct MachineOpts {
    /// Guest RAM size: bytes, or with a K/M/G suffix (e.g. 2M, 1088K). At least 1088K.
    #[arg(long, value_name = "SIZE", default_value = "2M", value_parser = parse_size)]
    pub mem: usize,
    /// Wrap addresses at 1 MiB like an 8086 (A20 gate disabled).
    #[arg(long)]
    pub a20_wrap: bool,
    /// Map the MMIO console (a byte stored at offset 0 is printed on stdout) at this
    /// 4 KiB-aligned guest-physical address below 1 MiB, clear of the IVT, the VGA text buffer
    /// and the image, e.g. 0xd0000.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub mmio_console: Option<u64>,
}

impl Default for MachineOpts {
    fn default() -> Self {
        MachineOpts { mem: DEFAULT_MEM_SIZE, a20_wrap: false, mmio_console: None }
    }
}

/// `--timeout`, `--max-instructions`: when a run is stopped (exit status 4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Args)]
pub struct LimitOpts {
    /// Wall-clock limit, e.g. 1s, 500ms, 2m; must be more than 0 (exit status 4 when reached).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Instruction budget (exit status 4 when exhausted).
    #[arg(long, value_name = "N")]
    pub max_instructions: Option<u64>,
}

impl LimitOpts {
    /// The run limits, with `default_timeout` when `--timeout` was not given.
    pub fn limits(&self, default_timeout: Option<Duration>) -> RunLimits {
        RunLimits { max_instructions: self.max_instructions, timeout: self.timeout.or(default_timeout) }
    }
}

/// Parses a memory size: bytes, or a number with a K, M or G suffix (binary units; an
/// optional trailing `B` or `iB` is accepted). The result must be a multiple of 4 KiB between
/// 1088 KiB and 1 GiB.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (digits, mult) = match body.char_indices().last() {
        Some((i, 'k')) => (&body[..i], 1usize << 10),
        Some((i, 'm')) => (&body[..i], 1 << 20),
        Some((i, 'g')) => (&body[..i], 1 << 30),
        _ => (body, 1),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size; write bytes or use K/M/G, e.g. 2M or 1088K"))?;
    let size = n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))?;
    if !(MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&size) {
        return Err(format!("guest RAM must be between {}K and {}M", MIN_MEM_SIZE >> 10, MAX_MEM_SIZE >> 20));
    }
    if size % 4096 != 0 {
        return Err("guest RAM must be a multiple of 4K".into());
    }
    Ok(size)
}

/// Parses a duration: a number with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`); a bare number is
/// seconds. Fractions are allowed (`1.5s`). Zero is rejected: a run with no time at all is
/// not a run (use `--max-instructions` to bound a run exactly).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("'{s}' is not a duration; write e.g. 1s, 500ms or 2m");
    let nanos: u64 = match unit.trim() {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "us" | "µs" => 1_000,
        "ns" => 1,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let zero = || format!("'{s}' is no time at all; give a timeout of more than 0, e.g. 1s");
    // Whole numbers exactly (in floating point, 73709551615ms lost 5 ns: found by fuzzing).
    if let Ok(n) = num.parse::<u64>() {
        let total = u128::from(n) * u128::from(nanos);
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| format!("'{s}' is too long"))?;
        let d = Duration::new(secs, (total % 1_000_000_000) as u32);
        return if d.is_zero() { Err(zero()) } else { Ok(d) };
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let secs = value * nanos as f64 / 1e9;
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    let d = Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is too long"))?;
    if d.is_zero() {
        return Err(zero());
    }
    Ok(d)
}

/// Parses a guest-physical address: decimal, or hexadecimal with `0x` (an `h` suffix works too).
pub fn parse_addr(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase().replace('_', "");
    let parsed = if let Some(h) = t.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
    } else if let Some(h) = t.strip_suffix('h') {
        u64::from_str_radix(h, 16)
    } else {
        t.parse()
    };
    parsed.map_err(|_| format!("'{s}' is not an address; write e.g. 0xd0000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1088K"), Ok(1088 << 10));
        assert_eq!(parse_size("2097152"), Ok(2 << 20));
        assert_eq!(parse_size("4mib"), Ok(4 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert!(parse_size("1M").is_err());
        assert!(parse_size("2X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("2000001").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(parse_size("2G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1parsec").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn zero_durations_are_rejected() {
        for zero in ["0", "0s", "0ms", "0.0", "0.1ns"] {
            let e = parse_duration(zero).unwrap_err();
            assert!(e.contains("no time at all"), "{zero}: {e}");
        }
        assert_eq!(parse_duration("1ns"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("0xd0000"), Ok(0xD0000));
        assert_eq!(parse_addr("D0000h"), Ok(0xD0000));
        assert_eq!(parse_addr("851968"), Ok(0xD0000));
        assert!(parse_addr("zz").is_err());
    }

    #[test]
    fn defaults_apply_only_when_a_flag_is_absent() {
        let cpu = CpuOpts::default();
        assert_eq!(cpu.backend_or(BackendChoice::Interp), BackendChoice::Interp);
        let cpu = CpuOpts { backend: Some(BackendChoice::Kvm), ..CpuOpts::default() };
        assert_eq!(cpu.backend_or(BackendChoice::Interp), BackendChoice::Kvm);
        let ten = Some(Duration::from_secs(10));
        assert_eq!(LimitOpts::default().limits(ten).timeout, ten);
        let one = LimitOpts { timeout: Some(Duration::from_secs(1)), max_instructions: Some(5) };
        assert_eq!(
            one.limits(ten),
            RunLimits { max_instructions: Some(5), timeout: Some(Duration::from_secs(1)) }
        );
    }
}
