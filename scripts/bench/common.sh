# Shared by the side-by-side decode scripts (sourced, not run): the cache paths, a 536-token prompt
# (the first 2,050 characters of alice29.txt from "Alice was beginning", CRLF -> LF, and a request to
# summarise), a timestamped log line, and the prefill/decode rates of a `squint run --json` output.
C=${SQUINT_CACHE:-$HOME/.cache/squint}; S=${S:-.build/release/squint}; B=$C/llama.cpp/bin; M=$C/models
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
tr -d '\r' < "$C/texts/alice29.txt" > "$TMP/alice.txt"
start=$(grep -b -o "Alice was beginning" "$TMP/alice.txt" | head -1 | cut -d: -f1)
{ dd if="$TMP/alice.txt" iflag=skip_bytes,count_bytes skip="$start" count=2050 status=none; printf '\n\nSummarize the story above in detail, paragraph by paragraph.'; } > "$TMP/prompt.txt"
P="$(cat "$TMP/prompt.txt")"
log() { echo "== $* $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"; }
rate() { # prefill and decode tokens/s from a text `run --json` (decode: generated - 1 steps)
  local pt ps ds n
  pt=$(grep -o '"promptTokens" *: *[0-9]*' "$1" | grep -o '[0-9]*$')
  ps=$(grep -o '"prefillSeconds" *: *[0-9.e-]*' "$1" | sed 's/.*: *//')
  ds=$(grep -o '"decodeSeconds" *: *[0-9.e-]*' "$1" | sed 's/.*: *//')
  n=$(tr -d ' \n' < "$1" | grep -o '"generatedIds":\[[^]]*\]' | tr -cd ',' | wc -c); n=$((n + 1))
  awk -v pt="$pt" -v ps="$ps" -v ds="$ds" -v n="$n" 'BEGIN { printf "prompt %d prefill %.2f s = %.1f tok/s; decode %d in %.2f s = %.2f tok/s\n", pt, ps, pt / ps, n, ds, (n - 1) / ds }'
}
