#!/usr/bin/env bash
# Squint's SIMD kernels executed by an AVX-512 CPU that is emulated instruction by instruction, on any
# x86-64 machine: Bochs 2.7 (Debian's, built with EVEX support) boots Debian's Linux kernel with one
# program as init, Tests/NativeKernelCheck/kernel_check.c, built from CSquintKernels' own sources with
# its own flags (Package.swift's cOptimize) by the clang SwiftPM uses. So what runs is the compiler's
# AVX-512 code and the real CPU check (__builtin_cpu_supports, XGETBV), unlike the SIMDe pass of
# scripts/test-avx512-emulated.sh, which re-expresses the 512-bit intrinsics over AVX2.
#
# The CPU model is Bochs's corei7_skylake_x: AVX-512 F/CD/BW/DQ/VL without VNNI. The check must find
# AVX-512F, choose the AVX-512 Int4 level and the AVX-512 Cholesky, and refuse the VNNI level; it must
# report 0 failed checks, and the digests of its scalar twins' outputs must equal the host's (the
# emulator computes the same float bits as the host's CPU). Bochs's models with VNNI (corei7_icelake_u,
# tigerlake) do not finish booting Linux 6.1 (docs/RELIABILITY.md), so the VNNI products are not run here.
#
# One kernel parameter works around a CPUID defect of Bochs 2.7, without which Linux finds the XSAVE
# layout inconsistent and turns AVX off altogether: clearcpuid=321,323 (XSAVEC and XSAVES off; Bochs
# reports the standard-format size where the compacted one belongs, CPUID 0xD.1 EBX).
#
# Usage: scripts/avx512-bochs.sh   (about 3.5 min on a 2-core EPYC)
# Needs: what scripts/setup-debian.sh installs (bochs, its BIOSes, isolinux, xorriso, cpio). The kernel
# package comes from Debian's archive through apt (whose signed indexes verify it) into
# ${SQUINT_CACHE:-$HOME/.cache/squint}/bochs; nothing is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
model=corei7_skylake_x expect=avx512f,novnni   # the check's SQUINT_EXPECT_LEVELS for that CPU
for tool in bochs xorriso cpio clang apt-get; do
  command -v "$tool" >/dev/null || { echo "avx512-bochs.sh: $tool not found: run scripts/setup-debian.sh" >&2; exit 1; }
done
isolinux=/usr/lib/ISOLINUX/isolinux.bin ldlinux=/usr/lib/syslinux/modules/bios/ldlinux.c32
for f in $isolinux $ldlinux /usr/share/bochs/BIOS-bochs-latest /usr/share/bochs/VGABIOS-lgpl-latest; do
  [ -f "$f" ] || { echo "avx512-bochs.sh: $f missing: run scripts/setup-debian.sh" >&2; exit 1; }
done

CACHE="${SQUINT_CACHE:-$HOME/.cache/squint}/bochs"
mkdir -p "$CACHE"
work=$(mktemp -d "${TMPDIR:-/tmp}/squint-bochs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The kernel: the one Debian 12's linux-image-amd64 currently depends on.
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -1; }
pkg=$(kernel_pkg)
if [ -z "$pkg" ]; then   # a machine whose package lists were never fetched
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || { echo "avx512-bochs.sh: apt does not know linux-image-amd64 (no Debian package lists?)" >&2; exit 1; }
kernel="$CACHE/vmlinuz-${pkg#linux-image-}"
if [ ! -s "$kernel" ]; then
  echo "== fetching $pkg"
  (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1) || { echo "avx512-bochs.sh: apt-get download $pkg failed" >&2; exit 1; }
  dpkg-deb --fsys-tarfile "$work"/"$pkg"_*.deb | tar -x -C "$work" --wildcards './boot/vmlinuz-*'
  mv "$work"/boot/vmlinuz-* "$kernel.part" && mv "$kernel.part" "$kernel"
  rm -rf "$work"/boot "$work"/*.deb
fi
echo "== kernel $(basename "$kernel") sha256 $(sha256sum "$kernel" | cut -c1-16)"

# The check, built as the package builds CSquintKernels.
flags=$(sed -n 's/^let cOptimize.*unsafeFlags(\[\(.*\)\])\].*/\1/p' Package.swift | tr -d '",')
[ -n "$flags" ] || { echo "avx512-bochs.sh: cannot read cOptimize from Package.swift" >&2; exit 1; }
check="$work/kernel_check"
clang $flags -ISources/CSquintKernels/include Sources/CSquintKernels/*.c Tests/NativeKernelCheck/kernel_check.c \
  -o "$check" -lopenblas -lz -lpthread -lm
host_out=$("$check")
host_digest=$(sed -n 's/^twin digest: //p' <<<"$host_out")
echo "== host: $(head -1 <<<"$host_out"); twin digest $host_digest"

# One initramfs (the check as /init and the shared libraries it loads), one boot CD per model.
root="$work/root"
mkdir -p "$root/proc" "$root/dev"
cp "$check" "$root/init"
for lib in $(ldd "$check" | grep -oE '/[^ ]+'); do mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.gz")

dir="$work/$model"
mkdir -p "$dir/cd"
cp "$kernel" "$dir/cd/vmlinuz"
cp "$work/initrd.gz" $isolinux $ldlinux "$dir/cd/"
printf 'default sq\nprompt 0\ntimeout 0\nlabel sq\n  kernel /vmlinuz\n  append initrd=/initrd.gz console=ttyS0,115200 quiet loglevel=3 clearcpuid=321,323 SQUINT_EXPECT_LEVELS=%s\n' \
  "$expect" >"$dir/cd/isolinux.cfg"
xorriso -as mkisofs -quiet -o "$dir/boot.iso" -b isolinux.bin -c boot.cat -no-emul-boot -boot-load-size 4 \
  -boot-info-table "$dir/cd" 2>/dev/null
cat >"$dir/bochsrc" <<EOF
megs: 512
cpu: model=$model, count=1, ips=200000000
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest
display_library: rfb, options="timeout=0"
ata0-master: type=cdrom, path=$dir/boot.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=$dir/serial.txt
clock: sync=none, time0=local
log: $dir/bochs.log
panic: action=fatal
error: action=ignore
info: action=ignore
debug: action=ignore
mouse: enabled=0
EOF

# Debian's Bochs starts in its debugger: "c" continues. The guest powers off when the check is done.
start=$(date +%s)
printf 'c\n' | timeout 1500 bochs -q -f "$dir/bochsrc" >"$dir/stdout.txt" 2>&1 || true
out="$dir/serial.clean"
tr -d '\r' <"$dir/serial.txt" >"$out" 2>/dev/null || : >"$out"
cp "$out" "$CACHE/last-$model.txt"
summary=$(grep -a '^squint-kernel-check:' "$out" || true)
digest=$(sed -n 's/^twin digest: //p' "$out")
echo "== $model: $(grep -a '^cpu:' "$out" || echo 'no output')"
status=0
if [[ "$summary" =~ \ 0\ failed$ ]] && [ "$digest" = "$host_digest" ]; then
  echo "== $model: ${summary#squint-kernel-check: }, twin digest as on the host"
else
  grep -a -E '^(FAIL|kernel:)' "$out" || true
  echo "== $model: FAILED (${summary:-no summary: see $CACHE/last-$model.txt}; twin digest ${digest:-none}, host $host_digest)"
  status=1
fi
echo "== avx512-bochs.sh: $(( $(date +%s) - start )) s"
exit $status
