#!/usr/bin/env bash
# 042_pitr_expire.sh -- retention on a repository with four backups and two timelines.
#
# Backups b1, b2 on timeline 1, then a restore promoted onto timeline 2 that takes b3
# and b4, all archiving into one repository. expire --keep-window is set so that the
# window opens between b2 and b3: b1 must go, b2 (the newest backup before the
# window) must stay with b3 and b4, WAL below b2's start goes on every timeline,
# history files stay. --dry-run deletes nothing; a held repository lock makes expire
# refuse; afterwards verify passes and a restore to the oldest instant of the window
# gives exactly the data of that instant.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1

state() { pg_sql "$1" "select count(*) || ':' || coalesce(sum(id), 0) from t"; }
bb() { as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn "$1")" --repo "$REPO" -c fast -l "$2" 2>"$T/$2.err" >/dev/null \
    || { cat "$T/$2.err"; exit 1; }; }
boot() {
    rm -f "$T/$1"/.s.PGSQL.*
    pg_set "$1" "unix_socket_directories = '$T/$1'"
    [ "${2:-}" = archive ] || pg_set "$1" "archive_mode = off"
    pg_start "$1" && pg_wait_for "$1" "select pg_is_in_recovery()" f 120
}
wal_count() { find "$REPO/wal" -name '0*.zst' ! -name '*.history.zst' | wc -l; }

pg_sql src "create table t (id int primary key, v text); insert into t values (1, 'one')" || exit 1
bb src b1
pg_sql src "insert into t values (2, 'two')"
switch_wal src
pg_sql src "insert into t values (3, 'three')"
switch_wal src
PRE_B2=$(date +%s)   # before b2 began: no instant up to here is restorable once b1 is gone
bb src b2
sleep 1.1
pg_sql src "insert into t values (4, 'four')"
MA=$(pg_sql src "select extract(epoch from clock_timestamp())")
CA=$(state src)
sleep 2.2
pg_sql src "insert into t values (5, 'five')"
MB=$(pg_sql src "select clock_timestamp()")
sleep 1.1
pg_sql src "insert into t values (6, 'six')"
switch_wal src || exit 1

# timeline 2: restore to MB, promote, archive into the same repository, two backups
"$PITR" restore --repo "$REPO" --pgdata "$T/fork" --target-time "$MB" --archive-mode preserve >"$T/fork.out" 2>&1 \
    || { cat "$T/fork.out"; exit 1; }
boot fork archive || { tail -20 "$T/fork.log"; exit 1; }
pg_stop src
pg_sql fork "insert into t values (7, 'tli2')"
bb fork b3
pg_sql fork "insert into t values (8, 'tli2 b')"
switch_wal fork
bb fork b4
pg_sql fork "insert into t values (9, 'tli2 c')"
switch_wal fork || exit 1
pg_stop fork

b2_start=$(jq -r .start_wal "$REPO/backups/b2/backup.json")
ok "four backups" test "$(ls "$REPO/backups" | wc -l)" = 4
ok "two timelines" test -s "$REPO/wal/00000002.history.zst"
old_wal=$(find "$REPO/wal" -name '00000001*.zst' | while read -r f; do
    n=$(basename "$f" .zst); [[ "${n:8:16}" < "${b2_start:8:16}" ]] && echo "$n"; done | sort)
ok "there is WAL older than b2 to expire" test -n "$old_wal"
WAL_BEFORE=$(wal_count)

# the window opens within a second after mark A, before the commit of mark B
now=$(date +%s)
ma_ceil=$(python3 -c "import math,sys; print(math.ceil(float(sys.argv[1])))" "$MA")
KW=$((now - ma_ceil))
args=(--repo "$REPO" --keep-window "${KW}s" --keep-backups 1s --min-backups 1)

