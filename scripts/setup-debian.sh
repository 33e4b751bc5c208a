#!/usr/bin/env bash
# Installs what Squint needs on a fresh Debian 12 machine (as root): the C libraries it links
# (OpenBLAS with LAPACK, zstd, json-c, libjpeg-turbo, libpng, zlib for CRC-32, libedit), and for the test
# suite's AVX-512 passes SIMDe's headers (scripts/test-avx512-emulated.sh) and the Bochs emulator with what
# boots Linux in it (scripts/avx512-bochs.sh). Swift 6 must already be on PATH.
# Safe to run again: apt skips what is installed.
set -euo pipefail
pkgs="libopenblas-dev liblapacke-dev libzstd-dev libjson-c-dev libjpeg62-turbo-dev libpng-dev zlib1g-dev libedit-dev libsimde-dev"
pkgs="$pkgs bochs bochs-term bochsbios vgabios isolinux syslinux-common xorriso cpio"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
command -v swift >/dev/null || { echo "swift not found on PATH: install Swift 6 (swift.org) first" >&2; exit 1; }
