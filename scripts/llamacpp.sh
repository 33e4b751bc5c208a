#!/usr/bin/env bash
# Builds llama.cpp's command-line tools into the Squint cache, as a judge for benchmarks, fixture
# generators and cross-checks (issue 13, item 7). Squint never needs them to run.
#
# Source: the llama.cpp tree vendored in the llama-cpp-python 0.3.36 sdist (vendor/llama.cpp),
#   llama.cpp commit 0c1e57098bba43ac29e6e3b677cdceebdd22334f (github.com/ggml-org/llama.cpp;
#   read from the sdist's .git/modules/vendor/llama.cpp/HEAD, checked again below).
# Built with Debian's cmake (installed through apt when missing), GGML_NATIVE=ON, -j2.
#
# Result, under ${SQUINT_CACHE:-$HOME/.cache/squint}/llama.cpp/:
#   src/    the extracted llama.cpp source      build/   the cmake build tree
#   bin/    llama-perplexity llama-bench llama-quantize llama-imatrix llama-tokenize llama-completion
#           (+ llama-cli if the configured tree has that target. In 0c1e570 llama-cli is built only with
#           LLAMA_BUILD_SERVER=ON, as a client of the server code and its web UI, which we skip;
#           llama-completion is the classic one-shot "run this prompt" tool, which is all we need.)
#   sdist/  the verified llama_cpp_python-0.3.36.tar.gz
#
# Idempotent: a verified tarball, an extracted tree and built tools are reused; cmake only rebuilds what
# changed. Usage: scripts/llamacpp.sh [--jobs N]   (default 2: the machine's cores are shared)
# Nothing from llama.cpp is ever copied into the repository.
set -euo pipefail

SDIST_VERSION=0.3.36
SDIST_NAME="llama_cpp_python-${SDIST_VERSION}.tar.gz"
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_COMMIT=0c1e57098bba43ac29e6e3b677cdceebdd22334f
TOOLS="llama-perplexity llama-bench llama-quantize llama-imatrix llama-tokenize llama-completion"
JOBS=2

while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) JOBS="${2:?--jobs needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "llamacpp.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

CACHE="${SQUINT_CACHE:-$HOME/.cache/squint}"
ROOT="$CACHE/llama.cpp"
mkdir -p "$ROOT/sdist" "$ROOT/bin"

say() { echo "llamacpp.sh: $*"; }
die() { echo "llamacpp.sh: error: $*" >&2; exit 1; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# 1. Tools: cmake (Debian's), a C/C++ compiler, python3 + pip for the download.
if ! command -v cmake >/dev/null; then
  say "installing cmake with apt"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake
fi
command -v c++ >/dev/null || die "no C++ compiler on PATH (apt-get install build-essential)"

# 2. The sdist, verified. pip prepares an sdist's metadata before saving it; with scikit-build-core
#    installed and --no-build-isolation that takes seconds instead of building an isolated environment.
TARBALL="$ROOT/sdist/$SDIST_NAME"
if [ -f "$TARBALL" ] && [ "$(sha_of "$TARBALL")" = "$SDIST_SHA256" ]; then
  say "sdist present and verified: $TARBALL"
else
  python3 -c 'import scikit_build_core' 2>/dev/null || python3 -m pip install -q scikit-build-core
  TMPD="$(mktemp -d "$ROOT/sdist/.download.XXXXXX")"
  trap 'rm -rf "$TMPD"' EXIT
  say "downloading llama-cpp-python==$SDIST_VERSION (sdist)"
  python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$TMPD" \
    "llama-cpp-python==$SDIST_VERSION"
  [ -f "$TMPD/$SDIST_NAME" ] || die "pip did not produce $SDIST_NAME"
  got="$(sha_of "$TMPD/$SDIST_NAME")"
  [ "$got" = "$SDIST_SHA256" ] || die "$SDIST_NAME sha256 mismatch: expected $SDIST_SHA256, got $got"
  mv -f "$TMPD/$SDIST_NAME" "$TARBALL"
  rm -rf "$TMPD"; trap - EXIT
  say "sdist verified: $TARBALL"
fi

# 3. The source tree (extracted once; a stamp records the tarball it came from).
SRC="$ROOT/src"
if [ "$(cat "$SRC/.squint-sdist-sha256" 2>/dev/null || true)" != "$SDIST_SHA256" ]; then
  say "extracting vendor/llama.cpp"
  TMPX="$(mktemp -d "$ROOT/.extract.XXXXXX")"
  tar -xzf "$TARBALL" -C "$TMPX" "llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp" \
    "llama_cpp_python-$SDIST_VERSION/.git/modules/vendor/llama.cpp/HEAD"
  head_commit="$(cat "$TMPX/llama_cpp_python-$SDIST_VERSION/.git/modules/vendor/llama.cpp/HEAD")"
  [ "$head_commit" = "$LLAMA_COMMIT" ] || die "vendored llama.cpp is $head_commit, expected $LLAMA_COMMIT"
  rm -rf "$SRC"
  mv "$TMPX/llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp" "$SRC"
  rm -f "$SRC/.git"   # a submodule pointer into the sdist's .git, which we do not keep
  echo "$SDIST_SHA256" > "$SRC/.squint-sdist-sha256"
  echo "$LLAMA_COMMIT" > "$SRC/.squint-llama-commit"
  rm -rf "$TMPX"
fi

# 4. Configure and build only the tools we use.
BUILD="$ROOT/build"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  say "configuring (cmake $(cmake --version | head -1 | awk '{print $3}'))"
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF \
    -DBUILD_SHARED_LIBS=OFF >"$ROOT/configure.log" 2>&1 \
    || die "cmake configure failed, see $ROOT/configure.log"
fi
targets="$TOOLS"
have_cli=0
if cmake --build "$BUILD" --target help 2>/dev/null | grep -qE '(^|[ .:])llama-cli($|[ :])'; then
  targets="$targets llama-cli"; have_cli=1
fi
say "building $targets with -j$JOBS (log: $ROOT/build.log; about 20 minutes on 2 busy cores)"
# shellcheck disable=SC2086
cmake --build "$BUILD" --config Release -j "$JOBS" --target $targets >"$ROOT/build.log" 2>&1 \
  || die "build failed, see the end of $ROOT/build.log"

# 5. bin/: copies of the built tools (static build, so they run from anywhere).
for t in $targets; do
  [ -x "$BUILD/bin/$t" ] || die "$t was not built (see $ROOT/build.log)"
  cp -f "$BUILD/bin/$t" "$ROOT/bin/$t.tmp" && mv -f "$ROOT/bin/$t.tmp" "$ROOT/bin/$t"
done

say "llama.cpp $LLAMA_COMMIT (from llama-cpp-python $SDIST_VERSION) tools in $ROOT/bin:"
for t in $targets; do echo "  $ROOT/bin/$t"; done
if [ "$have_cli" = 0 ]; then
  say "note: no llama-cli here (this llama.cpp builds it only with its server, LLAMA_BUILD_SERVER=ON, which we skip);"
  say "      run a prompt with: $ROOT/bin/llama-completion -m MODEL.gguf -p 'text' -n 32 -no-cnv"
fi
