#!/bin/sh
# gen-man.sh -- a tool's man page from its --help and --version (help2man), so the page
# and --help never drift apart.
#
#   scripts/gen-man.sh BUILD/bin/ragsafe-pitr OUT.1
#
# NAME's line is the description line of --help (the first line after the Usage
# lines); man/ragsafe.h2m (every page) and man/<tool>.h2m (one page, when present) add
# the sections --help has no room for. Run by the Makefile; needs help2man.
set -eu

bin=$1
out=$2
tool=$(basename "$bin")
here=$(cd "$(dirname "$0")/.." && pwd)

command -v help2man >/dev/null 2>&1 || {
    echo "gen-man: error: help2man is not installed" >&2
    echo "gen-man: hint: run scripts/install-deps.sh (Debian package help2man)" >&2
    exit 1
}
desc=$("$bin" --help | sed -n '/^Usage:/d; /^  or:/d; p' | sed -n '1{s/\.$//;p;}')
[ -n "$desc" ] || { echo "gen-man: error: no description line in \"$tool --help\"" >&2; exit 1; }
set -- --include "$here/man/ragsafe.h2m"
[ -f "$here/man/$tool.h2m" ] && set -- "$@" --include "$here/man/$tool.h2m"
help2man --no-info --section 1 --manual "ragsafe manual" --name "$desc" "$@" \
    --output "$out.tmp" "$bin"
mv "$out.tmp" "$out"
