#!/usr/bin/env bash
# Style checks (scripts/test.sh runs them after the build, before ctest):
#   0. scripts/check-structure.py: dependencies run base <- format <- boot <- builder,
#      updater; no library file over 450 lines, no function over 80 (docs/design.md);
#   1. clang-format --dry-run -Werror on every tracked *.cpp / *.h (.clang-format);
#   2. clang-tidy (.clang-tidy) on every project .cpp of BUILD/compile_commands.json, in
#      parallel (run-clang-tidy-14 when installed, else xargs -P), counting warnings in
#      project files (headers included) only.
# Quiet when all is fine; otherwise prints what is wrong, one line each, and exits 1.
#
#   scripts/lint.sh [BUILD_DIR [FILE...]]   BUILD_DIR: default $OSUP_BUILD_DIR or build/
#                                            FILEs: check only these (paths from the top)
#   OSUP_LINT_JOBS=N                 parallel clang-tidy runs (default: nproc)
#   OSUP_LINT_SKIP=format|tidy       skip one of the two passes
#   CLANG_FORMAT, CLANG_TIDY         the tools (CLANG_TIDY set: xargs -P, not run-clang-tidy)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${OSUP_BUILD_DIR:-$repo/build}}
build=$(cd "$build" 2>/dev/null && pwd) ||
  { echo "lint: build directory '${1:-${OSUP_BUILD_DIR:-$repo/build}}' does not exist; configure it first (cmake -S . -B build)" >&2; exit 2; }
