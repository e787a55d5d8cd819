#!/usr/bin/env bash
# bench/bench-dump.sh BUILD -- issue 14's benchmark: one table as of T from a cluster
# whose large database is not the one wanted, by
#     ragsafe-pitr dump --target-time T --dbname app --table documents
# against what a DBA does without it, from the same data:
#     ragsafe-pitr restore --target-time T --start (a full restore, recovery, promote),
#     then pg_dump -t documents;
#     pgbackrest restore --type=time --target=T (process-max 2, zst 3, archive-get),
#     start, wait for the promotion, then pg_dump -t documents.
# Each alternative ends like the dump does: the server stopped (immediate) and its copy
# removed (the dump removes its scratch directory). The methods run alternately,
# BENCH_DUMP_RUNS times each (default 3), page cache dropped before each run; medians
# and spreads (min-max). The cluster: database big (pgbench, scale BENCH_DUMP_SCALE,
# default 50, ~750 MB) and database app (table documents, 10000 rows); archive_command
# archives into both repositories; one base backup by each tool; BENCH_DUMP_LOAD_S
# (default 20) seconds of pgbench after them: the WAL every method replays. Prints markdown on stdout (times, ratios, bytes on disk, and where the dump's
# time goes: its -v "time:" line and the scratch server's "redo done" line), progress on
# stderr. Target: dump <= 0.3x the full restore's time.
# BENCH_DUMP_OLD=DIR (a build directory of an older ragsafe): its ragsafe-pitr dump is
# timed too, alternating with the others on the same repository (before / after).
# RAGSAFE_FORMATS (default "tar chunked"): one ragsafe repository per base backup format
# (ragsafe-basebackup --format F; archive_command archives into each), and for each
# format both its dump and its full restore are timed (dump-F, rs-F). The old build's
# dump reads the first format's repository.
set -u
BUILD=${1:?usage: bench-dump.sh BUILD}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SCALE=${BENCH_DUMP_SCALE:-50}
RUNS=${BENCH_DUMP_RUNS:-3}
LOAD_S=${BENCH_DUMP_LOAD_S:-20}
FORMATS=${RAGSAFE_FORMATS:-tar chunked}

say() { echo "bench-dump: $*" >&2; }
die() { say "error: $*"; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

[ -x "$BUILD/bin/ragsafe-pitr" ] || die "no \"$BUILD/bin/ragsafe-pitr\""
OLD=${BENCH_DUMP_OLD:-}
[ -z "$OLD" ] || [ -x "$OLD/bin/ragsafe-pitr" ] || die "no \"$OLD/bin/ragsafe-pitr\""
command -v pgbackrest >/dev/null || die "pgbackrest is not installed"
formats=()
for f in $FORMATS; do
    case $f in
    tar | chunked) formats+=("$f") ;;
    *) die "RAGSAFE_FORMATS: unknown format \"$f\" (tar, chunked)" ;;
    esac
done
[ "${#formats[@]}" -gt 0 ] || die "RAGSAFE_FORMATS names no format"

