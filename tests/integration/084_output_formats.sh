#!/usr/bin/env bash
# 084_output_formats.sh -- machine output is one family: every JSON output parses, every
# time in it (and in info and plan lines) is RFC 3339 in UTC with "Z" (fractional
# seconds where the value has them), lists are arrays, repo.json records the major
# PostgreSQL version, counts have correct plurals, segment names have all 24 digits.
#
# A primary archives into a repository (ragsafe-archive creates repo.json), a base
# backup, commits, a restore with --start beside it (its JSON and its record carry the
# last replayed commit), a copy of the repository with a missing segment (info --json
# gaps), expire --dry-run, a Milvus-shaped volume snapshot, a ragsafe-files snapshot.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
MV=$RAGSAFE_BIN/ragsafe-milvus
F=$RAGSAFE_BIN/ragsafe-files
REPO=$T/repo
RFC='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$'

# bad_times FILE: "path: value" for each time in a JSON document that is not RFC 3339
# UTC: a string that starts like a date, or whose key names a time (…time, …_at,
# created, started, finished, recorded, stopped, timestamp). "value" is a target as
# the user typed it and is left alone. Empty output: all good.
bad_times() {
    jq -r --arg re "$RFC" '
        [paths(type == "string") as $p | {p: $p, v: getpath($p)}
         | select(($p[-1] | tostring) != "value")
         | select((.v | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}"))
                  or (($p[-1] | tostring) | test("(^|_)(time|timestamp|created|started|finished|recorded|stopped|at)$")))
         | select(.v | test($re) | not)
         | "\(.p | map(tostring) | join(".")): \(.v)"] | .[]' "$1"
}
# times_ok NAME FILE: FILE parses as JSON and holds no bad time (named in the output)
times_ok() {
    local bad
    if ! jq -e . "$2" >/dev/null 2>&1; then
        fail "$1: parses as JSON"
        return
    fi
    bad=$(bad_times "$2")
    [ -z "$bad" ] || echo "# $1: $bad"
    ok "$1: parses, every time is RFC 3339 UTC" test -z "$bad"
}
# text_times_ok NAME FILE: no PostgreSQL-style time ("2026-12-01 12:00:00.1+00") in a
# text output, outside quotes (a target as the user typed it)
text_times_ok() {
    ok "$1: no time in PostgreSQL's syntax" bash -c "! sed \"s/'[^']*'//g\" '$2' | grep -Eq '[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}|[0-9]\+00\b'"
}
# no_short_seg NAME FILE: no 16-hex-digit segment number standing alone
no_short_seg() {
    ok "$1: segment names have 24 digits" bash -c "! grep -Eq '(^|[^0-9A-F])[0-9A-F]{16}([^0-9A-F]|$)' '$2'"
}
# plurals_ok NAME FILE: never "1 files", "1 segments"...
plurals_ok() {
    ok "$1: no plural after 1" bash -c "! grep -Eqw '1 (segment|file|snapshot|object|backup|byte|entrie|row|director(ie)?|problem)s' '$2'"
}

pg_archiving src "$REPO" || exit 1
as_pg "$PGBIN/pgbench" -i -s 1 -q -h "$T/src" -p 5432 postgres >"$T/pgbench.log" 2>&1 || { cat "$T/pgbench.log"; exit 1; }
switch_wal src || exit 1

# --- repo.json, written by ragsafe-archive before any base backup --------------------
is "repo.json pg_version is the major version (archiver, from WAL)" 15 "$(jq .pg_version "$REPO/repo.json")"
times_ok "repo.json" "$REPO/repo.json"

as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast --json >"$T/bb.json" 2>"$T/bb.err"
is "basebackup --json exits 0" 0 "$?"
backup=$(jq -r .label "$T/bb.json")
times_ok "basebackup --json" "$T/bb.json"
ok "backup.json keeps the full server version" grep -Eq '^15[0-9]{4}$' <<<"$(jq .server_version "$T/bb.json")"
is "repo.json pg_version still the major version" 15 "$(jq .pg_version "$REPO/repo.json")"

as_pg "$PGBIN/pgbench" -n -t 100 -h "$T/src" -p 5432 postgres >>"$T/pgbench.log" 2>&1 || { cat "$T/pgbench.log"; exit 1; }
sleep 1.1
TA=$(pg_sql src "select clock_timestamp()")
sleep 1.1
pg_sql src "create table after_ta (i int)"
switch_wal src || exit 1

