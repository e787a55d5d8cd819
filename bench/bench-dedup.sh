#!/usr/bin/env bash
# bench/bench-dedup.sh BUILD -- issue 15's benchmark: what a second base backup stores
# after a day's (compressed) writes, per tool.
#
# One cluster: pgbench -i -s SCALE plus a RAG-shaped schema (documents: text + jsonb
# metadata; search_history: append only; users: occasional updates). Two workloads:
#   1. RAG: inserts into documents (2 % more rows) and search_history (5 % more), a few
#      updates of users (1 %) and of documents' metadata (0.2 %).
#   2. pgbench -N (simple updates) with enough transactions to touch about 2 % of
#      pgbench_accounts' pages (random rows: -P ln(0.98) transactions for P pages).
# For each workload: a first backup by every tool, the workload, a second backup by
# every tool (same moment for all, one after the other). Tools:
#   ragsafe tar      ragsafe-basebackup [--format tar]   (a full base.tar.zst each time)
#   ragsafe chunked  ragsafe-basebackup --format chunked (content-addressed chunks; run
#                    only when --help lists it, else a note says it was skipped)
#   pgBackRest       backup --type=full, then --type=incr (2.45: file-level incremental;
#                    block incremental came in 2.46), zst level 3, process-max 2
#   pg_basebackup    -Ft -Z client-zstd:3 -X none (a full copy each time)
# Reported per tool and workload: the bytes and objects (files) each backup added to
# the tool's store (WAL excluded), the second backup's new bytes as a fraction of a full
# backup (the tool's first backup into its empty store: for ragsafe chunked the first
# backup of workload 1; workload 2's first chunked backup is itself deduplicated), and
# the second backup's wall time. After the second backups, BENCH_DEDUP_ROUNDS - 1 more
# pairs of ragsafe tar and chunked backups (order alternating) give the backup time a
# median and a range (new bytes and objects are the first pair's).
#
# Restore (after the workloads in BENCH_DEDUP_RESTORE, default "2"): the second
# backups restored into an empty directory, BENCH_DEDUP_ROUNDS rounds, the tools in
# turn and the order rotating each round:
#   ragsafe-pitr restore --target-lsn <its stop LSN> --jobs 1, then --jobs 2, of the
#   chunked backup; the same of the tar backup (--jobs does not apply to a tar);
#   pgbackrest restore --process-max=2 of the incremental (the latest set).
# Each restore is timed whole (the command's wall time); the directory is removed
# between runs, untimed. Medians, ranges, and each tool's ratio to pgBackRest per round.
#
# Environment: BENCH_DEDUP_SCALE (default 50, ~1 GB of database as the issue asks; 5 for
# a quick run), RAGSAFE_FORMATS (default "tar chunked"), BENCH_DEDUP_ROUNDS (default 3),
# BENCH_DEDUP_RESTORE (default "2"; "" for none), BENCH_DEDUP_KEEP=1 keeps the temp dir.
# Prints markdown tables on stdout (with the load average at the start and the end),
# progress on stderr.
set -u
BUILD=${1:?usage: bench-dedup.sh BUILD}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SCALE=${BENCH_DEDUP_SCALE:-50}
FORMATS=${RAGSAFE_FORMATS:-tar chunked}
ROUNDS=${BENCH_DEDUP_ROUNDS:-3}
RESTORE_AFTER=${BENCH_DEDUP_RESTORE-2}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

say() { echo "bench-dedup: $*" >&2; }
die() { say "error: $*"; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }
source "$(dirname "$0")/rag_workload.sh"

command -v pgbackrest >/dev/null || die "pgbackrest is not installed (scripts/install-deps.sh)"
for b in ragsafe-basebackup ragsafe-archive ragsafe-pitr; do
    [ -x "$BUILD/bin/$b" ] || die "no \"$BUILD/bin/$b\""
done

# which ragsafe formats run: "tar" always (today's format: --format tar when the
# option exists), "chunked" only when ragsafe-basebackup offers it
help=$("$BUILD/bin/ragsafe-basebackup" --help 2>&1)
have_format=0
grep -q -- '--format' <<<"$help" && have_format=1
formats=()
notes=()
for f in $FORMATS; do
    case $f in
    tar) formats+=(tar) ;;
    chunked)
        if [ "$have_format" = 1 ] && grep -q chunked <<<"$help"; then
            formats+=(chunked)
        else
            notes+=("ragsafe chunked: skipped, \`ragsafe-basebackup --help\` does not list \`--format chunked\` in this build")
        fi ;;
    *) die "RAGSAFE_FORMATS: unknown format \"$f\" (tar, chunked)" ;;
    esac
done

