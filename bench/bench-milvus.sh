#!/usr/bin/env bash
# bench/bench-milvus.sh BUILD -- issue 5's benchmark: ragsafe-milvus snapshots against
# the runbook's `tar czf` of the three Milvus volumes, `tar -I zstd`, and `cp -a` (the
# floor for a full copy).
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
set -u
BUILD=${1:?usage: bench-milvus.sh BUILD}
BUILD=$(cd "$BUILD" && pwd) || exit 1
M="$BUILD/bin/ragsafe-milvus"
top=$(cd "$(dirname "$0")/.." && pwd)
FAKE="$top/tests/integration/fake_milvus.py"
MB=${MILVUS_BENCH_MB:-300}
ROUNDS=${MILVUS_BENCH_ROUNDS:-3}
JOBS=${MILVUS_BENCH_JOBS:-}

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
