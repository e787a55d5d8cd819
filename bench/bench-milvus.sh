#!/usr/bin/env bash
# bench/bench-milvus.sh BUILD -- issue 5's benchmark: ragsafe-milvus snapshots against
# the runbook's `tar czf` of the three Milvus volumes, `tar -I zstd`, and `cp -a` (the
# floor for a full copy); then (issue 16) restores: `ragsafe-milvus restore` of the
# first snapshot against `tar xzf` of the runbook's archive, `tar -I zstd -xf`, and
# `cp -a` of the volumes, each into an empty directory.
#
# Data: synthetic Milvus-shaped volumes (tests/integration/fake_milvus.py gen; Milvus
# itself cannot run here): MILVUS_BENCH_MB (default 300) MB of etcd db/WAL, MinIO
# object dirs (xl.meta + part.1, float32-like vectors, int64 ids) and RocksMQ files.
# First snapshot: every method copies everything. Second snapshot: after +2 % new
# objects (plus the etcd db rewritten in place, the WAL appended, a new .sst): tar and
# cp have no incremental mode and copy everything again; ragsafe-milvus stores only
# content it has not seen.
#
# Every method is timed to durable output: its command then `sync` (ragsafe-milvus
# syncs the repository itself before it writes the manifest). Page cache warm for all
# (the volumes are read once first). Each figure is the median of MILVUS_BENCH_ROUNDS
# (default 3) interleaved rounds: the machine is shared, so medians of interleaved runs
# are what can be compared. Prints a markdown table on stdout; progress on stderr.
#
# Restores: MILVUS_BENCH_RESTORE_ROUNDS (default 3) rounds, the order of the four tools
# rotating each round; each run starts with `sync` and the page cache dropped (when
# /proc/sys/vm/drop_caches is writable: archives, repository and source are read cold)
# and ends with `sync` (durable output). A round's outputs are deleted together at its
# end (set aside, deleted at exit). Each tool's first output is checked against the source (file list, types,
# sizes, SHA-256 of every file). The load average is recorded before every restore.
# Then the second snapshot's restore (after the +2 %), timed and checked the same way.
# MILVUS_BENCH_BEFORE=BUILD2 adds BUILD2's ragsafe-milvus restore (an older build, the
# "before") as a fifth tool in the rotation, restoring the same repository: both builds
# alternate within every round, under the same load.
set -u
BUILD=${1:?usage: bench-milvus.sh BUILD}
BUILD=$(cd "$BUILD" && pwd) || exit 1
M="$BUILD/bin/ragsafe-milvus"
top=$(cd "$(dirname "$0")/.." && pwd)
FAKE="$top/tests/integration/fake_milvus.py"
MB=${MILVUS_BENCH_MB:-300}
ROUNDS=${MILVUS_BENCH_ROUNDS:-3}
JOBS=${MILVUS_BENCH_JOBS:-}
BEFORE=${MILVUS_BENCH_BEFORE:+$(cd "$MILVUS_BENCH_BEFORE" && pwd)/bin/ragsafe-milvus}
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || { echo "bench-milvus: error: no \"$BEFORE\"" >&2; exit 1; }

[ -x "$M" ] || { echo "bench-milvus: error: no \"$M\"" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/ragsafe-bench-milvus.XXXXXX")
trap 'rm -rf "$W"' EXIT
V="$W/volumes"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# bytes in regular files (what each method stores; directories are file-system overhead)
size_of() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-1}" 'BEGIN { if (b > 0) printf "%.*f", d, a / b; else print "inf" }'; }

