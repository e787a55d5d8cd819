#!/usr/bin/env bash
# 048_pitr_tablespace_trust.sh -- tablespace destinations from the repository are not
# trusted by ragsafe-pitr restore (run as root, --owner postgres).
#
# A cluster with a tablespace ($T/ts1) is backed up and its WAL archived. backup.json
# (a plain file in a plain repository, no digest over it: an edit is not detected as
# damage, so it is the attack) is edited to place the tablespace at /etc/ragsafe-evil,
# at a relative path, inside the data directory, and twice (a second entry); each is
# refused with exit 1 before anything is written: nothing under /etc, no data
# directory, no relative directory, the error names the OID and the
# --tablespace-map fix. --tablespace-map goes through the same checks: /etc/x, a
# symlink into /etc, the data directory itself are refused. An existing directory
# not owned by the restore's owner (root's, empty; root's, non-empty with --force) is
# refused and keeps its owner, mode and contents. plan (text, --json) lists every
# destination, mapped or not. A restore with --tablespace-map OID=$T/ts-new works,
# the restored server starts on its own socket and reads the table in the tablespace
# from $T/ts-new. An existing empty directory owned by postgres (mode 0750) is used
# and keeps its mode; a failed restore empties it and leaves it in place.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
mkdir -p "$REPO" "$T/ts1" && chown postgres: "$REPO" "$T/ts1"
EVIL=/etc/ragsafe-evil-$$
t_on_exit "rm -rf '$EVIL' /etc/ragsafe-x-$$"

pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start src || exit 1
pg_sql src "create tablespace ts1 location '$T/ts1'" || exit 1
pg_sql src "create table t (id int) tablespace ts1;
            insert into t select generate_series(1, 1000)" || exit 1
OID=$(pg_sql src "select oid from pg_tablespace where spcname = 'ts1'")
label=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast 2>"$T/bb.err")
is "base backup exits 0" 0 "$?"
[ -n "$label" ] || { cat "$T/bb.err"; exit 1; }
pg_sql src "insert into t select generate_series(1001, 1500)"
switch_wal src || exit 1

BJ=$REPO/backups/$label/backup.json
cp -p "$BJ" "$T/backup.json.orig"
is "backup.json records the tablespace" "$T/ts1" "$(jq -r '.tablespaces[0].location' "$BJ")"
# set_location JQ-EXPR: rewrite backup.json (as the postgres user could)
set_bj() { jq "$1" "$T/backup.json.orig" >"$BJ.new" && mv "$BJ.new" "$BJ" && chown postgres: "$BJ"; }
restore() { "$PITR" restore --target-latest --repo "$REPO" --owner postgres "$@"; }

# --- hostile locations in backup.json --------------------------------------------
set_bj ".tablespaces[0].location = \"$EVIL\""
exit_is "plan still reads the edited backup.json (no digest over it)" 0 \
    "$PITR" plan --target-latest --repo "$REPO" >"$T/plan-evil.out" 2>"$T/plan-evil.err"
ok "plan shows the /etc destination" grep -q "^tablespace: *$OID \"$EVIL\" -> \"$EVIL\"\$" "$T/plan-evil.out"
exit_is "location under /etc: refused, exit 1" 1 restore --pgdata "$T/r-evil" 2>"$T/evil.err"
ok "nothing created under /etc" test ! -e "$EVIL"
ok "the data directory is not created" test ! -e "$T/r-evil"
ok "the refusal names the OID and the location" grep -q "tablespace $OID: destination \"$EVIL\" is a system directory" "$T/evil.err"
ok "the refusal names the fix" grep -q -- "--tablespace-map $OID=" "$T/evil.err"

set_bj ".tablespaces[0].location = \"ragsafe-rel\""
mkdir -p "$T/cwd"
exit_is "relative location: refused, exit 1" 1 bash -c "cd '$T/cwd' && '$PITR' restore --target-latest --repo '$REPO' --owner postgres --pgdata '$T/r-rel' 2>'$T/rel.err'"
ok "relative: nothing created in the working directory" test ! -e "$T/cwd/ragsafe-rel"
ok "relative: the data directory is not created" test ! -e "$T/r-rel"
ok "relative: the refusal says why" grep -q "tablespace $OID: destination \"ragsafe-rel\" is not an absolute path" "$T/rel.err"