T=$(mktemp -d /tmp/ragsafe-bench-dedup.XXXXXX)
chmod 0755 "$T"
cleanup() {
    [ -f "$T/pg/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$T/pg" -m immediate -w stop >/dev/null 2>&1
    [ -n "${BENCH_DEDUP_KEEP:-}" ] && { say "kept $T"; return; }
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$T/bin" "$T/sock" "$T/repo" "$T/pgbr" "$T/pgbr-lock" "$T/pgbb"
cp "$BUILD/bin/"ragsafe-* "$T/bin/"
chmod 0755 "$T/bin"/*
chown -R postgres: "$T"

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

say "initdb, pgbench -i -s $SCALE and the RAG schema"
as_pg "$PGBIN/initdb" -D "$T/pg" -A trust -U postgres >"$T/initdb.log" 2>&1 || die "initdb failed"
cat >>"$T/pg/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$T/sock'
port = 5432
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
max_wal_senders = 4
synchronous_commit = off
archive_mode = on
archive_command = '$T/bin/ragsafe-archive --repo $T/repo %p %f && pgbackrest --config=$T/pgbackrest.conf --stanza=bench archive-push %p'
log_min_messages = warning
CONF
as_pg "$PGBIN/pg_ctl" -D "$T/pg" -l "$T/pg.log" -w -t 120 start >/dev/null || die "server did not start"
sql() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/sock" -U postgres -d postgres -c "$1"; }
as_pg "$PGBIN/pgbench" -h "$T/sock" -U postgres -i -s "$SCALE" -q postgres >"$T/pgbench.log" 2>&1 \
    || die "pgbench -i failed: $(tail -3 "$T/pgbench.log")"
# the RAG schema (bench/rag_workload.sh), sized with the scale: 2000 documents (~1.5 kB
# each), 10000 searches and 200 users per scale unit
rag_schema || die "schema failed"
rag_fill || die "documents or search_history failed"
sql "vacuum analyze" || die "vacuum failed"
as_pg "${PGBR[@]}" stanza-create >"$T/out.log" 2>&1 || { cat "$T/out.log" >&2; die "stanza-create failed"; }

catch_up() {
    local last i
    last=$(sql "select pg_walfile_name(pg_current_wal_lsn())")
    sql "select pg_switch_wal()" >/dev/null
    for ((i = 0; i < 6000; i++)); do
        [ "$(sql "select coalesce(last_archived_wal, '') >= '$last' from pg_stat_archiver")" = t ] && return 0
        sleep 0.1
    done
    die "the archiver did not catch up"
}

# store_bytes TOOL / store_objects TOOL: what the tool's store holds, WAL excluded
store_dirs() {
    case $1 in
    tar|chunked) find "$T/repo" -mindepth 1 -maxdepth 1 ! -name wal ! -name locks ! -name status ;;
    pgbr) echo "$T/pgbr/backup" ;;
    pgbb) echo "$T/pgbb" ;;
    esac
}
store_bytes() { local d; d=$(store_dirs "$1"); [ -n "$d" ] && du -sb --apparent-size $d 2>/dev/null | awk '{ s += $1 } END { print s + 0 }' || echo 0; }
store_objects() { local d; d=$(store_dirs "$1"); [ -n "$d" ] && find $d -type f 2>/dev/null | wc -l || echo 0; }

# backup TOOL KIND: one backup; sets B_TIME (s), B_BYTES (new stored bytes), B_OBJS,
# and for ragsafe B_LABEL and B_STOP (the new backup's stop LSN, what restore targets)
backup() {
    local tool=$1 kind=$2 b0 o0 t0 n info
    B_STOP='' B_LABEL=''
    catch_up
    b0=$(store_bytes "$tool"); o0=$(store_objects "$tool")
    t0=$(date +%s.%N)
    case $tool in
    tar|chunked)
        local fmt=()
        [ "$have_format" = 1 ] && fmt=(--format "$tool")
        as_pg "$T/bin/ragsafe-basebackup" -d "host=$T/sock user=postgres" --repo "$T/repo" -c fast "${fmt[@]}" \
            >/dev/null 2>"$T/bb.err" || { cat "$T/bb.err" >&2; die "ragsafe-basebackup ($tool) failed"; } ;;
    pgbr)
        as_pg "${PGBR[@]}" backup --type="$kind" >"$T/out.log" 2>&1 || { cat "$T/out.log" >&2; die "pgbackrest backup failed"; } ;;
    pgbb)
        n=$(ls "$T/pgbb" | wc -l)
        as_pg "$PGBIN/pg_basebackup" -h "$T/sock" -U postgres -D "$T/pgbb/$n" -Ft -Z client-zstd:3 -X none -c fast \
            >/dev/null 2>"$T/pgbb.err" || { cat "$T/pgbb.err" >&2; die "pg_basebackup failed"; } ;;
    esac
    B_TIME=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
    B_BYTES=$(($(store_bytes "$tool") - b0))
    B_OBJS=$(($(store_objects "$tool") - o0))
    case $tool in
    tar|chunked)
        info=$(as_pg "$T/bin/ragsafe-pitr" info --repo "$T/repo" --json 2>/dev/null |
            python3 -c 'import json, sys; b = json.load(sys.stdin)["backups"][-1]; print(b["label"], b["stop_lsn"])') \
            || die "ragsafe-pitr info failed"
        read -r B_LABEL B_STOP <<<"$info" ;;
    esac
}

# median / range of the numbers given
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { a = $1 } { b = $1 } END { printf "%.2f-%.2f", a, b }'; }

# restore WHAT: one timed restore of the current workload's second backup into an
# empty directory; sets R_TIME
restore() {
    local d="$T/restored" t0 rc
    rm -rf "$d"
    t0=$(date +%s.%N)
    case $1 in
    chunked1|chunked2|tar)
        local f=${1%[12]} jobs=${1#chunked}
        [ "$1" = tar ] && jobs=1
        as_pg "$T/bin/ragsafe-pitr" restore --repo "$T/repo" --target-lsn "${stop_lsn[$f]}" \
            --pgdata "$d" --jobs "$jobs" --no-progress >"$T/restore.log" 2>&1
        rc=$? ;;
    pgbr)
        install -d -m 0700 -o postgres -g postgres "$d"
        as_pg "${PGBR[@]}" restore --pg1-path="$d" --process-max=2 >"$T/restore.log" 2>&1
        rc=$? ;;
    esac
    R_TIME=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
    [ "$rc" = 0 ] || { cat "$T/restore.log" >&2; die "restore ($1) failed"; }
    # the chunked restore must have restored the chunked backup, the tar one the tar
    case $1 in
    chunked1|chunked2|tar)
        grep -q "^backup: *${label[${1%[12]}]} " "$T/restore.log" ||
            die "restore ($1) did not pick backup ${label[${1%[12]}]}: $(grep '^backup:' "$T/restore.log")" ;;
    esac
    rm -rf "$d"
}

tools=("${formats[@]}" pgbr pgbb)
declare -A name=([tar]="ragsafe-basebackup --format tar" [chunked]="ragsafe-basebackup --format chunked"
    [pgbr]="pgBackRest 2.45 full, then incr" [pgbb]="pg_basebackup -Ft -Z client-zstd:3")
[ "$have_format" = 1 ] || name[tar]="ragsafe-basebackup (tar, the only format of this build)"
declare -A first_b first_o second_b second_o times full stop_lsn label rtimes rratio rtar
declare -A rname=([chunked1]="ragsafe-pitr restore --jobs 1 (chunked)" [chunked2]="ragsafe-pitr restore --jobs 2 (chunked)"
    [tar]="ragsafe-pitr restore (tar)" [pgbr]="pgbackrest restore --process-max=2 (incr)")

workload() {
    case $1 in
    1)
        rag_writes || die "workload 1 failed"
        ;;
    2)
        local pages tx
        pages=$(sql "select relpages from pg_class where relname = 'pgbench_accounts'")
        tx=$(awk -v p="$pages" 'BEGIN { printf "%d", p * 0.0202 + 0.5 }')
        [ "$tx" -ge 2 ] || tx=2
        as_pg "$PGBIN/pgbench" -h "$T/sock" -U postgres -N -c 2 -j 2 -t $((tx / 2)) -n postgres \
            >"$T/w2.log" 2>&1 || die "pgbench -N failed: $(tail -3 "$T/w2.log")"
        say "workload 2: $tx transactions over $pages pages of pgbench_accounts"
        ;;
    esac
}

for w in 1 2; do
    say "workload $w: first backups"
    for t in "${tools[@]}"; do
        backup "$t" full
        first_b[$w.$t]=$B_BYTES first_o[$w.$t]=$B_OBJS
        [ -n "${full[$t]:-}" ] || full[$t]=$B_BYTES
        [ "$t" = pgbr ] && full[$t]=$B_BYTES
    done
    say "workload $w: the writes"
    workload "$w"
    say "workload $w: second backups"
    for t in "${tools[@]}"; do
        backup "$t" incr
        second_b[$w.$t]=$B_BYTES second_o[$w.$t]=$B_OBJS
        times[$w.$t]=$B_TIME
        case $t in tar|chunked) stop_lsn[$t]=$B_STOP label[$t]=$B_LABEL ;; esac
    done
    # more pairs of ragsafe backups for the time's median, the order alternating
    for ((r = 2; r <= ROUNDS; r++)); do
        order=("${formats[@]}")
        [ $((r % 2)) = 0 ] && mapfile -t order < <(printf '%s\n' "${formats[@]}" | tac)
        say "workload $w: backup round $r of $ROUNDS (${order[*]})"
        for t in "${order[@]}"; do
            backup "$t" incr
            times[$w.$t]+=" $B_TIME"
        done
    done
    if [[ " $RESTORE_AFTER " == *" $w "* ]]; then
        rtools=()
        [[ " ${formats[*]} " == *" chunked "* ]] && rtools+=(chunked1 chunked2)
        [[ " ${formats[*]} " == *" tar "* ]] && rtools+=(tar)
        rtools+=(pgbr)
        RLOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
        for ((r = 1; r <= ROUNDS; r++)); do
            # rotate the order each round
            order=("${rtools[@]:$(((r - 1) % ${#rtools[@]}))}" "${rtools[@]:0:$(((r - 1) % ${#rtools[@]}))}")
            say "workload $w: restore round $r of $ROUNDS (${order[*]})"
            declare -A this=()
            for t in "${order[@]}"; do
                restore "$t"
                this[$t]=$R_TIME
                rtimes[$w.$t]+=" $R_TIME"
            done
            for t in "${rtools[@]}"; do
                rratio[$w.$t]+=" $(awk -v a="${this[$t]}" -v b="${this[pgbr]}" 'BEGIN { printf "%.3f", a / b }')"
                [ -n "${this[tar]:-}" ] &&
                    rtar[$w.$t]+=" $(awk -v a="${this[$t]}" -v b="${this[tar]}" 'BEGIN { printf "%.3f", a / b }')"
            done
        done
        RLOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
    fi
done

db=$(sql "select pg_size_pretty(pg_database_size('postgres'))")
echo "### Deduplicated base backups: the second backup's new bytes (scale $SCALE, database $db)"
echo
echo "\`BENCH_DEDUP_SCALE=$SCALE BENCH_DEDUP_ROUNDS=$ROUNDS bench/bench-dedup.sh\`, $(date -u +%Y-%m-%dT%H:%MZ); load average $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo
echo "| workload | tool | first: bytes added | first: objects | second: bytes added | second: objects | % of a full backup | second: time (s), median (range, n) | time vs tar, per pair: median (range) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for w in 1 2; do
    for t in "${tools[@]}"; do
        s=${second_b[$w.$t]}
        frac=$(awk -v a="$s" -v b="${full[$t]}" 'BEGIN { if (b > 0) printf "%.1f %%", 100 * a / b; else print "-" }')
        # shellcheck disable=SC2086
        tm="$(median ${times[$w.$t]}) ($(range ${times[$w.$t]}), $(wc -w <<<"${times[$w.$t]}"))"
        vs=-
        if [ -n "${times[$w.tar]:-}" ] && [[ $t == tar || $t == chunked ]]; then
            # the ratio within each pair (backups taken one after the other)
            read -r -a a <<<"${times[$w.$t]}"
            read -r -a b <<<"${times[$w.tar]}"
            pr=()
            for ((i = 0; i < ${#a[@]}; i++)); do
                pr+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { printf "%.3f", x / y }')")
            done
            vs="$(median "${pr[@]}")x ($(range "${pr[@]}"))"
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$([ $w = 1 ] && echo "1 RAG" || echo "2 pgbench -N")" \
            "${name[$t]}" "${first_b[$w.$t]}" "${first_o[$w.$t]}" "$s" "${second_o[$w.$t]}" "$frac" "$tm" "$vs"
    done
done
echo
echo "A full backup: the tool's first backup into its empty store (ragsafe chunked: ${full[chunked]:-?} bytes, workload 1's first)."
echo "Targets (issue 15): new bytes ≤ 10 % of a full backup on workload 1, ≤ 25 % on workload 2; time ≤ 1.1× \`--format tar\`."
for w in $RESTORE_AFTER; do
    [ -n "${rtimes[$w.pgbr]:-}" ] || continue
    echo
    echo "Restore of workload $w's second backups into an empty directory ($ROUNDS rounds, order rotating; load average $RLOAD0 before, $RLOAD1 after):"
    echo
    echo "| restore | time (s), median (range) | vs pgBackRest, per round: median (range) | vs ragsafe tar, per round |"
    echo "|---|---:|---:|---:|"
    for t in "${rtools[@]}"; do
        vt=-
        # shellcheck disable=SC2086
        [ -n "${rtar[$w.$t]:-}" ] && vt="$(median ${rtar[$w.$t]})x ($(range ${rtar[$w.$t]}))"
        # shellcheck disable=SC2086
        printf '| %s | %s (%s) | %sx (%s) | %s |\n' "${rname[$t]}" "$(median ${rtimes[$w.$t]})" "$(range ${rtimes[$w.$t]})" \
            "$(median ${rratio[$w.$t]})" "$(range ${rratio[$w.$t]})" "$vt"
    done
done
for n in "${notes[@]}"; do echo "Note: $n."; done
exit 0