echo "bench-milvus: generating $MB MB of Milvus-shaped volumes" >&2
python3 "$FAKE" gen "$V" --mb "$MB" --seed 5 || exit 1
files=$(find "$V" -type f | wc -l)
total=$(find "$V" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
find "$V" -type f -exec cat {} + >/dev/null # warm the page cache for every method
sync

# run NAME OUT CMD...: time CMD + sync, append seconds to $W/t.NAME, size of OUT to $W/s.NAME
run() {
    local name=$1 out=$2 t0 t1
    shift 2
    sync
    t0=$(now)
    "$@" || { echo "bench-milvus: error: $name failed" >&2; exit 1; }
    sync
    t1=$(now)
    elapsed "$t0" "$t1" >>"$W/t.$name"
    size_of "$out" >>"$W/s.$name"
}

snap() { # REPO LABEL
    "$M" snapshot --repo "$1" --volume "etcd=$V/etcd" --volume "minio=$V/minio" \
        --volume "milvus=$V/milvus" --assume-stopped --label "$2" --json \
        ${JOBS:+--jobs "$JOBS"} >"$W/last.json"
}

RROUNDS=${MILVUS_BENCH_RESTORE_ROUNDS:-3}
drop_cache() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
# listing DIR: every entry's type and path, regular files' size and SHA-256
listing() {
    (cd "$1" && find . -mindepth 1 -printf '%y %p\n' | LC_ALL=C sort &&
        find . -type f -printf '%s %p\n' | LC_ALL=C sort -k2 &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}
# rrun NAME OUTDIR CMD...: one restore: cold cache, load recorded, CMD + sync timed;
# the first output of each NAME checked against $W/list.src
rrun() {
    local name=$1 out=$2 t0 t1
    shift 2
    drop_cache
    cut -d' ' -f1 /proc/loadavg >>"$W/load.restore"
    t0=$(now)
    "$@" || { echo "bench-milvus: error: $name failed" >&2; exit 1; }
    sync
    t1=$(now)
    elapsed "$t0" "$t1" >>"$W/t.$name"
    if [ ! -e "$W/checked.$name" ]; then
        listing "$out" >"$W/list.$name"
        cmp -s "$W/list.src" "$W/list.$name" ||
            { echo "bench-milvus: error: $name restored another tree than the source:" >&2
              diff "$W/list.src" "$W/list.$name" | head -5 >&2; exit 1; }
        touch "$W/checked.$name"
    fi
}
restore_rs() { # LABEL DIR [BINARY]
    "${3:-$M}" restore "$1" --repo "$W/repo1" --volume "etcd=$2/etcd" --volume "minio=$2/minio" \
        --volume "milvus=$2/milvus" ${JOBS:+--jobs "$JOBS"} >/dev/null
}
restore_one() { # TOOL
    local d="$W/rst.$1"
    mkdir -p "$d"
    case $1 in
    xgz) (cd "$d" && rrun xgz "$d" tar xzf "$W/in.tgz") || exit 1 ;;
    xzst) (cd "$d" && rrun xzst "$d" tar -I zstd -xf "$W/in.tzst") || exit 1 ;;
    cpa) rrun cpa "$d" cp -a "$V/etcd" "$V/minio" "$V/milvus" "$d/" ;;
    rs) rrun rs "$d" restore_rs first "$d" ;;
    rsb) rrun rsb "$d" restore_rs first "$d" "$BEFORE" ;;
    esac
}
round_row() { # ROUND
    local g z c s
    g=$(sed -n "$1p" "$W/t.xgz"); z=$(sed -n "$1p" "$W/t.xzst")
    c=$(sed -n "$1p" "$W/t.cpa"); s=$(sed -n "$1p" "$W/t.rs")
    printf '| %s | %s | %s s | %s s | %s s | %s s | %s× |%s\n' "$1" "$(sed -n "$1p" "$W/order")" \
        "$g" "$z" "$c" "$s" "$(ratio "$g" "$s")" \
        "${BEFORE:+ $(sed -n "$1p" "$W/t.rsb") s |}"
}

cd "$V" || exit 1
for r in $(seq "$ROUNDS"); do
    echo "bench-milvus: first snapshot, round $r" >&2
    rm -f "$W/out.tgz" "$W/out.tzst"; rm -rf "$W/cp"
    run tgz1 "$W/out.tgz" tar czf "$W/out.tgz" etcd minio milvus
    rm -f "$W/out.tgz"
    run tzst1 "$W/out.tzst" tar -I zstd -cf "$W/out.tzst" etcd minio milvus
    rm -f "$W/out.tzst"
    run cp1 "$W/cp" cp -a etcd minio milvus "$(mkdir -p "$W/cp" && echo "$W/cp")"
    mkdir -p "$W/repo$r"   # no tool creates a repository's root
    run rs1 "$W/repo$r" snap "$W/repo$r" first
    # delete cp's 20 000 inodes only now: ext4 makes creating inodes slow for ~30 s
    # after many were freed (recently_deleted()), which would tax whoever runs next
    rm -rf "$W/cp"