set_bj ".tablespaces[0].location = \"$T/r-in/pg_tblspc_x\""
exit_is "location inside the data directory: refused, exit 1" 1 restore --pgdata "$T/r-in" 2>"$T/in.err"
ok "inside: the data directory is not created" test ! -e "$T/r-in"
ok "inside: the refusal says why" grep -q "tablespace $OID: .* overlaps the data directory" "$T/in.err"

set_bj ".tablespaces[0].location = \"$T/ts-dup\" | .tablespaces += [.tablespaces[0] | .oid += 1]"
exit_is "two tablespaces at one location: refused, exit 1" 1 restore --pgdata "$T/r-twice" 2>"$T/twice.err"
ok "twice: the refusal says why" grep -q "overlaps the destination of another tablespace" "$T/twice.err"
ok "twice: the data directory is not created" test ! -e "$T/r-twice"
ok "twice: the tablespace directory is not created" test ! -e "$T/ts-dup"

cp -p "$T/backup.json.orig" "$BJ"

# --- --tablespace-map goes through the same checks --------------------------------
exit_is "--tablespace-map OID=/etc/x: refused, exit 1" 1 \
    restore --pgdata "$T/r-map" --tablespace-map "$OID=/etc/ragsafe-x-$$" 2>"$T/map.err"
ok "mapped: nothing created under /etc" test ! -e "/etc/ragsafe-x-$$"
ok "mapped: the refusal names the mapping" grep -q "destination \"/etc/ragsafe-x-$$\" (--tablespace-map) is a system directory" "$T/map.err"
ln -s /etc "$T/etclink"
ok "mapped: the data directory is not created" test ! -e "$T/r-map"
exit_is "--tablespace-map through a symlink to /etc: refused" 1 \
    restore --pgdata "$T/r-map2" --tablespace-map "$OID=$T/etclink/ragsafe-x-$$" 2>"$T/link.err"
ok "symlink: nothing created under /etc" test ! -e "/etc/ragsafe-x-$$"
ok "symlink: the refusal says why" grep -q "tablespace $OID: .* is a system directory" "$T/link.err"
exit_is "--tablespace-map onto the data directory: refused" 1 \
    restore --pgdata "$T/r-map3" --tablespace-map "$OID=$T/r-map3" 2>"$T/same.err"
ok "onto the data directory: the refusal says why" grep -q "overlaps the data directory" "$T/same.err"
exit_is "--tablespace-map with a .. component: refused" 1 \
    restore --pgdata "$T/r-map4" --tablespace-map "$OID=$T/x/../../etc/ragsafe-x-$$" 2>"$T/dots.err"
ok "..: the refusal says why" grep -q "component" "$T/dots.err"
ok "mapped: no data directory created" bash -c "! ls -d '$T'/r-map* 2>/dev/null"

# --- directories the restore did not create ---------------------------------------
mkdir -m 0755 "$T/rootdir"    # root's, empty
exit_is "an empty root-owned destination: refused" 1 \
    restore --pgdata "$T/r-root" --tablespace-map "$OID=$T/rootdir" 2>"$T/root.err"
is "it keeps its owner and mode" "root 755" "$(stat -c '%U %a' "$T/rootdir")"
ok "the refusal names the owner fix" grep -q "chown postgres" "$T/root.err"
ok "root-owned: the data directory is not created" test ! -e "$T/r-root"
mkdir -m 0755 "$T/rootfull" && echo keep >"$T/rootfull/f"
exit_is "a non-empty root-owned destination with --force: refused" 1 \
    restore --force --pgdata "$T/r-root" --tablespace-map "$OID=$T/rootfull" 2>/dev/null
ok "it is not moved aside" bash -c "[ \"\$(cat '$T/rootfull/f')\" = keep ] && ! ls -d '$T'/rootfull.ragsafe-old-* 2>/dev/null"
is "it keeps its owner and mode" "root 755" "$(stat -c '%U %a' "$T/rootfull")"

