#!/usr/bin/env python3
"""Times the compiled-C workloads (benches/workloads, issue 12) on picoqemu and on QEMU TCG in
the same session, whole-process wall time, median of RUNS runs, and prints a Markdown table.

    scripts/qemu-workloads.py [--runs N] [--rounds R] [--modes interp-off,...] [--layout packed,split]
                              [--names sort,crc,...]

Two data layouts are measured (one table each): `packed`, data right after the code as the
compiler lays it out, and `split`, data on its own 4 KiB pages (benches/workloads/link.ld).

QEMU runs the same payload: a floppy made of benches/workloads/floppy-loader.S (SeaBIOS boots
it; it copies the payload to 0000:0000 and jumps there) and the payload sectors, with
`-accel tcg -device isa-debug-exit,iobase=0xf4`. Start-up (QEMU + SeaBIOS + the loader;
picoqemu process start) is measured with an empty payload and subtracted, so the ratio is
about guest execution. Exit status 1 (= debug-exit code 0) means the workload's self-checks
passed; any other status is reported and the row is marked FAILED.

Needs gcc, objcopy, ld, qemu-system-i386 (install it yourself: `apt-get install
qemu-system-x86`; this script installs nothing) and target/release/picoqemu. Only the
standard library is used. The machine load (1-minute load average) is printed with the table.
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "benches", "workloads")
NAMES = ["sort", "crc", "matrix", "lists", "fsm", "vm", "strings", "bios"]
MODES = {
    "interp-off": ["--backend", "interp", "--jit", "off"],
    "interp-hot": ["--backend", "interp", "--jit", "hot"],
    "interp-eager": ["--backend", "interp", "--jit", "eager"],
    "kvm": ["--backend", "kvm"],
}


def sh(*cmd):
    subprocess.run(cmd, check=True)


LAYOUTS = {
    # Data right after the code (the compiler's default layout).
    "packed": "",
    # Data on its own 4 KiB pages (page-granular translators such as QEMU's need that).
    "split": " -Wl,--defsym=DATA_ALIGN=4096",
}


def build(out, rounds, layout):
    env = dict(os.environ, EXTRA_CFLAGS=f"-DROUNDS={rounds}{LAYOUTS[layout]}")
    subprocess.run([os.path.join(SRC, "build.sh"), out], check=True, env=env, stdout=subprocess.DEVNULL)
    # The start-up baseline: `mov al, 0 / out 0xF4, al / hlt` (debug-exit code 0).
    with open(os.path.join(out, "empty.bin"), "wb") as f:
        f.write(b"\xb0\x00\xe6\xf4\xf4")
    obj = os.path.join(out, "loader.o")
    sh("gcc", "-m16", "-c", os.path.join(SRC, "floppy-loader.S"), "-o", obj)
    sh("ld", "-m", "elf_i386", "-Ttext", "0x7C00", "--oformat", "binary", "-o", os.path.join(out, "loader.bin"), obj)


def floppy(out, name):
    loader = bytearray(open(os.path.join(out, "loader.bin"), "rb").read())
    payload = open(os.path.join(out, f"{name}.bin"), "rb").read()
    sectors = (len(payload) + 511) // 512
    loader[508:510] = sectors.to_bytes(2, "little")
    image = bytes(loader) + payload + b"\0" * (sectors * 512 - len(payload))
    path = os.path.join(out, f"{name}.flp")
    with open(path, "wb") as f:
        f.write(image + b"\0" * (1474560 - len(image)))
    return path


def median_time(cmd, runs):
    """Median wall time of `runs` runs after one untimed warm-up run (cold caches made the
    first QEMU start-up up to 70 ms slower, which the subtraction would misattribute)."""
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times, codes = [], set()
    for _ in range(runs):
        t = time.perf_counter()
        codes.add(subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode)
        times.append(time.perf_counter() - t)
    return statistics.median(times), codes


def qemu_cmd(path):
    return ["qemu-system-i386", "-accel", "tcg", "-display", "none", "-no-reboot", "-m", "16",
            "-device", "isa-debug-exit,iobase=0xf4", "-drive", f"file={path},format=raw,if=floppy", "-boot", "a"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--modes", default="interp-off,interp-hot,interp-eager")
    ap.add_argument("--layout", default="packed,split")
    ap.add_argument("--names", default=",".join(NAMES), help="workloads to time (default: all)")
    args = ap.parse_args()
    for layout in args.layout.split(","):
        if layout not in LAYOUTS:
            sys.exit(f"unknown layout {layout!r} (packed, split)")
        table(args, layout, args.modes.split(","))


def pico_cmd(mode, path):
    return [os.path.join(ROOT, "target", "release", "picoqemu"), "run", "--raw", "--screen", "none", *MODES[mode], path]


def table(args, layout, modes):
    with tempfile.TemporaryDirectory() as out:
        build(out, args.rounds, layout)
        base = {m: median_time(pico_cmd(m, os.path.join(out, "empty.bin")), args.runs)[0] for m in modes}
        qbase = median_time(qemu_cmd(floppy(out, "empty")), args.runs)[0]
        head = "| workload | " + " | ".join(f"{m} (s)" for m in modes) + " | QEMU TCG (s) | " + " | ".join(f"{m} / QEMU speed" for m in modes) + " |"
        print(f"\nLayout {layout}: ROUNDS={args.rounds}, median of {args.runs} runs, start-up subtracted "
              f"(picoqemu {', '.join(f'{m} {base[m]*1e3:.1f} ms' for m in modes)}; QEMU {qbase*1e3:.0f} ms); "
              f"load average {os.getloadavg()[0]:.2f}\n")
        print(head)
        print("|" + "---|" * (2 + 2 * len(modes)))
        logs = {m: [] for m in modes}
        for name in args.names.split(","):
            q, qc = median_time(qemu_cmd(floppy(out, name)), args.runs)
            q -= qbase
            cells, ratios, ok = [], [], qc == {1}
            for m in modes:
                t, c = median_time(pico_cmd(m, os.path.join(out, f"{name}.bin")), args.runs)
                t -= base[m]
                ok &= c == {1}
                cells.append(f"{t:.3f}")
                ratios.append(f"{q / t:.2f}x" if t > 0 and q > 0 else "n/a")
                if t > 0 and q > 0:
                    logs[m].append(math.log(q / t))
            flag = "" if ok else " FAILED"
            print(f"| {name}{flag} | " + " | ".join(cells) + f" | {q:.3f} | " + " | ".join(ratios) + " |")
        geo = [f"{math.exp(sum(v) / len(v)):.2f}x" if v else "n/a" for v in logs.values()]
        print("| geometric mean | " + " | ".join("" for _ in modes) + " | | " + " | ".join(geo) + " |")


if __name__ == "__main__":
    sys.exit(main())
