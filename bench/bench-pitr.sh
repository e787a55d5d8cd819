#!/usr/bin/env bash
# bench/bench-pitr.sh BUILD -- issue 4's benchmark: restore + replay to a promoted
# server, ragsafe-pitr against pgBackRest, from the same base backup contents and the
# same archived WAL, both compressed with zstd level 3.
#
# One pgbench database; a full backup by each tool (ragsafe-basebackup, pgbackrest
# backup --type=full); then pgbench traffic until BENCH_PITR_WAL_MB of WAL has been
# archived, by an archive_command that hands every segment to both tools. The
# source stops; each tool then restores into an empty directory and the server is
# started (archive_mode off, same settings for both) and polled until it has
# promoted. Timed: restore command + start + replay until pg_is_in_recovery() is
# false. Both results must hold exactly the source's final pgbench balances (or, with
# BENCH_PITR_SHAPE=rag, its final rows).
#   ragsafe:    ragsafe-pitr restore --target-latest --start (restore_command
#               ragsafe-restore; --start starts the server, which pauses at the plan's
#               last record, and promotes it: no end-of-recovery checkpoint before writes)
#   pgBackRest: pgbackrest restore in its best configuration here (process-max 2, the CPU
#               count; archive-async=y with its spool and queue; archive-get)
#
# Size: BENCH_PITR_SCALE (default 20, ~300 MB database) and BENCH_PITR_WAL_MB (default
# 512) keep it at a few minutes on 2 cores; the issue's full size is scale 50 and
# 1024 MB. BENCH_PITR_RUNS (default 3) repeats the two restores (alternating, so both
# see the same machine load); the table shows medians with the spread, and the ratio
# is taken per pair. Each phase is timed: the restore command, start + replay until
# the server logs "redo done", its end-of-recovery checkpoint, and the rest until our
# poll sees it promoted (from the restored server's log, millisecond timestamps).
# BENCH_PITR_RS_OPTS adds options to ragsafe-pitr restore (e.g. "--set NAME=VALUE").
# BENCH_PITR_FORMAT: ragsafe-basebackup --format (tar | chunked; default: the tool's).
# BENCH_PITR_CKPT=1: the same build restores once more in each pair ("rs-ckpt") with
# --end-of-recovery-checkpoint: recovery ends by itself, promoted after PostgreSQL's
# immediate end-of-recovery checkpoint (what the promotion at the pause gives).
# BENCH_PITR_SERIAL=1: the same build restores a third time in each pair ("rs-serial")
# with RAGSAFE_NO_RESTORE_OVERLAP=1: plan, then extraction, instead of the extraction
# into a private sibling beside the plan (what that overlap gives).
# BENCH_PITR_SHAPE: what the database and the WAL hold (default pgbench, the above).
#   rag: issue 16's RAG shape, the schema of bench/rag_workload.sh: documents (~1.5 kB of
#   text + jsonb metadata each, the bulk of it) with 2 search_history rows per document,
#   added in batches until pg_database_size reaches BENCH_PITR_RAG_DB_MB (default 1024);
#   users 200 per 4 MB of that. The WAL after the backups comes from a pgbench custom
#   script (same clients and loop as the pgbench shape), each transaction a RAG-like mix:
#   2 new documents, 10 searches, a metadata update of a random document, a settings
#   update of a random user, a delete of the 5 oldest search_history rows. The check
#   is an exact fingerprint of every table (count and md5 over each row's text, in id
#   order), so a single differing row fails the run. Issue 16's size:
#   BENCH_PITR_SHAPE=rag BENCH_PITR_RAG_DB_MB=1024 BENCH_PITR_WAL_MB=2048.
# BENCH_PITR_DELTA=1: delta restores too (a disaster recovery on the same host finds
# most files intact): after the full restores, each tool restores again with --delta
# over the stopped, promoted copy the other tool's last run left (same cluster,
# replayed past the backup), timed the same way.
set -u
BUILD=${1:?usage: bench-pitr.sh BUILD}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SCALE=${BENCH_PITR_SCALE:-20}
WAL_MB=${BENCH_PITR_WAL_MB:-512}
RUNS=${BENCH_PITR_RUNS:-3}
SHAPE=${BENCH_PITR_SHAPE:-pgbench}
RAG_DB_MB=${BENCH_PITR_RAG_DB_MB:-1024}