# --- a held lock makes expire refuse -------------------------------------------------
mkdir -p "$REPO/locks"
flock "$REPO/locks/backup.lock" "$PITR" expire "${args[@]}" >/dev/null 2>"$T/locked.err"
is "expire while the repository lock is held: exit 1" 1 "$?"
ok "says the repository is locked" grep -q "locked" "$T/locked.err"
ok "nothing deleted while locked" test -d "$REPO/backups/b1"

# --- dry run -------------------------------------------------------------------------
"$PITR" expire "${args[@]}" --dry-run >"$T/dry.out" 2>&1
is "expire --dry-run exits 0" 0 "$?"
ok "dry run names b1 as to delete" grep -q "backup b1 .*would delete" "$T/dry.out"
ok "dry run keeps b2 for the start of the window" grep -q "backup b2 .*keep, restores the start of the window" "$T/dry.out"
ok "dry run keeps b3 and b4" bash -c "grep -q 'backup b3 .*keep' '$T/dry.out' && grep -q 'backup b4 .*keep' '$T/dry.out'"
ok "dry run deleted nothing" test -d "$REPO/backups/b1"
is "dry run left the WAL alone" "$WAL_BEFORE" "$(wal_count)"
"$PITR" expire "${args[@]}" --dry-run --json >"$T/dry.json"
is "dry run --json: one backup to delete" 1 "$(jq .backups_deleted "$T/dry.json")"

# --- the real thing ------------------------------------------------------------------
"$PITR" expire "${args[@]}" >"$T/real.out" 2>&1
is "expire exits 0" 0 "$?"
ok "b1 deleted" test ! -e "$REPO/backups/b1"
ok "b2, b3, b4 kept" bash -c "test -f '$REPO/backups/b2/backup.json' && test -f '$REPO/backups/b3/backup.json' && test -f '$REPO/backups/b4/backup.json'"
left=""
for n in $old_wal; do [ -e "$REPO/wal/${n:0:16}/$n.zst" ] && left="$left $n"; done
is "WAL older than b2's start deleted" "" "$left"
ok "b2's start segment kept" test -e "$REPO/wal/${b2_start:0:16}/$b2_start.zst"
ok "timeline 2 WAL kept" test -n "$(find "$REPO/wal" -name '00000002*.zst' ! -name '*.history.zst')"
ok "history file kept" test -s "$REPO/wal/00000002.history.zst"
"$PITR" verify --repo "$REPO" >"$T/verify.out" 2>&1
is "verify after expire exits 0" 0 "$?"
"$PITR" expire "${args[@]}" >"$T/again.out" 2>&1
ok "a second expire deletes nothing" grep -q "deleted 0 backups and 0 WAL files" "$T/again.out"

# --- the oldest instant of the window is still restorable ----------------------------
wstart=$(date -u -d "@$((now - KW))" +%Y-%m-%dT%H:%M:%SZ)
"$PITR" restore --repo "$REPO" --pgdata "$T/oldest" --target-time "$wstart" --target-timeline 1 \
    >"$T/oldest.out" 2>"$T/oldest.err"
is "restore to the window's first instant exits 0" 0 "$?"
ok "it uses b2" grep -q "backup: *b2" "$T/oldest.out"
if boot oldest; then
    is "window start holds mark A's data" "$CA" "$(state oldest)"
    pg_stop oldest
else
    fail "window start restore recovers"; cat "$T/oldest.err"; tail -20 "$T/oldest.log"
fi
# 5 s before the window opens, and before b2 began (on a loaded machine b2 may have
# ended more than 5 s before mark A, and so restore that instant)
before=$((now - KW - 5))
[ "$before" -lt "$((PRE_B2 - 1))" ] || before=$((PRE_B2 - 1))
"$PITR" plan --repo "$REPO" --target-time "$(date -u -d "@$before" +%Y-%m-%dT%H:%M:%SZ)" \
    --target-timeline 1 >/dev/null 2>&1
is "before the window (b1 expired): refused" 1 "$?"

t_done
