#!/usr/bin/env python3
"""Summarise criterion results (target/criterion) of `cargo bench --bench backends` as a
Markdown table: median time per run, the rate criterion's throughput implies (MIPS for
instruction counts, accesses/s and cost per access for exits, MB/s for bytes), and the
ratios BENCHMARKS.md quotes (interp/KVM, KVM/bare-KVM baseline).

Usage: scripts/bench-report.py [TARGET_CRITERION_DIR]   (default: target/criterion)
Only the standard library is used. Rates are decimal (1 MB = 10^6 bytes, 1 MIPS = 10^6 instr/s).
"""
import json
import os
import sys


def load(root):
    rows = []
    for group in sorted(os.listdir(root)):
        gdir = os.path.join(root, group)
        if not os.path.isdir(gdir) or group == "report":
            continue
        for bench in sorted(os.listdir(gdir)):
            new = os.path.join(gdir, bench, "new")
            try:
                with open(os.path.join(new, "benchmark.json")) as f:
                    meta = json.load(f)
                with open(os.path.join(new, "estimates.json")) as f:
                    est = json.load(f)
            except (OSError, ValueError):
                continue
            median = est["median"]["point_estimate"]  # ns per iteration
            lo = est["median"]["confidence_interval"]["lower_bound"]
            hi = est["median"]["confidence_interval"]["upper_bound"]
            rows.append(
                {
                    "group": meta.get("group_id", group),
                    "bench": meta.get("function_id") or bench,
                    "ns": median,
                    "lo": lo,
                    "hi": hi,
                    "tp": meta.get("throughput") or {},
                }
            )
    return rows


def fmt_time(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:.3f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.3f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def rate(row):
    tp = row["tp"]
    secs = row["ns"] / 1e9
    if "Elements" in tp:
        n = tp["Elements"]
        per = row["ns"] / n
        if row["group"] == "compute":
            mips = n / secs / 1e6
            return (f"{mips:,.1f} MIPS" if mips >= 10 else f"{mips:.3f} MIPS"), n / secs
        return f"{n / secs / 1e3:,.1f} k/s, {fmt_time(per)} each", n / secs
    if "Bytes" in tp or "BytesDecimal" in tp:
        n = tp.get("Bytes") or tp.get("BytesDecimal")
        return f"{n / secs / 1e6:,.1f} MB/s", n / secs
    return "", 1e9 / row["ns"]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    rows = load(root)
    if not rows:
        print(f"no criterion results under {root}; run `cargo bench --bench backends` first", file=sys.stderr)
        return 1
    print("| group | benchmark | median per run (95% CI) | rate |")
    print("|---|---|---|---|")
    by = {}
    for r in rows:
        text, per_s = rate(r)
        by[(r["group"], r["bench"])] = per_s
        ci = f"{fmt_time(r['lo'])}–{fmt_time(r['hi'])}"
        print(f"| {r['group']} | {r['bench']} | {fmt_time(r['ns'])} ({ci}) | {text} |")
    print()
    print("| group | KVM benchmark | interp / KVM (speed) | KVM / bare KVM (time) |")
    print("|---|---|---|---|")
    for (g, b), k in sorted(by.items()):
        if not b.startswith("kvm") or b.startswith("kvm-raw"):
            continue
        # kvm -> interp, kvm/x -> interp/x; kvm -> kvm-raw, kvm-x -> kvm-raw-x, kvm/x -> kvm-raw/x
        i = by.get((g, "interp" + b[3:])) if b[3:4] in ("", "/") else None
        if i is None and b[3:4] in ("-",):
            i = by.get((g, "interp"))
        raw = by.get((g, "kvm-raw" + b[3:]))
        a = f"{i / k:,.1f}×" if i else ""
        r = f"{raw / k:.3f}×" if raw else ""
        if a or r:
            print(f"| {g} | {b} | {a} | {r} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
