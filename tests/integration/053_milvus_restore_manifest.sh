#!/usr/bin/env bash
# 053_milvus_restore_manifest -- ragsafe-milvus reads the manifest's entry lists with a
# reader of its own (issue 16: jansson's tree of 22,000 entries cost 150-220 ms before a
# restore could start); it must accept exactly what jansson accepted.
#
# Covers: the same manifest written another way (indented, members in another order,
# "\/" and "\u" escapes, members we do not know, nested) restores the same tree; JSON
# that jansson refuses (a duplicate key -- "path" twice, the second one "../.." --, an
# escaped NUL, bad UTF-8, a lone surrogate, text after the object, an integer beyond
# int64, a bad literal, a cut-off manifest) is refused before anything is written, and so
# is a ".." spelled with \u escapes; a
# deep and a wide tree and a non-ASCII name come back whole.
source "$(dirname "$0")/lib.sh"
t_init

milvus_env || exit 1
mget() { python3 "$FAKE" manifest-get "$R/milvus/snapshots/$1.json.zst"; }
mput() { python3 "$FAKE" manifest-put "$R/milvus/snapshots/$1.json.zst"; }
# listing DIR: every entry's type, mode and path, regular files' size and SHA-256
listing() {
    (cd "$1" && find . -mindepth 1 -printf '%y %m %p\n' | LC_ALL=C sort &&
        find . -type f -printf '%s %p\n' | LC_ALL=C sort -k2 &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

python3 "$FAKE" gen "$V" --mb 8 --seed 4
# a deep chain (a file at every level), a wide directory, a name that is not ASCII
d="$V/milvus/deep"
for i in $(seq 1 40); do d="$d/d$i"; mkdir -p "$d"; echo "level $i" >"$d/f"; done
for i in $(seq 1 300); do mkdir -p "$V/milvus/wide/w$i"; echo "$i" >"$V/milvus/wide/w$i/x"; done
printf 'snow\n' >"$V/milvus/na"$'\xc3\xaf'"ve-"$'\xe2\x98\x83'".txt"
chmod 0750 "$V/milvus/deep/d1/d2"
"$M" snapshot --repo "$R" "${VOLS[@]}" --assume-stopped --label base >/dev/null
is "snapshot base" 0 $?
for v in etcd minio milvus; do listing "$V/$v"; done >"$T/list.src"

# --- the whole tree back ----------------------------------------------------------------
F="$T/r1"
"$M" restore base --repo "$R" $(to "$F") --assume-stopped >/dev/null 2>"$T/r1.err"
is "restore of base" 0 $?
for v in etcd minio milvus; do listing "$F/$v"; done >"$T/list.r1"
ok "deep, wide and non-ASCII entries restored as they were (types, modes, sizes, SHA-256)" \
    cmp -s "$T/list.src" "$T/list.r1"
ok "40 levels deep" test -f "$F/milvus/deep/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14/d15/d16/d17/d18/d19/d20/d21/d22/d23/d24/d25/d26/d27/d28/d29/d30/d31/d32/d33/d34/d35/d36/d37/d38/d39/d40/f"
is "a directory's mode restored after what is in it" 750 "$(stat -c %a "$F/milvus/deep/d1/d2")"

# --- the same manifest, written another way -----------------------------------------------
mget base | python3 -c '
import json, sys
m = json.load(sys.stdin)
m["label"] = "respelled"
m["zz_unknown"] = {"a": [1, 2.5, {"b": None}], "c": True}
for v in m["volumes"]:
    v["extra"] = [[], {}]
    ents = []
    for e in v["entries"]:
        e = dict(reversed(list(e.items())))   # members in another order
        e["unknown"] = {"nested": [False, "x\u00e9"], "n": -1.5e3}
        ents.append(e)
    v["entries"] = ents
text = json.dumps(m, indent=2, ensure_ascii=True)   # non-ASCII as \u escapes
text = text.replace("/", "\\/")                      # and every "/" as "\/"
sys.stdout.write(text)' | mput respelled
F="$T/r3"
"$M" restore respelled --repo "$R" $(to "$F") --assume-stopped >/dev/null 2>"$T/r3.err"
is "restore of the respelled manifest" 0 $?
for v in etcd minio milvus; do listing "$F/$v"; done >"$T/list.r3"
ok "respelled manifest restores the same tree" cmp -s "$T/list.src" "$T/list.r3"

# --- JSON jansson refuses: refused, nothing written -------------------------------------
# hostile LABEL PYTHON: python edits `text` (the manifest as compact JSON, label LABEL)
hostile() {
    mget base | python3 -c '
import json, sys
m = json.load(sys.stdin)
m["label"] = sys.argv[1]
text = json.dumps(m, separators=(",", ":"))
exec(sys.argv[2])
sys.stdout.buffer.write(text if isinstance(text, bytes) else text.encode())' "$1" "$2" | mput "$1"
}
first_dir=$(mget base | python3 -c '
import json, sys
m = json.load(sys.stdin)
print([e["path"] for e in m["volumes"][2]["entries"] if e["type"] == "dir"][0])')
# "path" twice: a reader keeping the first would check one path and write the other
hostile duppath 'text = text.replace("{\"path\":\"'"$first_dir"'\"", "{\"path\":\"'"$first_dir"'\",\"path\":\"../../escaped\"", 1)'
hostile dupkey 'text = text.replace("\"type\":\"dir\"", "\"type\":\"dir\",\"type\":\"dir\"", 1)'
hostile nul 'text = text.replace("\"path\":\"'"$first_dir"'\"", "\"path\":\"'"$first_dir"'\\u0000x\"", 1)'
hostile badutf8 'text = text.encode().replace(b"\"path\":\"'"$first_dir"'\"", b"\"path\":\"'"$first_dir"'\xff\"", 1)'
hostile surrogate 'text = text.replace("\"path\":\"'"$first_dir"'\"", "\"path\":\"'"$first_dir"'\\ud800\"", 1)'
hostile trailing 'text = text + " {}"'
hostile bigint 'import re; text = re.sub(r"\"mode\":[0-9]+", "\"mode\":99999999999999999999", text, count=1)'
hostile literal 'text = text.replace("\"uid\":0", "\"uid\":nul", 1)'
hostile cut 'text = text[: len(text) * 2 // 3]'
for l in duppath dupkey nul badutf8 surrogate trailing bigint literal cut; do
    F="$T/h.$l"
    "$M" restore "$l" --repo "$R" $(to "$F") --assume-stopped >/dev/null 2>"$T/h.err"
    is "manifest '$l' refused (exit 1)" 1 $?
    ok "manifest '$l': nothing written" test ! -e "$F"
    ok "manifest '$l': the refusal says it does not parse" grep -q 'could not parse snapshot manifest' "$T/h.err"
done
# ".." spelled with \u escapes: decoded before the path check, so refused as ".."
hostile escdots 'text = text.replace("{\"path\":\"'"$first_dir"'\"", "{\"path\":\"\\u002e\\u002e/\\u002e\\u002e/escaped\"", 1)'
F="$T/h.escdots"
"$M" restore escdots --repo "$R" $(to "$F") --assume-stopped >/dev/null 2>"$T/h.err"
is "manifest with an escaped '..' refused (exit 1)" 1 $?
ok "escaped '..': nothing written" test ! -e "$F"
ok "escaped '..': the refusal names the decoded path" grep -q 'unsafe path "../../escaped"' "$T/h.err"
ok "nothing escaped" test ! -e "$T/escaped"

t_done