# --- plan lists the destinations ----------------------------------------------------
"$PITR" plan --target-latest --repo "$REPO" --tablespace-map "$OID=$T/ts-new" >"$T/plan.out" 2>&1
ok "plan (text) lists the mapped destination" grep -q "^tablespace: *$OID \"$T/ts1\" -> \"$T/ts-new\" (--tablespace-map)\$" "$T/plan.out"
"$PITR" plan --target-latest --repo "$REPO" >"$T/plan0.out" 2>&1
ok "plan (text) lists the recorded destination" grep -q "^tablespace: *$OID \"$T/ts1\" -> \"$T/ts1\"\$" "$T/plan0.out"
"$PITR" plan --target-latest --json --repo "$REPO" --tablespace-map "$OID=$T/ts-new" >"$T/plan.json" 2>/dev/null
is "plan --json lists the destination" "$OID $T/ts1 $T/ts-new true" \
    "$(jq -r '.tablespaces[0] | "\(.oid) \(.location) \(.destination) \(.mapped)"' "$T/plan.json")"

# --- a relocated restore works ------------------------------------------------------
exit_is "restore --tablespace-map OID=$T/ts-new exits 0" 0 \
    restore --pgdata "$T/r" --tablespace-map "$OID=$T/ts-new" >"$T/r.out" 2>"$T/r.err"
ok "restore output lists the destination" grep -q "^tablespace: *$OID \"$T/ts1\" -> \"$T/ts-new\"" "$T/r.out"
is "pg_tblspc link points at the new directory" "$T/ts-new" "$(readlink "$T/r/pg_tblspc/$OID" 2>/dev/null || awk -v o="$OID" '$1 == o {print $2}' "$T/r/tablespace_map")"
is "the new directory is postgres's, 0700" "postgres 700" "$(stat -c '%U %a' "$T/ts-new")"
pg_set r "unix_socket_directories = '$T/r'"
pg_set r "archive_mode = off"
if pg_start r && pg_wait_for r "select pg_is_in_recovery()" f 120; then
    is "the restored server reads the tablespace table" 1500 "$(pg_sql r "select count(*) from t")"
    is "its tablespace is at the new location" "$T/ts-new" "$(pg_sql r "select pg_tablespace_location($OID)")"
else
    fail "the restored server starts"; tail -20 "$T/r.log"
fi
pg_stop r >/dev/null 2>&1

# --- an existing empty directory of the right owner keeps its mode -----------------
mkdir -m 0750 "$T/ts-own" && chown postgres: "$T/ts-own" && chmod 0750 "$T/ts-own"
exit_is "restore into an existing empty postgres-owned directory exits 0" 0 \
    restore --pgdata "$T/r2" --tablespace-map "$OID=$T/ts-own" >/dev/null 2>"$T/r2.err"
is "it keeps its mode" "postgres 750" "$(stat -c '%U %a' "$T/ts-own")"
ok "the restored files inside it are postgres's" bash -c "[ -z \"\$(find '$T/ts-own' ! -user postgres)\" ] && [ -n \"\$(ls -A '$T/ts-own')\" ]"

# --- a failed restore empties an existing destination, and keeps it ----------------
mkdir -m 0750 "$T/ts-own2" && chown postgres: "$T/ts-own2" && chmod 0750 "$T/ts-own2"
# (the backup is of the default, chunked format: a byte flipped in the middle of its
# largest chunk pack fails the restore after the files, tablespace ones too, are created)
PACK=$(ls -S "$REPO"/chunks/*.pack | head -1)
python3 -c 'import os, sys; f = open(sys.argv[1], "r+b"); n = os.path.getsize(sys.argv[1]) // 2; f.seek(n)
b = f.read(1); f.seek(n); f.write(bytes([b[0] ^ 0xff]))' "$PACK"
restore --pgdata "$T/r3" --tablespace-map "$OID=$T/ts-own2" >/dev/null 2>"$T/r3.err"
is "a damaged chunk pack fails the restore (exit 3)" 3 "$?"
is "the existing destination is still there, empty, its mode kept" "postgres 750 0" \
    "$(stat -c '%U %a' "$T/ts-own2" 2>/dev/null) $(ls -A "$T/ts-own2" 2>/dev/null | wc -l)"
ok "the failed restore's data directory is removed" test ! -e "$T/r3"

t_done
