#!/usr/bin/env bash
# Guest instructions per second on the software CPU and on QEMU TCG, measured in one run with
# the integer benchmark guest (guests/bench.c). Each machine runs the guest twice, with
# rounds=1 and more rounds; the difference removes start-up and boot time. Hyve counts the
# instructions it retires (--stats); each round runs the same code on both machines, so QEMU
# retires the same number per round (QEMU is much faster, so it runs more rounds).
#   bench/guest-speed.sh [HYVE_ROUNDS] [QEMU_ROUNDS]   (defaults 40 and 1000)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-40}"
qrounds="${2:-1000}"
kernel="$root/guests/build/bench.elf"
make -s -C "$root/guests"
"$root/hyve" help > /dev/null
qemu=(qemu-system-x86_64 -accel tcg -nodefaults -display none -serial stdio -m 256
      -device isa-debug-exit,iobase=0xf4,iosize=4 -device pc-testdev -kernel "$kernel")

now() { date +%s.%N; }
hyve_run() { # rounds -> "seconds instructions checksum"
  local t0 t1 out
  t0=$(now)
  out=$("$root/hyve" run --kernel "$kernel" --cmdline "rounds=$1" --stats 2>&1 || true)
  t1=$(now)
  echo "$(echo "$t1 - $t0" | bc -l) $(grep -o 'instructions=[0-9]*' <<<"$out" | cut -d= -f2) $(grep -o 'checksum [0-9a-f]*' <<<"$out" | cut -d' ' -f2)"
}
qemu_run() { # rounds -> "seconds checksum"
  local t0 t1 out
  t0=$(now)
  out=$("${qemu[@]}" -append "rounds=$1" 2>&1 || true)
  t1=$(now)
  echo "$(echo "$t1 - $t0" | bc -l) $(grep -o 'checksum [0-9a-f]*' <<<"$out" | cut -d' ' -f2)"
}

# Each timing is the best of three runs, interleaved: the machines this runs on are shared.
best() { sort -n | head -1; }
h1=999999 hr=999999 q1=999999 qr=999999
for _ in 1 2 3; do
  read -r t i1 _ < <(hyve_run 1);              h1=$(printf '%s\n%s\n' "$h1" "$t" | best)
  read -r t ir hsum < <(hyve_run "$rounds");   hr=$(printf '%s\n%s\n' "$hr" "$t" | best)
  read -r t _ < <(qemu_run 1);                 q1=$(printf '%s\n%s\n' "$q1" "$t" | best)
  read -r t qsum < <(qemu_run "$qrounds");     qr=$(printf '%s\n%s\n' "$qr" "$t" | best)
done
per_round=$(( (ir - i1) / (rounds - 1) ))
hyve_instr=$((ir - i1))
qemu_instr=$((per_round * (qrounds - 1)))
hyve_mips=$(echo "$hyve_instr / ($hr - $h1) / 1000000" | bc -l)
qemu_mips=$(echo "$qemu_instr / ($qr - $q1) / 1000000" | bc -l)
printf '%d instructions per round\n' "$per_round"
printf 'hyve (soft): %d rounds, %.2f s for %d instructions -> %.1f MIPS   checksum %s\n' "$rounds" "$(echo "$hr - $h1" | bc -l)" "$hyve_instr" "$hyve_mips" "$hsum"
printf 'qemu (tcg):  %d rounds, %.2f s for %d instructions -> %.1f MIPS\n' "$qrounds" "$(echo "$qr - $q1" | bc -l)" "$qemu_instr" "$qemu_mips"
printf 'ratio hyve/qemu: %.3f\n' "$(echo "$hyve_mips / $qemu_mips" | bc -l)"
# The same rounds must give the same checksum: QEMU's for the Hyve round count, checked once.
read -r _ csum < <(qemu_run "$rounds")
[ "$hsum" = "$csum" ] || { echo "checksums differ: hyve $hsum, qemu $csum" >&2; exit 1; }
