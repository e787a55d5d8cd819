#!/usr/bin/env bash
# 083_cli_consistency -- every tool's options, help and man page alike (lib/cli.h): --help
# and -h, --version and -V, the unrecognized-option and missing-argument messages and
# exit statuses, no option listed twice, the --opt ARG style, the same sections in the
# same order, the shared repository options with byte-identical text, and a man page
# that lists every option --help lists. No PostgreSQL needed.
T_NAME=083_cli_consistency
. "$(dirname "$0")/lib.sh"
t_init

SRC=$(cd "$(dirname "$0")/../.." && pwd)
MANDIR=$(cd "$RAGSAFE_BIN/.." && pwd)/share/man/man1
HEADS=$(sed -n 's/^#\+ //p' "$SRC/README.md" | tr -d '`')
TOOLS=(ragsafe-archive ragsafe-restore ragsafe-basebackup ragsafe-pitr ragsafe-milvus ragsafe-files ragsafe-receive)

# usage_status TOOL: a usage error's exit status (ragsafe-restore: above 125, so that
# PostgreSQL stops recovery instead of taking it for "not found")
usage_status() { if [ "$1" = ragsafe-restore ]; then echo 128; else echo 2; fi; }

# options FILE: the long options of --help's option lines, one per line, in order
options() { sed -nE 's/^ {2,6}(-[A-Za-z0-9], )?(--[a-z0-9][a-z0-9-]*).*/\2/p' "$1"; }

# repo_block FILE: the "Repository options:" lines up to the blank line that ends them
repo_block() { sed -n '/^Repository options:$/,/^$/p' "$1"; }

for t in "${TOOLS[@]}"; do
    B=$RAGSAFE_BIN/$t
    H=$T/$t.help
    st=$(usage_status "$t")

    "$B" --help >"$H" 2>"$T/$t.help.err"
    hs=$?
    "$B" -h >"$T/$t.h" 2>&1
    is "$t --help and -h: exit 0, usage on stdout (\"Usage: $t ...\"), the same text, stderr empty" \
        "0 0 Usage: $t same 0" \
        "$hs $? $(head -1 "$H" | cut -d' ' -f1-2) $(cmp -s "$H" "$T/$t.h" && echo same) $(wc -c <"$T/$t.help.err")"

    for v in --version -V; do
        out=$("$B" $v 2>&1)
        is "$t $v: exit 0, prints \"$t (ragsafe) VERSION\"" "0 1" \
            "$? $(grep -Ecx "$t \(ragsafe\) [0-9]+\.[0-9]+\.[0-9]+" <<<"$out")"
    done

    # an unknown option, first or after a subcommand, long or short: the same two lines
    for args in "--no-such-option" "-Q" "list --no-such-option"; do
        set -- $args
        "$B" "$@" >"$T/out" 2>"$T/err"
        got=$?
        bad=${args##* }
        printf '%s: error: unrecognized option "%s"\n%s: hint: try "%s --help"\n' \
            "$t" "$bad" "$t" "$t" >"$T/want"
        ok "$t $args: exit $st, exactly the error and the hint on stderr, nothing on stdout" \
            bash -c '[ "$4" = "$5" ] && cmp -s "$1" "$2" && [ ! -s "$3" ]' _ \
            "$T/want" "$T/err" "$T/out" "$got" "$st"
    done
    "$B" --repo >"$T/out" 2>"$T/err"
    got=$?
    printf '%s: error: option "--repo" requires an argument\n%s: hint: try "%s --help"\n' \
        "$t" "$t" "$t" >"$T/want"
    ok "$t --repo without its argument: exit $st, the error and the hint" \
        bash -c '[ "$3" = "$4" ] && cmp -s "$1" "$2"' _ "$T/want" "$T/err" "$got" "$st"

    # the help itself
    options "$H" >"$T/$t.opts"
    is "$t --help: no option listed twice" "" "$(sort "$T/$t.opts" | uniq -d | tr '\n' ' ')"
    is "$t --help: every option line in --opt ARG style (no --opt=ARG)" "" \
        "$(grep -E '^ {2,6}(-[A-Za-z0-9], )?--[a-z0-9-]+=' "$H")"
    ok "$t --help: a description line right after the usage lines" \
        bash -c 'sed "/^Usage:/d; /^  or:/d" "$1" | head -1 | grep -Eq "^[A-Z][^ ].*[a-z.]\$"' _ "$H"
    order=$(grep -nE '^(Usage: |Options:$|Repository options:$|Exit status: |See the README, section )' "$H" |
            sed -E 's/^[0-9]+:(Usage|Options|Repository options|Exit status|See the README).*/\1/' | tr '\n' ',')
    is "$t --help: sections in the common order" \
        "Usage,Options,Repository options,Exit status,See the README," "$order"
    is "$t --help: the -v, -h, -V lines close the Options section" "-v,-h,-V," \
        "$(grep -B4 '^Repository options:$' "$H" | head -3 | sed -E 's/^  (-.), .*/\1/' | tr '\n' ',')"
    section=$(sed -n 's/^See the README, section "\(.*\)"\.$/\1/p' "$H")
    ok "$t --help: the README section it names exists (\"$section\")" \
        bash -c '[ -n "$1" ] && grep -qxF -- "$1" <<<"$2"' _ "$section" "$HEADS"

    # the shared repository options: present, in the same words as ragsafe-archive's
    repo_block "$H" >"$T/$t.repo"
    for o in --repo --s3-endpoint --s3-region --s3-uri-style --cipher-key-file --config; do
        ok "$t --help: $o among the repository options" grep -q -- "^      $o " "$T/$t.repo"
    done
    if [ "$t" != ragsafe-archive ]; then
        ok "$t --help: the repository options byte-identical to ragsafe-archive's" \
            bash -c '[ -s "$1" ] && cmp -s "$1" "$2"' _ "$T/ragsafe-archive.repo" "$T/$t.repo"
    fi

    # the man page, from the same --help
    M=$MANDIR/$t.1
    ok "$t: man page installed ($M)" test -s "$M"
    sed 's/\\-/-/g; s/\\f[BIRP]//g' "$M" 2>/dev/null >"$T/$t.man"
    missing=$(while read -r o; do grep -qF -- "$o" "$T/$t.man" || printf '%s ' "$o"; done <"$T/$t.opts")
    is "$t: the man page mentions every option of --help" "" "$missing"
    ok "$t: the man page names the tool" grep -q "^\.TH \"\?${t^^}\"\? " "$M"
done

t_done
