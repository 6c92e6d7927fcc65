#!/usr/bin/env bash
# Exit round trips on KVM: Hyve's KVM backend against a minimal C VMM (bench/kvm-exits/exits.c)
# running the same guest in the same run. The guest times 100,000 port writes and 100,000
# device-memory writes with RDTSC; this prints cycles per exit for both and Hyve's ratio.
# Usage: bench/kvm-exits.sh [rounds]   (best of ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -m32 -c -o "$out/guest.o" bench/kvm-exits/guest.S
ld -m elf_i386 -Ttext=0x100000 -e _start -o "$out/guest.elf" "$out/guest.o"
objcopy -O binary "$out/guest.elf" "$out/guest.bin"
gcc -O2 -o "$out/exits" bench/kvm-exits/exits.c
./hyve run --backend kvm --timeout 1 --load 0x100000 --kernel "$out/guest.bin" >/dev/null 2>&1 || true # build once
best() { sort -n | head -1; }
per() { read -r _ hex; echo $(( 16#$hex / 100000 )); }
c_port=(); c_mmio=(); h_port=(); h_mmio=()
for i in $(seq "$rounds"); do
  c=$("$out/exits" "$out/guest.bin")
  h=$(./hyve run --backend kvm --load 0x100000 --kernel "$out/guest.bin" || true)
  c_port+=("$(grep '^port' <<<"$c" | per)"); c_mmio+=("$(grep '^mmio' <<<"$c" | per)")
  h_port+=("$(grep '^port' <<<"$h" | per)"); h_mmio+=("$(grep '^mmio' <<<"$h" | per)")
done
cp=$(printf '%s\n' "${c_port[@]}" | best); cm=$(printf '%s\n' "${c_mmio[@]}" | best)
hp=$(printf '%s\n' "${h_port[@]}" | best); hm=$(printf '%s\n' "${h_mmio[@]}" | best)
echo "cycles per exit (best of $rounds): port: C $cp, Hyve $hp, ratio $(awk -v a="$hp" -v b="$cp" 'BEGIN{printf "%.3f", a/b}'); mmio: C $cm, Hyve $hm, ratio $(awk -v a="$hm" -v b="$cm" 'BEGIN{printf "%.3f", a/b}')"
