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
# Reported per tool and workload: the second backup's new stored bytes (growth of the
# tool's store, WAL excluded) as a fraction of the first's, the second backup's wall
# time, and the objects (files) it added.
#
# Environment: BENCH_DEDUP_SCALE (default 50, ~750 MB as the issue asks; 5 for a quick
# run), RAGSAFE_FORMATS (default "tar chunked"), BENCH_DEDUP_KEEP=1 keeps the temp dir.
# Prints a markdown table on stdout, progress on stderr.
set -u
BUILD=${1:?usage: bench-dedup.sh BUILD}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SCALE=${BENCH_DEDUP_SCALE:-50}
FORMATS=${RAGSAFE_FORMATS:-tar chunked}

say() { echo "bench-dedup: $*" >&2; }
die() { say "error: $*"; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

command -v pgbackrest >/dev/null || die "pgbackrest is not installed (scripts/install-deps.sh)"
for b in ragsafe-basebackup ragsafe-archive; do
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
# the RAG schema, sized with the scale: 2000 documents (~1.5 kB each), 10000 searches
# and 200 users per scale unit
sql "create table users (id serial primary key, name text, email text, settings jsonb,
         updated_at timestamptz default now());
     create table documents (id bigserial primary key, owner int references users,
         title text, body text, metadata jsonb, created_at timestamptz default now());
     create table search_history (id bigserial primary key, user_id int, query text,
         results jsonb, at timestamptz default now());
     insert into users (name, email, settings)
         select 'user ' || g, 'u' || g || '@example.com', jsonb_build_object('lang', 'en', 'k', g)
         from generate_series(1, 200 * $SCALE) g;" || die "schema failed"
docs() { # docs N: N new documents
    sql "insert into documents (owner, title, body, metadata)
         select 1 + (random() * (200 * $SCALE - 1))::int, 'doc ' || g,
                repeat(md5(random()::text) || ' ', 45),
                jsonb_build_object('source', 'upload', 'tags', jsonb_build_array('a', 'b'), 'n', g)
         from generate_series(1, $1) g"
}
searches() { # searches N: N new search_history rows
    sql "insert into search_history (user_id, query, results)
         select 1 + (random() * (200 * $SCALE - 1))::int, 'query ' || md5(random()::text),
                jsonb_build_array(g, g + 1, g + 2)
         from generate_series(1, $1) g"
}
docs $((2000 * SCALE)) >/dev/null || die "documents failed"
searches $((10000 * SCALE)) >/dev/null || die "search_history failed"
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

# backup TOOL KIND: one backup; sets B_TIME (s), B_BYTES (new stored bytes), B_OBJS
backup() {
    local tool=$1 kind=$2 b0 o0 t0 n
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
}

tools=("${formats[@]}" pgbr pgbb)
declare -A name=([tar]="ragsafe-basebackup --format tar" [chunked]="ragsafe-basebackup --format chunked"
    [pgbr]="pgBackRest 2.45 full, then incr" [pgbb]="pg_basebackup -Ft -Z client-zstd:3")
[ "$have_format" = 1 ] || name[tar]="ragsafe-basebackup (tar, the only format of this build)"
declare -A first_b first_t second_b second_t second_o

workload() {
    case $1 in
    1)
        docs $((2000 * SCALE / 50)) >/dev/null || die "workload 1 documents failed"
        searches $((10000 * SCALE / 20)) >/dev/null || die "workload 1 searches failed"
        sql "update users set settings = settings || '{\"seen\": true}', updated_at = now()
             where id % 100 = 0" >/dev/null || die "workload 1 users failed"
        sql "update documents set metadata = metadata || '{\"reviewed\": true}'
             where id % 500 = 0" >/dev/null || die "workload 1 metadata failed"
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
        first_b[$w.$t]=$B_BYTES first_t[$w.$t]=$B_TIME
    done
    say "workload $w: the writes"
    workload "$w"
    say "workload $w: second backups"
    for t in "${tools[@]}"; do
        backup "$t" incr
        second_b[$w.$t]=$B_BYTES second_t[$w.$t]=$B_TIME second_o[$w.$t]=$B_OBJS
    done
done

db=$(sql "select pg_size_pretty(pg_database_size('postgres'))")
echo "### Deduplicated base backups: the second backup's new bytes (scale $SCALE, database $db)"
echo
echo "| workload | tool | first backup (bytes) | second: new bytes | fraction | second: time (s) | second: objects added |"
echo "|---|---|---:|---:|---:|---:|---:|"
for w in 1 2; do
    for t in "${tools[@]}"; do
        f=${first_b[$w.$t]} s=${second_b[$w.$t]}
        frac=$(awk -v a="$s" -v b="$f" 'BEGIN { if (b > 0) printf "%.1f %%", 100 * a / b; else print "-" }')
        printf '| %s | %s | %s | %s | %s | %.1f | %s |\n' "$([ $w = 1 ] && echo "1 RAG" || echo "2 pgbench -N")" \
            "${name[$t]}" "$f" "$s" "$frac" "${second_t[$w.$t]}" "${second_o[$w.$t]}"
    done
done
echo
echo "Targets (issue 15): new bytes ≤ 10 % of a full backup on workload 1, ≤ 25 % on workload 2; time ≤ 1.1× \`--format tar\`."
for n in "${notes[@]}"; do echo "Note: $n."; done
exit 0
