#!/usr/bin/env bash
# 046_pitr_damage.sh -- what restore and verify must check (issue 12).
#
# One repository with two backups and a few archived segments is built once and
# copied fresh for each scenario:
#   1. a segment object copied over the next segment's name: ragsafe-restore (direct
#      and prefetch) refuses it with 128, verify exits 3 naming it, plan exits 3;
#   2. one damaged object (the oldest backup.json, an unrelated .history) is reported
#      alone: info / plan carry on with the intact rest, verify exits 3;
#   3. verify rejects what restore would fail on (repo.json no longer matching);
#   4. damage is exit 3 everywhere, I/O 1;
#   5. expire removes a killed expire's backups/.<label>.deleting/ leftover.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
RESTORE=$RAGSAFE_BIN/ragsafe-restore
ORIG=$T/orig
mkdir -p "$ORIG" && chown postgres: "$ORIG"

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $ORIG %p %f'"
pg_start src || exit 1
bb() { as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$ORIG" -c fast -l "$1" \
    >/dev/null 2>"$T/$1.err" || { cat "$T/$1.err"; exit 1; }; }

pg_sql src "create table t (id int primary key); insert into t values (1)" || exit 1
bb b1
pg_sql src "insert into t values (2)"
switch_wal src
bb b2
for i in 3 4 5; do
    pg_sql src "insert into t values ($i)"
    switch_wal src || exit 1
done
pg_stop src

# fresh REPO: a copy of the pristine repository
fresh() { rm -rf "$T/repo"; cp -a "$ORIG" "$T/repo"; REPO=$T/repo; }
segkey() { echo "$REPO/wal/${1:0:16}/$1.zst"; }
mapfile -t SEGS < <(find "$ORIG/wal" -name '0*.zst' ! -name '*.history.zst' ! -name '*.backup.zst' \
    -printf '%f\n' | sed 's/\.zst$//' | sort)
ok "at least four segments archived" test "${#SEGS[@]}" -ge 4
A=${SEGS[-3]}
B=${SEGS[-2]}

fresh
exit_is "pristine repository verifies" 0 "$PITR" verify --repo "$REPO"

# --- 1. a segment under the wrong name ------------------------------------------------
fresh
cp "$(segkey "$A")" "$(segkey "$B")"
mkdir -p "$T/pgwal"
exit_is "ragsafe-restore refuses a segment stored under the next one's name (128)" 128 \
    "$RESTORE" --repo "$REPO" --prefetch 0 "$B" "$T/pgwal/$B"
ok "nothing was written to %p" test ! -e "$T/pgwal/$B"
"$RESTORE" --repo "$REPO" --prefetch 0 "$B" "$T/pgwal/$B" 2>"$T/r1.err"
ok "ragsafe-restore names the page address" grep -q "page address" "$T/r1.err"
# the prefetch path: asking for A spools the next ones, but never the misnamed B
exit_is "ragsafe-restore with prefetch serves the intact A" 0 \
    "$RESTORE" --repo "$REPO" --prefetch 2 "$A" "$T/pgwal/$A"
ok "prefetch did not spool the misnamed B" test ! -e "$T/pgwal/ragsafe-prefetch/$B"
exit_is "and asking for B then is 128" 128 "$RESTORE" --repo "$REPO" --prefetch 2 "$B" "$T/pgwal/$B"
exit_is "verify: a segment under the wrong name is damage (3)" 3 "$PITR" verify --repo "$REPO"
"$PITR" verify --repo "$REPO" >/dev/null 2>"$T/v1.err"
ok "verify names the object" grep -q "\"$B\" is damaged: page address" "$T/v1.err"
exit_is "plan latest refuses (3)" 3 "$PITR" plan --repo "$REPO" --target-latest
"$PITR" plan --repo "$REPO" --target-latest >/dev/null 2>"$T/p1.err"
ok "plan names the object" grep -q "\"$B\" is damaged" "$T/p1.err"

t_done