done

echo "bench-milvus: restores of the first snapshot ($RROUNDS rounds)" >&2
listing "$V" >"$W/list.src"
tar czf "$W/in.tgz" etcd minio milvus || exit 1
tar -I zstd -cf "$W/in.tzst" etcd minio milvus || exit 1
for r in $(seq "$RROUNDS"); do
    # rotate the order: each tool goes first once in four (five) rounds
    set -- xgz xzst cpa rs ${BEFORE:+rsb}
    for _ in $(seq $(( (r - 1) % $# ))); do x=$1; shift; set -- "$@" "$x"; done
    echo "$*" >>"$W/order"
    for tool in "$@"; do
        echo "bench-milvus: restore round $r: $tool" >&2
        restore_one "$tool"
    done
    # deleting 90 000 inodes takes minutes here (ext4 mounted with discard) and slows
    # the next creations: set the outputs aside, they go with $W at exit
    mkdir -p "$W/trash/$r" && mv "$W"/rst.* "$W/trash/$r/"
done
rm -f "$W/in.tgz" "$W/in.tzst"

echo "bench-milvus: adding 2 % new objects" >&2
python3 "$FAKE" grow "$V" --percent 2 --seed 6 >/dev/null || exit 1
sync
for r in $(seq "$ROUNDS"); do
    echo "bench-milvus: second snapshot, round $r" >&2
    run tgz2 "$W/out.tgz" tar czf "$W/out.tgz" etcd minio milvus
    rm -f "$W/out.tgz"
    run tzst2 "$W/out.tzst" tar -I zstd -cf "$W/out.tzst" etcd minio milvus
    rm -f "$W/out.tzst"
    run cp2 "$W/cp" cp -a etcd minio milvus "$(mkdir -p "$W/cp" && echo "$W/cp")"
    before=$(size_of "$W/repo$r")
    run rs2 "$W/repo$r" snap "$W/repo$r" second
    echo $(( $(size_of "$W/repo$r") - before )) >>"$W/new.rs2"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["new_bytes"])' "$W/last.json" >>"$W/logical.rs2"
    rm -rf "$W/cp"
done
echo "bench-milvus: restores of the second snapshot" >&2
listing "$V" >"$W/list.src"
for r in $(seq "$RROUNDS"); do
    # rr2, not rs2: t.rs2 holds the second snapshots' times
    mkdir -p "$W/rst.rr2"
    rrun rr2 "$W/rst.rr2" restore_rs second "$W/rst.rr2"
    mv "$W/rst.rr2" "$W/trash/rr2.$r"
done
cd "$top" || exit 1

T() { median <"$W/t.$1"; }
S() { median <"$W/s.$1"; }
rs_new=$(median <"$W/new.rs2")
rs_logical=$(median <"$W/logical.rs2")

cat <<EOF
### ragsafe-milvus snapshot vs the runbook ($(mib "$total") in $files files, $ROUNDS rounds, medians, $(nproc) CPUs)

| method | first: time | first: size | second (+2 %): time | second: new bytes |
|---|---:|---:|---:|---:|
| \`tar czf\` (runbook) | $(T tgz1) s | $(mib "$(S tgz1)") | $(T tgz2) s | $(mib "$(S tgz2)") |
| \`tar -I zstd\` | $(T tzst1) s | $(mib "$(S tzst1)") | $(T tzst2) s | $(mib "$(S tzst2)") |
| \`cp -a\` | $(T cp1) s | $(mib "$(S cp1)") | $(T cp2) s | $(mib "$(S cp2)") |
| **ragsafe-milvus** | $(T rs1) s | $(mib "$(S rs1)") | $(T rs2) s | $(mib "$rs_new") stored ($(mib "$rs_logical") before compression) |

| target | measured | met |
|---|---:|:-:|
| first snapshot ≥ 4× faster than \`tar czf\` | $(ratio "$(T tgz1)" "$(T rs1)")× | $(awk -v a="$(T tgz1)" -v b="$(T rs1)" 'BEGIN { print (a >= 4 * b) ? "yes" : "no" }') |
| first snapshot within 1.5× of \`cp -a\` | $(ratio "$(T rs1)" "$(T cp1)")× | $(awk -v a="$(T rs1)" -v b="$(T cp1)" 'BEGIN { print (a <= 1.5 * b) ? "yes" : "no" }') |
| stored no larger than \`tar -I zstd\` | $(ratio "$(S rs1)" "$(S tzst1)" 3)× | $(awk -v a="$(S rs1)" -v b="$(S tzst1)" 'BEGIN { print (a <= b) ? "yes" : "no" }') |
| second snapshot ≥ 20× faster than \`tar czf\` | $(ratio "$(T tgz2)" "$(T rs2)")× | $(awk -v a="$(T tgz2)" -v b="$(T rs2)" 'BEGIN { print (a >= 20 * b) ? "yes" : "no" }') |
| second snapshot ≥ 20× fewer new bytes than \`tar czf\` | $(ratio "$(S tgz2)" "$rs_new")× | $(awk -v a="$(S tgz2)" -v b="$rs_new" 'BEGIN { print (a >= 20 * b) ? "yes" : "no" }') |

Every time includes a final \`sync\` (durable output for every method). Sizes are the
bytes of the regular files each method writes (ragsafe-milvus: objects + manifest).
Second-snapshot new bytes for ragsafe-milvus are the repository's growth (new objects,
the new manifest); in parentheses the uncompressed size of the new content (new
objects plus the changed 512 KiB chunks of files changed in place: etcd db, WAL).
EOF

range() { sort -g "$W/t.$1" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }
cold="page cache dropped before each run"
[ -w /proc/sys/vm/drop_caches ] || cold="page cache warm (dropping it is not permitted here)"
cat <<EOF

### ragsafe-milvus restore vs the runbook ($(mib "$total") in $files files, $RROUNDS rounds, $(nproc) CPUs)

Each run into an empty directory, $cold, timed to a final \`sync\`; every
tool's output checked once against the source (file list, sizes, SHA-256 of every file).
ragsafe-milvus: \`ragsafe-milvus restore first --repo R --volume etcd=D/etcd --volume minio=D/minio --volume milvus=D/milvus\`.
1-minute load average before each restore (in run order): $(tr '\n' ' ' <"$W/load.restore")

| round | order | \`tar xzf\` (runbook) | \`tar -I zstd -xf\` | \`cp -a\` | **ragsafe-milvus restore** | restore vs \`tar xzf\` |${BEFORE:+ before: $BEFORE |}
|---|---|---:|---:|---:|---:|---:|${BEFORE:+---:|}
$(for r in $(seq "$RROUNDS"); do round_row "$r"; done)
| median (range) | | $(T xgz) s ($(range xgz)) | $(T xzst) s ($(range xzst)) | $(T cpa) s ($(range cpa)) | $(T rs) s ($(range rs)) | $(ratio "$(T xgz)" "$(T rs)")× |${BEFORE:+ $(T rsb) s ($(range rsb)) |}

| target | measured | met |
|---|---:|:-:|
| restore ≥ 4× faster than \`tar xzf\` | $(ratio "$(T xgz)" "$(T rs)")× | $(awk -v a="$(T xgz)" -v b="$(T rs)" 'BEGIN { print (a >= 4 * b) ? "yes" : "no" }') |
| restore vs \`tar -I zstd -xf\` | $(ratio "$(T xzst)" "$(T rs)")× faster | |
| restore vs \`cp -a\` of the volumes | $(ratio "$(T cpa)" "$(T rs)")× faster | |

Second snapshot (+2 %) restored in $(T rr2) s (median, range $(range rr2)), checked against the grown volumes.
EOF