T=$(mktemp -d /tmp/ragsafe-bench-dump.XXXXXX)
chmod 0755 "$T"
cleanup() {
    for d in pg full; do
        [ -f "$T/$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$T/$d" -m immediate -w stop >/dev/null 2>&1
    done
    [ -n "${BENCH_DUMP_KEEP:-}" ] && { say "kept $T"; return; }
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$T/bin" "$T/sock" "$T/sock2" "$T/scratch" "$T/out" "$T/pgbr" "$T/pgbr-lock"
cp "$BUILD"/bin/ragsafe-* "$T/bin/"
chmod 0755 "$T/bin"/*
if [ -n "$OLD" ]; then
    mkdir -p "$T/oldbin"
    cp "$OLD"/bin/ragsafe-* "$T/oldbin/"
    chmod 0755 "$T/oldbin"/*
fi
for f in "${formats[@]}"; do mkdir -p "$T/repo-$f"; done
chown -R postgres: "$T"
chown root: "$T/scratch" "$T/out"
PITR=$T/bin/ragsafe-pitr
q() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/sock" -p 5432 -U postgres -d "$1" -c "$2"; }

cat >"$T/pgbackrest.conf" <<CONF
[global]
repo1-path=$T/pgbr
compress-type=zst
compress-level=3
start-fast=y
archive-check=n
process-max=2
log-level-console=warn
log-level-file=off
lock-path=$T/pgbr-lock
[bench]
pg1-path=$T/pg
pg1-socket-path=$T/sock
pg1-port=5432
pg1-user=postgres
CONF
chown postgres: "$T/pgbackrest.conf"
PGBR=(pgbackrest --config="$T/pgbackrest.conf" --stanza=bench)

say "initdb, scale $SCALE"
as_pg "$PGBIN/initdb" -D "$T/pg" -A trust -U postgres --no-sync >/dev/null || die "initdb"
cat >>"$T/pg/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$T/sock'
port = 5432
shared_buffers = 128MB
max_wal_size = 1GB
archive_mode = on
archive_command = '$(for f in "${formats[@]}"; do printf '%s && ' "$T/bin/ragsafe-archive --repo $T/repo-$f %p %f"; done)pgbackrest --config=$T/pgbackrest.conf --stanza=bench archive-push %p'
CONF
as_pg "$PGBIN/pg_ctl" -D "$T/pg" -l "$T/pg.log" -w start >/dev/null || die "start"
q postgres "create database big" && q postgres "create database app" || die "createdb"
as_pg "$PGBIN/pgbench" -h "$T/sock" -p 5432 -U postgres -i -s "$SCALE" -q big >/dev/null 2>&1 || die "pgbench -i"
q app "create table documents (id int primary key, body text);
       insert into documents select g, repeat(md5(g::text), 8) from generate_series(1, 10000) g" || die "app"
as_pg "${PGBR[@]}" stanza-create >"$T/out.log" 2>&1 || { cat "$T/out.log" >&2; die "stanza-create"; }
# the archiver catches up first (pgbench -i's WAL, three archive commands a segment;
# its first tries failed before stanza-create)
wait_archived() {
    local last i
    last=$(q postgres "select pg_walfile_name(pg_current_wal_lsn())")
    q postgres "select pg_switch_wal()" >/dev/null
    for ((i = 0; i < 6000; i++)); do
        [ "$(q postgres "select coalesce(last_archived_wal, '') >= '$last' from pg_stat_archiver")" = t ] && return 0
        sleep 0.1
    done
    die "the archiver did not catch up"
}
wait_archived
say "base backups"
declare -A bb_secs
for f in "${formats[@]}"; do
    b0=$(date +%s%N)
    label=$(as_pg "$T/bin/ragsafe-basebackup" -d "host=$T/sock port=5432 user=postgres dbname=postgres" \
        --repo "$T/repo-$f" -c fast --format "$f" --wal-timeout 600 2>"$T/bb.err") || { cat "$T/bb.err" >&2; die "basebackup --format $f"; }
    bb_secs[$f]=$(awk -v a="$b0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    jq -e '.databases | length > 0' "$T/repo-$f/backups/$label/backup.json" >/dev/null \
        || say "warning: backup $label ($f) records no database list (dump will read the base tar first)"
done
as_pg "${PGBR[@]}" backup --type=full >"$T/out.log" 2>&1 || { cat "$T/out.log" >&2; die "pgbackrest backup"; }
wal0=$(q postgres "select pg_current_wal_lsn()")
as_pg "$PGBIN/pgbench" -h "$T/sock" -p 5432 -U postgres -T "$LOAD_S" -c 2 big >/dev/null 2>&1
WAL_MB=$(q postgres "select round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal0') / 1048576)")
sleep 1.1
TM=$(q app "select clock_timestamp()")
q app "delete from documents where id % 3 = 0"
last=$(q postgres "select pg_walfile_name(pg_current_wal_lsn())")
q postgres "select pg_switch_wal()" >/dev/null
for ((i = 0; i < 600; i++)); do
    [ "$(q postgres "select coalesce(last_archived_wal, '') >= '$last' from pg_stat_archiver")" = t ] && break
    sleep 0.1
done
as_pg "$PGBIN/pg_ctl" -D "$T/pg" -m fast -w stop >/dev/null

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
rows() { "$PGBIN/pg_restore" -f - -a -t documents "$1" | awk '/^COPY/ {c = 1; next} /^\\\./ {c = 0} c' | wc -l; }
# wait_promoted: the server on $T/sock2 left recovery
wait_promoted() {
    local i
    for ((i = 0; i < 36000; i++)); do
        [ "$(as_pg "$PGBIN/psql" -XAtq -h "$T/sock2" -U postgres -d postgres -c "select pg_is_in_recovery()" 2>/dev/null)" = f ] && return 0
        sleep 0.05
    done
    die "the restored server did not promote"
}
declare -A times
# run_one NAME: dump-FORMAT | rs-FORMAT | pgbr | old; its wall time appended to times[NAME]
declare -A full_kb full_base_kb
run_one() {
    local name=$1 t0 t1 n fmt=${1#*-}
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    rm -f "$T/out/$name.dump"
    t0=$(now_ns)
    case $name in
    old)
        "$T/oldbin/ragsafe-pitr" dump --repo "$T/repo-${formats[0]}" --target-time "$TM" --dbname app --table documents -v \
            --file "$T/out/old.dump" --scratch "$T/scratch" >"$T/old.out" 2>"$T/old.err" \
            || { cat "$T/old.err" >&2; die "old dump"; } ;;
    dump-*)
        "$PITR" dump --repo "$T/repo-$fmt" --target-time "$TM" --dbname app --table documents -v \
            --file "$T/out/$name.dump" --scratch "$T/scratch" >"$T/$name.out" 2>"$T/$name.err" \
            || { cat "$T/$name.err" >&2; die "$name"; } ;;
    rs-*)
        "$PITR" restore --repo "$T/repo-$fmt" --pgdata "$T/full" --target-time "$TM" --owner postgres --start \
            --set "unix_socket_directories=$T/sock2" --set "listen_addresses=" >/dev/null 2>"$T/$name.err" \
            || { cat "$T/$name.err" >&2; die "$name"; }
        "$PGBIN/pg_dump" -h "$T/sock2" -p 5432 -U postgres -d app -t documents -Fc -f "$T/out/$name.dump" \
            || die "pg_dump" ;;
    pgbr)
        mkdir -m 0700 "$T/full" && chown postgres: "$T/full"
        as_pg "${PGBR[@]}" --pg1-path="$T/full" restore --type=time --target="$TM" \
            --target-action=promote >"$T/pgbr.out" 2>&1 || { cat "$T/pgbr.out" >&2; die "pgbackrest restore"; }
        rm -f "$T/full"/.s.PGSQL.*
        as_pg "$PGBIN/pg_ctl" -D "$T/full" -l "$T/full.log" -W \
            -o "-c unix_socket_directories=$T/sock2 -c listen_addresses= -c archive_mode=off" start >/dev/null \
            || die "the pgBackRest-restored server did not start"
        wait_promoted
        "$PGBIN/pg_dump" -h "$T/sock2" -p 5432 -U postgres -d app -t documents -Fc -f "$T/out/pgbr.dump" \
            || die "pg_dump" ;;
    esac
    if [ "${name%%-*}" = rs ] || [ "$name" = pgbr ]; then
        [ "${name%%-*}" = rs ] && { full_kb[$fmt]=$(du -sk "$T/full" | cut -f1); full_base_kb[$fmt]=$(du -sk "$T/full/base" | cut -f1); }
        as_pg "$PGBIN/pg_ctl" -D "$T/full" -m immediate -w stop >/dev/null
        rm -rf "$T/full"
    fi
    t1=$(now_ns)
    n=$(rows "$T/out/$name.dump")
    [ "$n" = 10000 ] || die "$name: $n rows of documents in the dump, want 10000 (as of T, before the DELETE)"
    times[$name]="${times[$name]:-} $(secs "$t0" "$t1")"
    say "$name run: $(secs "$t0" "$t1") s"
    [ "${name%%-*}" = dump ] && { grep -E "time:|redo done|extracted|hollow|chunk|database list" "$T/$name.err" | sed 's/^/bench-dump:   /' >&2; cp "$T/$name.err" "$T/$name-last.err"; }
}
say "load average before the runs: $(cat /proc/loadavg)"
for ((run = 1; run <= RUNS; run++)); do
    for f in "${formats[@]}"; do
        run_one "dump-$f"
        run_one "rs-$f"
    done
    run_one pgbr
    [ -z "$OLD" ] || run_one old
done
LOADAVG=$(cat /proc/loadavg)
say "load average after the runs: $LOADAVG"
# each dump's scratch size: one more run with --keep-scratch (not timed)
declare -A dump_kb dump_base_kb
for f in "${formats[@]}"; do
    "$PITR" dump --repo "$T/repo-$f" --target-time "$TM" --dbname app --table documents \
        --file "$T/out/keep.dump" --scratch "$T/scratch" --keep-scratch >/dev/null 2>&1 || die "dump --keep-scratch ($f)"
    dump_kb[$f]=$(du -sk "$T"/scratch/ragsafe-dump-* | cut -f1)
    dump_base_kb[$f]=$(du -sk "$T"/scratch/ragsafe-dump-*/pgdata/base | cut -f1)
    rm -rf "$T"/scratch/ragsafe-dump-* "$T/out/keep.dump"
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
spread() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk 'NR == 1 {a = $1} {b = $1} END {printf "%.1f-%.1f", a, b}'; }
mp=$(median "${times[pgbr]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "### ragsafe-pitr dump: one table as of T, pgbench scale $SCALE in another database, $(nproc) CPUs, $RUNS runs each (alternating)"
echo
echo "WAL after the backups: $WAL_MB MiB ($LOAD_S s of pgbench -c 2 in big)."
echo "Load average at the end: $LOADAVG. Base backups took: $(for f in "${formats[@]}"; do printf '%s %s s; ' "$f" "${bb_secs[$f]}"; done)pgBackRest's is not timed."
echo
echo "| method | median s | spread s | disk KiB (all) | base/ KiB | dump / this |"
echo "|---|---:|---:|---:|---:|---|"
for f in "${formats[@]}"; do
    md=$(median "${times[dump-$f]}"); mr=$(median "${times[rs-$f]}")
    printf '| ragsafe-pitr dump --table documents (%s backup) | %.1f | %s | %s | %s | 1.00 |\n' "$f" "$md" \
        "$(spread "${times[dump-$f]}")" "${dump_kb[$f]}" "${dump_base_kb[$f]}"
    printf '| ragsafe-pitr restore --start + pg_dump -t (%s backup) | %.1f | %s | %s | %s | %s |\n' "$f" "$mr" \
        "$(spread "${times[rs-$f]}")" "${full_kb[$f]}" "${full_base_kb[$f]}" "$(ratio "$md" "$mr")"
done
ratios=""
for f in "${formats[@]}"; do
    ratios="$ratios$f dump $(ratio "$(median "${times[dump-$f]}")" "$mp"); "
done
printf '| pgbackrest restore --type=time (process-max 2) + start + pg_dump -t | %.1f | %s | | | %s |\n' "$mp" "$(spread "${times[pgbr]}")" "${ratios%; }"
[ -z "$OLD" ] || printf '| ragsafe-pitr dump of BENCH_DUMP_OLD (%s, %s backup) | %.1f | %s | | | %s |\n' "$OLD" "${formats[0]}" \
    "$(median "${times[old]}")" "$(spread "${times[old]}")" "$(ratio "$(median "${times[dump-${formats[0]}]}")" "$(median "${times[old]}")")"
echo
echo "Every run (s):"
echo
for k in "${!times[@]}"; do echo "- $k:${times[$k]}"; done | sort
for f in "${formats[@]}"; do
    echo
    echo "Where the $f dump's time went (last run, ragsafe-pitr dump -v):"
    echo
    echo '```'
    grep -E "database list|extracted|hollow|chunk|spooled|redo done|plan made|time:" "$T/dump-$f-last.err" | sed 's/^ragsafe-pitr: info: //'
    echo '```'
done
if [ -n "$OLD" ]; then
    echo
    echo "The older dump (last run, -v):"
    echo
    echo '```'
    grep -E "pg_database read|extracted|hollow|plan made|fsync'd|time:" "$T/old.err" | sed 's/^ragsafe-pitr: info: //'
    echo '```'
fi
