#!/usr/bin/env bash
# OPTIONAL: measures QEMU (TCG) and Bochs side by side with picoqemu on the same kind of
# guest, whole-process wall time, medians of N runs. Nothing here is part of the build, the
# tests or CI, and nothing is installed: a peer that is not installed is skipped with a note.
#
#   scripts/compare-peers.sh [RUNS]        (default 5; needs python3 and target/release/picoqemu)
#
# Guests (written to a temporary directory, hand-assembled below, assembly in comments):
#   compute.img  the compute loop of picoqemu::guests::compute_loop (10-instruction body),
#                ITER iterations, ending with `out 0xF4, al` (QEMU's isa-debug-exit) and `hlt`
#   hlt.img      `mov al, 0 / out 0xF4, al / hlt`: start-up cost
# QEMU:  qemu-system-i386 -accel tcg -display none -device isa-debug-exit,iobase=0xf4
#        (exit status 1 = (0 << 1) | 1 is success).
# Bochs: needs a bochsrc; the guest cannot end Bochs by itself, so Bochs is only timed if
#        BOCHS_RC points at a bochsrc whose floppy/disk is the image and which ends the run
#        (e.g. with a `magic_break` plus debugger script). Otherwise it is skipped.
# MIPS = (8 + 10 * ITER + 3) / wall time; the wall time includes start-up, so ITER is large;
# a second figure subtracts the measured start-up (the hlt guest's wall time).
set -euo pipefail

RUNS=${1:-5}
ITER=${ITER:-200000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PICO=${PICO:-$ROOT/target/release/picoqemu}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

python3 - "$TMP" "$ITER" <<'PY'
import struct, sys
out, it = sys.argv[1], int(sys.argv[2])
def sector(code):
    assert len(code) <= 510
    return code + b"\0" * (510 - len(code)) + b"\x55\xaa"
body = (
    b"\x8b\x87\x00\x10"      # mov ax, [bx+0x1000]
    b"\x01\xd0"              # add ax, dx
    b"\x31\xc2"              # xor dx, ax
    b"\xc1\xc2\x03"          # rol dx, 3
    b"\x89\x97\x00\x10"      # mov [bx+0x1000], dx
    b"\x01\xc6"              # add si, ax
    b"\x83\xc3\x02"          # add bx, 2
    b"\x81\xe3\xfe\x0f"      # and bx, 0x0FFE
    b"\x66\x49"              # dec ecx
)
loop = body + b"\x75" + struct.pack("b", -(len(body) + 2))   # jnz .loop
code = (
    b"\x31\xc0"              # xor ax, ax
    b"\x8e\xd8"              # mov ds, ax
    b"\x31\xdb"              # xor bx, bx
    b"\xba\x34\x12"          # mov dx, 0x1234
    b"\x31\xf6"              # xor si, si
    b"\xbd\x5a\x5a"          # mov bp, 0x5A5A
    b"\x66\xb9" + struct.pack("<I", it) +   # mov ecx, ITER
    b"\x31\xff"              # xor di, di
    + loop +
    b"\xb0\x00\xe6\xf4\xf4"  # mov al, 0 / out 0xF4, al / hlt
)
open(f"{out}/compute.img", "wb").write(sector(code))
open(f"{out}/hlt.img", "wb").write(sector(b"\xb0\x00\xe6\xf4\xf4"))
PY

# median wall seconds of RUNS runs of "$@" (any exit status accepted; printed once)
median() {
    python3 - "$RUNS" "$@" <<'PY'
import statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
ts, rc = [], None
for _ in range(runs):
    t = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    ts.append(time.perf_counter() - t)
print(f"{statistics.median(ts):.4f} {rc}")
PY
}

insns=$(( 8 + 10 * ITER + 3 ))
report() { # name what seconds status; a start-up line must follow its compute line's peer
    local name=$1 what=$2 secs=$3 rc=$4
    if [ "$what" = compute ]; then
        python3 -c "print(f'{\"$name\":<28} compute  {float($secs):8.3f} s  {$insns / float($secs) / 1e6:10.1f} MIPS  (exit {$rc})')"
        COMPUTE=$secs
    else
        python3 -c "print(f'{\"$name\":<28} start-up {float($secs):8.4f} s                    (exit {$rc})')"
        python3 -c "c, s = float('$COMPUTE'), float($secs); print(f'{\"$name\":<28} compute minus start-up: {$insns / (c - s) / 1e6:10.1f} MIPS') if c > s else None"
        COMPUTE=0
    fi
}
COMPUTE=0

echo "compare-peers: $RUNS runs each, medians, whole process; ITER=$ITER ($insns instructions); load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -x "$PICO" ]; then
    read -r s rc < <(median "$PICO" run --backend interp --screen none "$TMP/compute.img"); report "picoqemu interp" compute "$s" "$rc"
    read -r s rc < <(median "$PICO" run --backend interp --screen none "$TMP/hlt.img"); report "picoqemu interp" startup "$s" "$rc"
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        read -r s rc < <(median "$PICO" run --backend kvm --screen none "$TMP/hlt.img"); report "picoqemu kvm" startup "$s" "$rc"
        echo "  (KVM compute is skipped: at about 2 MIPS on PVM hosts ITER iterations would take minutes)"
    fi
else
    echo "picoqemu: $PICO not found (cargo build --release first); skipped"
fi

QEMU=$(command -v qemu-system-i386 || command -v qemu-system-x86_64 || true)
if [ -n "$QEMU" ]; then
    q=("$QEMU" -accel tcg -display none -serial none -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4)
    read -r s rc < <(median "${q[@]}" -drive "format=raw,if=floppy,file=$TMP/compute.img"); report "$(basename "$QEMU") tcg" compute "$s" "$rc"
    read -r s rc < <(median "${q[@]}" -drive "format=raw,if=floppy,file=$TMP/hlt.img"); report "$(basename "$QEMU") tcg" startup "$s" "$rc"
    echo "  (QEMU's figures include its SeaBIOS boot before the guest runs)"
else
    echo "QEMU: not installed (qemu-system-i386 / qemu-system-x86_64); skipped"
fi

if command -v bochs >/dev/null && [ -n "${BOCHS_RC:-}" ]; then
    read -r s rc < <(median bochs -q -f "$BOCHS_RC"); report "bochs ($BOCHS_RC)" compute "$s" "$rc"
elif command -v bochs >/dev/null; then
    echo "Bochs: installed, but BOCHS_RC is not set (see the header of this script); skipped"
else
    echo "Bochs: not installed; skipped"
fi