cd "$repo"
if [ $# -gt 0 ]; then shift; fi
jobs=${OSUP_LINT_JOBS:-$(nproc)}
skip=${OSUP_LINT_SKIP:-}

tool() {  # the first of the given commands that exists, or a one-line error
  for t in "$@"; do command -v "$t" >/dev/null && { echo "$t"; return 0; }; done
  echo "lint: $1 not found; install it with scripts/install-deps.sh (Debian package $1)" >&2
  return 2
}

# Tracked files, plus new ones not yet added (but not ignored ones such as build/).
if [ $# -gt 0 ]; then
  for f in "$@"; do [ -f "$f" ] || { echo "lint: no file '$f' (give paths from the top of the tree)" >&2; exit 2; }; done
  sources=("$@")
else
  mapfile -t sources < <(git ls-files --cached --others --exclude-standard -- '*.cpp' '*.h' | sort -u)
fi
[ ${#sources[@]} -gt 0 ] || { echo "lint: no *.cpp / *.h files found by git ls-files in $repo" >&2; exit 2; }
status=0

# --- 0. structure ---------------------------------------------------------------------
if ! out=$(python3 "$repo/scripts/check-structure.py"); then
  echo "lint: structure (scripts/check-structure.py):"
  sed 's/^/  /' <<<"$out"
  status=1
fi

# --- 1. clang-format ------------------------------------------------------------------
if [ "$skip" != format ]; then
  clang_format=${CLANG_FORMAT:-}
  [ -n "$clang_format" ] || clang_format=$(tool clang-format clang-format-14) || exit 2
  # One line per place: FILE:LINE:COL: error: code should be clang-formatted [...]
  if ! out=$("$clang_format" --dry-run -Werror "${sources[@]}" 2>&1); then
    bad=$(grep -E '^[^ ].*:[0-9]+:[0-9]+: (error|warning): ' <<<"$out" | cut -d: -f1 | sort | uniq -c |
      awk '{ printf "  %s (%d place%s)\n", $2, $1, $1 == 1 ? "" : "s" }')
    [ -n "$bad" ] || bad=$(head -n 5 <<<"$out" | sed 's/^/  /')
    echo "lint: clang-format: $(grep -c . <<<"$bad") file(s) differ from .clang-format; fix with clang-format -i FILE:"
    echo "$bad"
    status=1
  fi
fi

# --- 2. clang-tidy --------------------------------------------------------------------
if [ "$skip" != tidy ]; then
  db=$build/compile_commands.json
  [ -f "$db" ] || { echo "lint: $db missing; configure the build first (cmake -S . -B $build)" >&2; exit 2; }
  clang_tidy=${CLANG_TIDY:-}
  [ -n "$clang_tidy" ] || clang_tidy=$(tool clang-tidy clang-tidy-14) || exit 2
  # The .cpp files to check: those the build compiles. Fuzz targets are only in the
  # database with -DOSUP_BUILD_FUZZERS=ON (clang only); any other file missing is an error.
  mapfile -t in_db < <(python3 -c 'import json, os, sys
for e in json.load(open(sys.argv[1])):
    print(os.path.normpath(os.path.join(e["directory"], e["file"])))' "$db" | sort -u)
  in_db_text=$(printf '%s\n' "${in_db[@]}")
  files=() missing=()
  for f in "${sources[@]}"; do
    [[ $f == *.cpp ]] || continue
    # From a here-string: `printf | grep -q` fails under pipefail when grep stops reading
    # early and printf gets SIGPIPE (files were reported missing at random).
    if grep -qxF "$repo/$f" <<<"$in_db_text"; then
      files+=("$repo/$f")
    elif [[ $f != */fuzz/* ]]; then
      missing+=("$f")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "lint: not in $db, so clang-tidy cannot check them: ${missing[*]}; add them to a CMake target (or configure with tests on)" >&2
    exit 2
  fi
  # Warnings count in the project's own files: its top-level source directories.
  dirs=$(git ls-files --cached --others --exclude-standard -- '*.cpp' '*.h' | grep / |
    cut -d/ -f1 | sort -u | paste -sd'|')
  header_filter="^$repo/($dirs)/"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  rc=0
  if [ -z "${CLANG_TIDY:-}" ] && command -v run-clang-tidy-14 >/dev/null; then
    # Its positional arguments are regular expressions over the database's file names.
    regexes=()
    for f in "${files[@]}"; do regexes+=("^$(sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$f")\$"); done
    run-clang-tidy-14 -quiet -p "$build" -j "$jobs" -clang-tidy-binary "$clang_tidy" \
      -header-filter "$header_filter" "${regexes[@]}" >"$tmp/out" 2>&1 || rc=$?
  else
    # One output file per source, so parallel runs never interleave their lines.
    printf '%s\n' "${files[@]}" |
      xargs -P "$jobs" -I{} sh -c 'o=$(mktemp -p "$3"); "$0" --quiet -p "$1" --header-filter="$2" "$4" >"$o" 2>&1 || echo "clang-tidy failed on $4" >>"$o"' \
        "$clang_tidy" "$build" "$header_filter" "$tmp" {} || rc=$?
    cat "$tmp"/tmp.* >"$tmp/out" 2>/dev/null || : >"$tmp/out"
  fi
  # FILE:LINE:COL: warning|error: MESSAGE [CHECK], once each (headers repeat across files);
  # run-clang-tidy always asks for colours.
  sed -i -E $'s/\x1b\\[[0-9;]*m//g' "$tmp/out"
  found=$(grep -E "^$repo/[^:]+:[0-9]+:[0-9]+: (warning|error): .*\[[^]]+\]\$" "$tmp/out" |
    sed -E "s|^$repo/||; s|^([^:]+):([0-9]+):[0-9]+: (warning\|error): (.*) \[([^]]+)\]\$|\1:\2: \5: \4|" |
    sort -u -t: -k1,1 -k2,2n -k3 || true)
  if [ -n "$found" ]; then
    echo "lint: clang-tidy: $(grep -c . <<<"$found") warning(s) in project files (.clang-tidy):"
    sed 's/^/  /' <<<"$found"
    status=1
  elif [ "$rc" -ne 0 ] || grep -q "clang-tidy failed on" "$tmp/out"; then
    echo "lint: clang-tidy failed (exit $rc) without a warning in project files; its last lines:"
    grep -v '^[0-9]* warnings* generated\.$' "$tmp/out" | tail -n 5 | sed 's/^/  /'
    status=1
  fi
fi
exit $status