# --- pitr info / plan / verify -------------------------------------------------------
"$PITR" info --repo "$REPO" --json >"$T/info.json"
is "info --json exits 0" 0 "$?"
times_ok "info --json" "$T/info.json"
ok "info --json: the newest commit has microseconds" \
    grep -Eq '\.[0-9]{6}Z$' <<<"$(jq -r '.timelines[0].newest_commit.time' "$T/info.json")"
is "info --json: gaps is an array" array "$(jq -r '.timelines[0].gaps | type' "$T/info.json")"
"$PITR" info --repo "$REPO" >"$T/info.txt"
text_times_ok "info" "$T/info.txt"
ok "info: shows RFC 3339 times" grep -Eq '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z' "$T/info.txt"
plurals_ok "info" "$T/info.txt"
no_short_seg "info" "$T/info.txt"

"$PITR" plan --repo "$REPO" --target-time "$TA" --json >"$T/plan.json"
is "plan --json exits 0" 0 "$?"
times_ok "plan --json" "$T/plan.json"
is "plan --json: the target in UTC" "$(date -u -d "$TA" '+%Y-%m-%dT%H:%M:%S.%6NZ')" "$(jq -r .target.utc "$T/plan.json")"
"$PITR" plan --repo "$REPO" --target-time "$TA" >"$T/plan.txt"
text_times_ok "plan" "$T/plan.txt"
plurals_ok "plan" "$T/plan.txt"

"$PITR" verify --repo "$REPO" --json >"$T/verify.json"
is "verify --json exits 0" 0 "$?"
times_ok "verify --json" "$T/verify.json"
"$PITR" verify --repo "$REPO" >"$T/verify.txt"
plurals_ok "verify" "$T/verify.txt"

# --- a restore with --start beside the primary: its JSON and its record ---------------
mkdir -p "$T/wbin"
cat >"$T/wbin/pg_ctl" <<EOF
#!/bin/sh
exec "$PGBIN/pg_ctl" -o "-p 5433 -k $T/copy" "\$@"
EOF
chmod 0755 "$T/wbin" "$T/wbin/pg_ctl"
T_CLUSTERS+=(copy)
"$PITR" restore --repo "$REPO" --pgdata "$T/copy" --target-time "$TA" --start --pg-bin "$T/wbin" \
    --json >"$T/restore.json" 2>"$T/restore.err"
is "restore --start --json exits 0" 0 "$?"
times_ok "restore --json" "$T/restore.json"
ok "restore --json: the last replayed commit is an RFC 3339 time" \
    grep -Eq "$RFC" <<<"$(jq -r .recovery.last_replay_timestamp "$T/restore.json")"
ok "recovery_target_time keeps PostgreSQL's syntax" \
    grep -Eq "^recovery_target_time = '[0-9-]{10} [0-9:.]{15}\+00'" "$T/copy/postgresql.auto.conf"
as_pg "$PGBIN/pg_ctl" -D "$T/copy" -m fast -w stop >/dev/null
REC=$(find "$REPO/restores" -name '*.json' | head -1)
ok "a restore record exists" test -n "$REC"
times_ok "restore record" "$REC"
ok "record: the last replayed commit is an RFC 3339 time" \
    grep -Eq "$RFC" <<<"$(jq -r .server.replay_timestamp "$REC")"
# over the stopped copy with --force: the old contents move aside, undone by the rollback
"$PITR" restore --repo "$REPO" --pgdata "$T/copy" --target-time "$TA" --force --json >"$T/restore2.json" 2>"$T/restore2.err"
is "restore --force --json exits 0" 0 "$?"
times_ok "restore --force --json" "$T/restore2.json"
is "restore --json: rollback is an array of command lines" array "$(jq -r '.rollback | type' "$T/restore2.json")"
is "restore --json: rollback, one line each: stop, move the copy away, move the old back" 3 \
    "$(jq '[.rollback[] | select(test("\n") | not)] | length' "$T/restore2.json")"
"$PITR" info --repo "$REPO" --json >"$T/info2.json"
times_ok "info --json with a restore record" "$T/info2.json"
is "info --json lists the records" 2 "$(jq '.restores | length' "$T/info2.json")"