say() { echo "bench-pitr: $*" >&2; }
die() { say "error: $*"; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

command -v pgbackrest >/dev/null || die "pgbackrest is not installed"
case $SHAPE in
pgbench) ;;
rag) [[ $RAG_DB_MB =~ ^[1-9][0-9]*$ ]] \
        || die "BENCH_PITR_RAG_DB_MB \"$RAG_DB_MB\" is not a size in MB; give a positive integer"
     # rag_workload.sh's users are 200 per SCALE unit: 200 per 4 MB of database
     SCALE=$(( RAG_DB_MB / 4 > 0 ? RAG_DB_MB / 4 : 1 ))
     source "$(dirname "$0")/rag_workload.sh" ;;
*) die "BENCH_PITR_SHAPE \"$SHAPE\" is not a shape; use pgbench or rag" ;;
esac
for b in ragsafe-pitr ragsafe-archive ragsafe-restore ragsafe-basebackup; do
    [ -x "$BUILD/bin/$b" ] || die "no \"$BUILD/bin/$b\""
done

T=$(mktemp -d /tmp/ragsafe-bench-pitr.XXXXXX)
chmod 0755 "$T"
cleanup() {
    local d
    for d in "$T/pg" "$T/r"; do
        [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
    done
    [ -n "${BENCH_PITR_KEEP:-}" ] && { say "kept $T"; return; }
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$T/bin" "$T/sock" "$T/repo" "$T/pgbr" "$T/pgbr-lock" "$T/pgbr-spool"
cp "$BUILD/bin/"ragsafe-* "$T/bin/"
chmod 0755 "$T/bin"/*
# BENCH_PITR_ALT=BUILD2: a second ragsafe build restores too, in each pair ("rs-alt"),
# without BENCH_PITR_RS_OPTS (the same build twice: what those options change)
ALT=${BENCH_PITR_ALT:-}
if [ -n "$ALT" ]; then
    mkdir -p "$T/bin-alt" && cp "$ALT/bin/"ragsafe-* "$T/bin-alt/" && chmod 0755 "$T/bin-alt" "$T/bin-alt"/*
fi
chown -R postgres: "$T"

cat >"$T/pgbackrest.conf" <<CONF
[global]
repo1-path=$T/pgbr
compress-type=zst
compress-level=3
start-fast=y
archive-check=n
process-max=2
archive-async=y
spool-path=$T/pgbr-spool
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

case $SHAPE in
pgbench) say "initdb and pgbench -i -s $SCALE" ;;
rag) say "initdb and RAG-shaped tables until the database holds $RAG_DB_MB MB" ;;
esac
as_pg "$PGBIN/initdb" -D "$T/pg" -A trust -U postgres >"$T/initdb.log" 2>&1 || die "initdb failed"
cat >>"$T/pg/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$T/sock'
port = 5432
shared_buffers = 128MB
max_wal_size = 2GB
checkpoint_timeout = 30s
synchronous_commit = off
archive_mode = on
archive_command = '$T/bin/ragsafe-archive --repo $T/repo %p %f && pgbackrest --config=$T/pgbackrest.conf --stanza=bench archive-push %p'
log_min_messages = warning
CONF
as_pg "$PGBIN/pg_ctl" -D "$T/pg" -l "$T/pg.log" -w -t 120 start >/dev/null || die "server did not start"
sql() { as_pg "$PGBIN/psql" -XAtq -h "$T/sock" -U postgres -d postgres -c "$1"; }
# rag_fill_db: documents (and 2 searches each) in batches until the database holds
# RAG_DB_MB. A batch is sized from what is left at ~300 documents per MB, below the
# ~400 a MB holds, so the last batches close in on the size rather than overshoot it.
rag_fill_db() {
    local size left n
    rag_schema >/dev/null || die "the RAG schema could not be created"
    for ((;;)); do
        size=$(sql "select pg_database_size(current_database())") || die "pg_database_size failed"
        left=$(( (RAG_DB_MB * 1048576 - size) / 1048576 ))
        [ "$left" -gt 0 ] || break
        n=$(( left * 300 ))
        [ "$n" -gt 20000 ] && n=20000
        [ "$n" -lt 500 ] && n=500
        rag_docs "$n" >/dev/null || die "a batch of $n documents failed"
        rag_searches $((n * 2)) >/dev/null || die "a batch of $((n * 2)) searches failed"
    done
}
gen0=$SECONDS
case $SHAPE in
pgbench)
    as_pg "$PGBIN/pgbench" -h "$T/sock" -U postgres -i -s "$SCALE" -q postgres >"$T/pgbench.log" 2>&1 \
        || die "pgbench -i failed: $(tail -3 "$T/pgbench.log")" ;;
rag) rag_fill_db ;;
esac
# (an async archive-push of pgbench -i's WAL may hold the archive lock for a moment)
for ((i = 0; ; i++)); do
    as_pg "${PGBR[@]}" stanza-create >"$T/out.log" 2>&1 && break
    [ "$i" -lt 30 ] || { cat "$T/out.log" >&2; die "stanza-create failed"; }
    sleep 1
done

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
catch_up
db_mb=$(sql "select round(pg_database_size(current_database()) / 1048576.0)")
# (the rag shape's title names its tables' sizes at the backups)
[ "$SHAPE" = rag ] && tables=$(sql "select string_agg(relname || ' ' ||
    round(pg_total_relation_size(relid) / 1048576.0) || ' MB', ', ' order by pg_total_relation_size(relid) desc)
    from pg_stat_user_tables")
say "database of $db_mb MB built and archived in $((SECONDS - gen0)) s"

say "base backups"
label=$(as_pg "$T/bin/ragsafe-basebackup" -d "host=$T/sock user=postgres" --repo "$T/repo" -c fast \
    ${BENCH_PITR_FORMAT:+--format "$BENCH_PITR_FORMAT"} 2>"$T/bb.err") \
    || { cat "$T/bb.err" >&2; die "ragsafe-basebackup failed"; }
as_pg "${PGBR[@]}" backup --type=full >"$T/out.log" 2>&1 || { cat "$T/out.log" >&2; die "pgbackrest backup failed"; }
backup_bytes=$(jq .raw_bytes "$T/repo/backups/$label/backup.json")

# the rag shape's transaction (see the header); pgbench's -D nusers= gives the user range.
# Lock order is the same in every transaction (a document, then a user; the deletes
# skip locked rows), so concurrent clients wait but never deadlock.
cat >"$T/rag.sql" <<'SQL'
\set u random(1, :nusers)
\set r random(1, 1000000)
BEGIN;
insert into documents (owner, title, body, metadata)
    select :u, 'doc ' || g, repeat(md5(random()::text) || ' ', 45),
           jsonb_build_object('source', 'upload', 'tags', jsonb_build_array('a', 'b'), 'n', g)
    from generate_series(1, 2) g;
insert into search_history (user_id, query, results)
    select :u, 'query ' || md5(random()::text), jsonb_build_array(g, g + 1, g + 2)
    from generate_series(1, 10) g;
update documents set metadata = metadata || jsonb_build_object('reviewed', :r)
    where id = (select 1 + (random() * (max(id) - 1))::bigint from documents);
update users set settings = settings || jsonb_build_object('seen', :r), updated_at = now()
    where id = :u;
delete from search_history
    where id in (select id from search_history order by id limit 5 for update skip locked);
END;
SQL
chown postgres: "$T/rag.sql"
# fingerprint: what a restored server must hold exactly, computed the same way on the
# source and on each restored server. rag: per table, the row count and an md5 over
# every row's id and the md5 of its text, in id order: one differing row changes it.
fingerprint() {
    case $SHAPE in
    pgbench) sql "select sum(abalance) || ':' || (select count(*) from pgbench_history) from pgbench_accounts" ;;
    rag) sql "select concat_ws(' ', $(for t in users documents search_history; do
                printf "%s" "(select '$t:' || count(*) || ':' || coalesce(md5(string_agg(id || ':' || md5(r::text), ',' order by id)), '') from $t r),"
            done | sed 's/,$//'))" ;;
    esac
}

case $SHAPE in
pgbench) say "pgbench traffic until $WAL_MB MB of WAL" ;;
rag) say "RAG-like traffic until $WAL_MB MB of WAL" ;;
esac
gen0=$SECONDS
lsn0=$(sql "select pg_current_wal_lsn()")
# (the pgbench shape stops after 60 rounds of 5 s whatever the WAL; the rag shape, whose
# 2 GB may take longer, after an hour)
for ((i = 0; i < $([ "$SHAPE" = rag ] && echo 720 || echo 60); i++)); do
    case $SHAPE in
    pgbench) as_pg "$PGBIN/pgbench" -h "$T/sock" -U postgres -c 4 -j 2 -T 5 -n postgres >/dev/null 2>&1 ;;
    rag) as_pg "$PGBIN/pgbench" -h "$T/sock" -U postgres -c 4 -j 2 -T 5 -n -f "$T/rag.sql" \
            -D nusers=$((200 * SCALE)) postgres >"$T/pgbench.log" 2>&1 \
            || die "the RAG traffic failed: $(grep -m3 -i error "$T/pgbench.log")" ;;
    esac
    done_mb=$(sql "select (pg_current_wal_lsn() - '$lsn0') / 1048576")
    [ "${done_mb%.*}" -ge "$WAL_MB" ] && break
done
wal_mb=$(sql "select round((pg_current_wal_lsn() - '$lsn0') / 1048576)")
gen_s=$((SECONDS - gen0))
catch_up
say "WAL generated in $gen_s s, archived in $((SECONDS - gen0)) s"
gen0=$SECONDS
want=$(fingerprint) || die "the source's fingerprint failed"
[ "$SHAPE" = rag ] && say "fingerprint in $((SECONDS - gen0)) s: $want"
as_pg "$PGBIN/pg_ctl" -D "$T/pg" -m fast -w stop >/dev/null
say "generated $wal_mb MB of WAL; source stopped"

# boot_and_wait: start $T/r without archiving and poll until it has promoted. The
# server logs with millisecond timestamps so the phases can be told apart (phases).
boot_and_wait() {
    rm -f "$T/r"/.s.PGSQL.*
    printf "archive_mode = off\nlog_min_messages = log\nlog_checkpoints = on\nlog_line_prefix = '%%m '\n" \
        >>"$T/r/postgresql.conf"
    rm -f "$T/r.log"
    as_pg "$PGBIN/pg_ctl" -D "$T/r" -l "$T/r.log" -W start >/dev/null || die "restored server did not start"
    local i
    for ((i = 0; i < 36000; i++)); do
        [ "$(sql "select pg_is_in_recovery()" 2>/dev/null)" = f ] && return 0
        sleep 0.05
    done
    die "restored server did not promote"
}
now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
# LOGF: the restored server's log (ragsafe-pitr restore --start writes its own)
LOGF=$T/r.log
# log_ns PATTERN: the server log's timestamp (ns) of the first line matching PATTERN
log_ns() {
    local l
    l=$(grep -m1 -- "$1" "$LOGF") || { echo 0; return; }
    date -d "$(echo "$l" | awk '{ print $1, $2, $3 }')" +%s%N
}
# phases T1 T2: "start+replay ckpt promote" in seconds: from the restore's end to "redo
# done" (or to the pause at the target, where restore --start promotes it), the
# end-of-recovery checkpoint (0 when the promotion leaves it to the background), and
# the rest until the server was seen promoted
phases() {
    local redo ck0 ck1
    redo=$(log_ns "pausing at the end of recovery")
    [ "$redo" = 0 ] && redo=$(log_ns "redo done at")
    ck0=$(log_ns "checkpoint starting: end-of-recovery")
    ck1=$(awk '/checkpoint starting: end-of-recovery/ { f = 1 } f && /checkpoint complete/ { print $1, $2, $3; exit }' "$LOGF")
    ck1=$([ -n "$ck1" ] && date -d "$ck1" +%s%N || echo 0)
    if [ "$ck0" = 0 ] && grep -q "database system is ready to accept connections" "$LOGF"; then
        ck0=$redo ck1=$redo # promoted without one
    fi
    if [ "$redo" = 0 ] || [ "$ck0" = 0 ] || [ "$ck1" = 0 ]; then
        echo "? ? ?"
        return
    fi
    echo "$(secs "$1" "$redo") $(secs "$ck0" "$ck1") $(awk -v a="$redo" -v b="$2" -v c="$ck0" -v d="$ck1" 'BEGIN { printf "%.2f", ((b - a) - (d - c)) / 1e9 }')"
}
declare -A res   # res[NAME]="total restore replay ckpt promote;..." one entry per run
# rs_start BIN ARGS...: ragsafe-pitr restore --start (the DBA's one command to a promoted
# server: it starts the server, follows recovery and promotes it), logging as
# boot_and_wait does; sets t1 (the restore step's end, from its --json) and t2
rs_start() {
    local bin=$1; shift
    "$bin/ragsafe-pitr" restore --repo "$T/repo" --pgdata "$T/r" --target-latest --owner postgres \
        --start --json --set log_min_messages=log --set log_checkpoints=on --set "log_line_prefix=%m " \
        "$@" >"$T/rs.out" 2>"$T/rs.err" || { cat "$T/rs.err" >&2; die "ragsafe-pitr restore --start failed"; }
    t2=$(now_ns)
    t1=$(awk -v a="$t0" -v s="$(jq .restore_seconds "$T/rs.out")" 'BEGIN { printf "%.0f", a + s * 1e9 }')
    LOGF=$T/r/ragsafe-start.log
}
# run_one NAME: rs | pgbr (into an empty directory), rs-delta | pgbr-delta (over $T/r)
run_one() {
    local name=$1 t0 t1 t2
    case $name in *-delta) ;; *) rm -rf "$T/r" ;; esac
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    t0=$(now_ns)
    case $name in
    rs-alt) rs_start "$T/bin-alt" ;;
    rs-serial) RAGSAFE_NO_RESTORE_OVERLAP=1 rs_start "$T/bin" "${RS_SETS[@]}" ;;
    rs-ckpt) rs_start "$T/bin" --end-of-recovery-checkpoint "${RS_SETS[@]}" ;;
    rs|rs-delta) rs_start "$T/bin" $([ "$name" = rs-delta ] && echo --delta) "${RS_SETS[@]}" ;;
    pgbr) mkdir -m 0700 "$T/r" && chown postgres: "$T/r"
          as_pg "${PGBR[@]}" --pg1-path="$T/r" restore >"$T/pgbr.out" 2>&1 \
            || { cat "$T/pgbr.out" >&2; die "pgbackrest restore failed"; } ;;
    pgbr-delta)
          as_pg "${PGBR[@]}" --pg1-path="$T/r" restore --delta >"$T/pgbr.out" 2>&1 \
            || { cat "$T/pgbr.out" >&2; die "pgbackrest restore --delta failed"; } ;;
    esac
    case $name in
    pgbr*) t1=$(now_ns); LOGF=$T/r.log; boot_and_wait; t2=$(now_ns) ;;
    esac
    local got
    got=$(fingerprint)
    [ "$got" = "$want" ] || die "$name: restored data differ (got $got, want $want)"
    as_pg "$PGBIN/pg_ctl" -D "$T/r" -m immediate -w stop >/dev/null
    local total restore ph
    total=$(secs "$t0" "$t2")
    restore=$(secs "$t0" "$t1")
    ph=$(phases "$t1" "$t2")
    say "$name: restore $restore s, start+replay/ckpt/promote $ph s, total $total s ($(cut -d' ' -f1-3 /proc/loadavg))"
    res[$name]="${res[$name]:-}$total $restore $ph;"
}
# RS_SETS: extra ragsafe-pitr restore options (BENCH_PITR_RS_OPTS, e.g. "--set X=Y")
read -r -a RS_SETS <<<"${BENCH_PITR_RS_OPTS:-}"
for ((run = 1; run <= RUNS; run++)); do
    run_one pgbr
    run_one rs
    [ -n "$ALT" ] && run_one rs-alt
    [ -n "${BENCH_PITR_SERIAL:-}" ] && run_one rs-serial
    [ -n "${BENCH_PITR_CKPT:-}" ] && run_one rs-ckpt
done
if [ -n "${BENCH_PITR_DELTA:-}" ]; then
    for ((run = 1; run <= RUNS; run++)); do
        run_one pgbr-delta
        run_one rs-delta
    done
fi

mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
# col NAME K: "median (min-max)" of field K (1 total, 2 restore, 3 replay, 4 ckpt, 5 promote)
col() {
    echo "${res[$1]}" | tr ';' '\n' | awk -v k="$2" 'NF { print $k }' | sort -g | awk '
        { v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
          m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          if (NR == 1) printf "%.2f", m; else printf "%.2f (%.2f-%.2f)", m, v[1], v[NR] }'
}
med() { col "$1" 1 | awk '{ print $1 }'; }
# ratios NAME: the per-pair ratios total(NAME) / total(pgbr...), "median (min-max)"
ratios() {
    local base=$2
    paste -d' ' <(echo "${res[$1]}" | tr ';' '\n' | awk 'NF { print $1 }') \
                <(echo "${res[$base]}" | tr ';' '\n' | awk 'NF { print $1 }') |
        awk '{ print $1 / $2 }' | sort -g | awk '{ v[NR] = $1 } END {
            m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.2f× (%.2f-%.2f)", m, v[1], v[NR] }'
}
row() { echo "| $1 | $(col "$2" 2) | $(col "$2" 3) | $(col "$2" 4) | $(col "$2" 5) | $(col "$2" 1) | $3 |"; }
case $SHAPE in
pgbench) what="pgbench scale $SCALE ($(mb "$backup_bytes") MB backup)" held="final balances" ;;
rag) what="RAG-shaped $db_mb MB database ($tables; $(mb "$backup_bytes") MB backup)"
     held="final rows (count and md5 of every table)" ;;
esac
echo "### PITR restore: $what + $wal_mb MB archived WAL, $(nproc) CPUs, $RUNS alternating pairs, median (min-max)"
echo
echo "| tool | restore (s) | start + replay to \"redo done\" (s) | end-of-recovery checkpoint (s) | rest of promotion (s) | total (s) | total vs pgBackRest, per pair |"
echo "|---|---:|---:|---:|---:|---:|---:|"
row "\`pgbackrest restore\` (zst 3, process-max 2, archive-async, archive-get)" pgbr "1.00×"
row "**\`ragsafe-pitr restore --target-latest --start\`** (zstd 3${BENCH_PITR_FORMAT:+, $BENCH_PITR_FORMAT backup}${BENCH_PITR_RS_OPTS:+, $BENCH_PITR_RS_OPTS})" rs "$(ratios rs pgbr)"
[ -n "$ALT" ] && row "\`ragsafe-pitr restore\` of $ALT" rs-alt "$(ratios rs-alt pgbr)"
[ -n "${BENCH_PITR_CKPT:-}" ] && row "\`ragsafe-pitr restore --start --end-of-recovery-checkpoint\` (promoted after that checkpoint)" rs-ckpt "$(ratios rs-ckpt pgbr)"
[ -n "${BENCH_PITR_SERIAL:-}" ] && row "\`ragsafe-pitr restore\`, plan then extraction (RAGSAFE_NO_RESTORE_OVERLAP=1)" rs-serial "$(ratios rs-serial pgbr)"
if [ -n "${BENCH_PITR_DELTA:-}" ]; then
    row "\`pgbackrest restore --delta\` over a stale promoted copy" pgbr-delta "$(ratios pgbr-delta pgbr)"
    row "**\`ragsafe-pitr restore --delta\`** over a stale promoted copy" rs-delta "$(ratios rs-delta pgbr-delta) vs its delta"
fi
echo
echo "Target: ≤ 0.5× pgBackRest's wall time to a promoted server (median ratio $(ratios rs pgbr))." \
    "Both results checked against the source's $held; page cache dropped before each run when permitted;" \
    "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
