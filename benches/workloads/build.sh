#!/bin/sh
# Builds every workload image (flat binary, loaded with --raw) into $1 (default: ./out);
# EXTRA_CFLAGS adds flags (e.g. "-DROUNDS=50" for longer runs).
# The same commands are run by src/workloads.rs; this script is for trying one by hand:
#   benches/workloads/build.sh /tmp/w && picoqemu run --raw /tmp/w/sort.bin
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/out}"
mkdir -p "$out"
cflags="${EXTRA_CFLAGS:-} -m16 -march=i386 -mtune=generic -O2 -ffreestanding -fno-pic -fno-stack-protector -fno-asynchronous-unwind-tables -nostdlib -static -no-pie -Wall -Wextra -Werror"
for src in "$here"/*.c; do
    name="$(basename "$src" .c)"
    [ "$name" = libc ] && continue
    gcc $cflags -T "$here/link.ld" -Wl,-m,elf_i386 -Wl,--build-id=none -Wl,--no-warn-rwx-segments -o "$out/$name.elf" \
        "$here/start.S" "$src" "$here/libc.c"
    objcopy -O binary "$out/$name.elf" "$out/$name.bin"
    echo "$out/$name.bin"
done