# --- a missing segment: gaps is an array of ranges ------------------------------------
for i in 1 2; do pg_sql src "insert into after_ta values ($i)"; switch_wal src || exit 1; done
cp -a "$REPO" "$T/repo_gap"
start_seg=$(jq -r .start_wal "$REPO/backups/$backup/backup.json")
mid=$(printf '%08X%016X' 1 $((16#${start_seg:8:16} + 1)))
rm "$T/repo_gap/wal/${mid:0:16}/$mid.zst"
"$PITR" info --repo "$T/repo_gap" --json >"$T/gap.json" 2>/dev/null
is "info --json: the gap as a range" "[{\"first\":\"$mid\",\"last\":\"$mid\",\"segments\":1}]" \
    "$(jq -c '.timelines[] | select(.timeline == 1) | .gaps' "$T/gap.json")"

# --- expire: the retention line names a whole segment --------------------------------
"$PITR" expire --repo "$REPO" --dry-run --keep-window 1s --keep-backups 1s --min-backups 1 >"$T/expire.txt" 2>&1
is "expire --dry-run exits 0" 0 "$?"
no_short_seg "expire" "$T/expire.txt"
ok "expire: names the first kept segment" grep -Eq "WAL kept from segment [0-9A-F]{24} " "$T/expire.txt"
plurals_ok "expire" "$T/expire.txt"
"$PITR" expire --repo "$REPO" --dry-run --keep-window 1s --keep-backups 1s --min-backups 1 --json >"$T/expire.json"
times_ok "expire --json" "$T/expire.json"
ok "expire --json: wal_kept_from has 24 digits" grep -Eq '^[0-9A-F]{24}$' <<<"$(jq -r .wal_kept_from "$T/expire.json")"

# --- ragsafe-milvus: a one-file volume ----------------------------------------------
mkdir -p "$T/vol/a" "$T/mrepo" "$T/frepo"   # repository roots exist (no tool makes one by accident)
echo hello >"$T/vol/a/f"
"$MV" snapshot --repo "$T/mrepo" --volume "a=$T/vol/a" --label s1 --assume-stopped --json >"$T/msnap.json"
is "milvus snapshot exits 0" 0 "$?"
times_ok "milvus snapshot --json" "$T/msnap.json"
"$MV" list --repo "$T/mrepo" --json >"$T/mlist.json"
times_ok "milvus list --json" "$T/mlist.json"
ok "milvus list --json: started is there" grep -Eq "$RFC" <<<"$(jq -r '.[0].started' "$T/mlist.json")"
"$MV" verify --repo "$T/mrepo" --json >"$T/mverify.json"
times_ok "milvus verify --json" "$T/mverify.json"
"$MV" verify --repo "$T/mrepo" >"$T/mverify.txt"
plurals_ok "milvus verify" "$T/mverify.txt"
ok "milvus verify: \"1 snapshot, 1 object\"" grep -q "verified 1 snapshot, 1 object " "$T/mverify.txt"
"$MV" expire --repo "$T/mrepo" --keep-last 1 --dry-run --json >"$T/mexpire.json"
times_ok "milvus expire --json" "$T/mexpire.json"

# --- ragsafe-files: one file ---------------------------------------------------------
"$F" keygen "$T/fkey" 2>/dev/null
mkdir -p "$T/base"
echo secret >"$T/base/one.conf"
(cd "$T/base" && "$F" snapshot --repo "$T/frepo" --key-file "$T/fkey" --json one.conf) >"$T/fsnap.json"
is "files snapshot exits 0" 0 "$?"
times_ok "files snapshot --json" "$T/fsnap.json"
"$F" list --repo "$T/frepo" --key-file "$T/fkey" --json >"$T/flist.json"
times_ok "files list --json" "$T/flist.json"
"$F" list --repo "$T/frepo" --key-file "$T/fkey" >"$T/flist.txt"
ok "files list: \"1 file\"" grep -Pq '\t1 file\t7 bytes$' "$T/flist.txt"
"$F" verify --repo "$T/frepo" --key-file "$T/fkey" --json >"$T/fverify.json"
times_ok "files verify --json" "$T/fverify.json"
"$F" verify --repo "$T/frepo" --key-file "$T/fkey" >"$T/fverify.txt"
is "files verify: \"1 snapshot, 1 object\"" "ok: 1 snapshot, 1 object verified" "$(cat "$T/fverify.txt")"

t_done
