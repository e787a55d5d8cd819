#!/usr/bin/env bash
# 030_basebackup.sh -- ragsafe-basebackup against a real PostgreSQL 15 primary that
# archives with ragsafe-archive into the same repository.
#
# A pgbench database with a tablespace is backed up with --format tar; stock
# `tar --zstd -xf` extracts base.tar.zst and the tablespace tar (where the manifest
# expects it, pg_tblspc/<oid>) and pg_verifybackup --no-parse-wal passes on the result;
# backup.json says what it should and the backup's WAL is in the repository; --json
# prints backup.json; a flipped byte in a stored tar, and in a chunked backup's
# manifest (the default format), is caught by --verify (exit 3);
# a second backup while one runs is refused (lock);
# kill -9 mid-stream leaves no complete backup and the next run removes the .partial
# and succeeds; a progress line appears on a pseudo-terminal and not otherwise;
# another cluster into the same repository exits 3; archive_mode = off is refused
# with the reason; a broken archive_command times out naming the missing segment;
# bad options exit 2; a data-page checksum failure (SQLSTATE XX001) exits 3.
source "$(dirname "$0")/lib.sh"
t_init

BB=$RAGSAFE_BIN/ragsafe-basebackup
REPO=$T/repo
mkdir -p "$REPO" "$T/ts1" && chown postgres: "$REPO" "$T/ts1"

# bb ARGS...: ragsafe-basebackup as postgres against cluster a.
bb() { as_pg "$BB" -d "$(pg_conn a)" --repo "$REPO" -c fast "$@"; }

pg_init a || exit 1
pg_set a "archive_mode = on"
pg_set a "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start a || exit 1
pg_sql a "create tablespace ts1 location '$T/ts1'" || exit 1
pg_sql a "create table big_ts (id int, t text) tablespace ts1;
          insert into big_ts select g, md5(g::text) from generate_series(1, 20000) g" || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 2 -q postgres >/dev/null 2>&1 || exit 1
tsoid=$(pg_sql a "select oid from pg_tablespace where spcname = 'ts1'")

# --- a --format tar backup, extracted with stock tools, verified with pg_verifybackup --
label=$(bb --format tar 2>"$T/bb1.err"); rc=$?
is "backup exits 0" 0 "$rc"
[ "$rc" = 0 ] || cat "$T/bb1.err"
ok "label is UTC time YYYYMMDDTHHMMSSZ" grep -Eq '^[0-9]{8}T[0-9]{6}Z$' <<<"$label"
B=$REPO/backups/$label
ok "base.tar.zst stored" test -s "$B/base.tar.zst"
ok "tablespace tar $tsoid.tar.zst stored" test -s "$B/$tsoid.tar.zst"
ok "backup_manifest stored" test -s "$B/backup_manifest"
ok "backup.json stored" test -s "$B/backup.json"
ok "no .partial left" bash -c "! ls -d '$REPO'/backups/*.partial 2>/dev/null"
ok "no progress line when stderr is not a terminal" bash -c "! grep -q ' of .*ETA' '$T/bb1.err'"

mkdir -p "$T/x/pg_tblspc/$tsoid"
ok "tar --zstd -xf extracts base.tar.zst" tar --zstd -xf "$B/base.tar.zst" -C "$T/x"
ok "tar --zstd -xf extracts the tablespace tar" tar --zstd -xf "$B/$tsoid.tar.zst" -C "$T/x/pg_tblspc/$tsoid"
ok "backup_label inside base.tar" grep -q "LABEL: ragsafe $label" "$T/x/backup_label"
ok "tablespace_map names the tablespace" grep -q "^$tsoid $T/ts1\$" "$T/x/tablespace_map"
ok "pg_verifybackup --no-parse-wal passes" "$PGBIN/pg_verifybackup" --no-parse-wal -q \
    -m "$B/backup_manifest" "$T/x"
# the check has teeth: a changed file in the extracted tree fails it
printf 'x' >>"$T/x/global/pg_control"
exit_is "pg_verifybackup fails on a changed file" 1 "$PGBIN/pg_verifybackup" --no-parse-wal -q \
    -m "$B/backup_manifest" "$T/x" 2>/dev/null

# backup.json: fields, sizes and checksums agree with the files
j() { jq -r "$1" "$B/backup.json"; }
is "backup.json label" "$label" "$(j .label)"
is "backup.json system_identifier" "$(pg_sql a 'select system_identifier from pg_control_system()')" \
    "$(j .system_identifier)"
is "backup.json tablespace oid" "$tsoid" "$(j '.tablespaces[0].oid')"
is "backup.json tablespace location" "$T/ts1" "$(j '.tablespaces[0].location')"
is "backup.json base.tar.zst sha256" "$(sha256sum <"$B/base.tar.zst" | cut -c1-64)" \
    "$(j '.files[] | select(.name == "base.tar.zst") | .sha256')"
is "backup.json base.tar.zst stored_bytes" "$(stat -c %s "$B/base.tar.zst")" \
    "$(j '.files[] | select(.name == "base.tar.zst") | .stored_bytes')"
is "backup.json base.tar.zst raw_bytes" "$(zstd -dc "$B/base.tar.zst" | wc -c)" \
    "$(j '.files[] | select(.name == "base.tar.zst") | .raw_bytes')"
is "backup.json manifest sha256" "$(sha256sum <"$B/backup_manifest" | cut -c1-64)" \
    "$(j '.files[] | select(.name == "backup_manifest") | .sha256')"
ok "backup.json times are UTC" grep -Eq '^[0-9-]{10}T[0-9:]{8}Z$' <<<"$(j .stop_time)"
ok "manifest WAL range starts at start_lsn" grep -q "\"Start-LSN\": \"$(j .start_lsn)\"" "$B/backup_manifest"
# every WAL segment from start to stop is in the repository
start_wal=$(j .start_wal)
stop_wal=$(j .stop_wal)
missing=0
for ((s = 16#${start_wal:16:8}; s <= 16#${stop_wal:16:8}; s++)); do
    w=$(printf '%s%08X' "${start_wal:0:16}" "$s")
    [ -f "$REPO/wal/${w:0:16}/$w.zst" ] || missing=$((missing + 1))
done
is "every WAL segment of the backup is in the repository" 0 "$missing"

# --- --verify and a flipped byte ------------------------------------------------------
exit_is "--verify on an intact backup exits 0" 0 as_pg "$BB" --repo "$REPO" --verify "$label"
cp "$B/base.tar.zst" "$T/saved.zst"
size=$(stat -c %s "$B/base.tar.zst")
printf '\xff' | dd of="$B/base.tar.zst" bs=1 seek=$((size / 2)) conv=notrunc status=none
cmp -s "$B/base.tar.zst" "$T/saved.zst" && printf '\x00' | dd of="$B/base.tar.zst" bs=1 \
    seek=$((size / 2)) conv=notrunc status=none
ok "the byte really changed" bash -c "! cmp -s '$B/base.tar.zst' '$T/saved.zst'"
exit_is "--verify reports the flipped byte (exit 3)" 3 as_pg "$BB" --repo "$REPO" --verify "$label" \
    2>"$T/verify.err"
ok "--verify names the damaged file" grep -q 'mismatch for ".*base.tar.zst"' "$T/verify.err"
cp "$T/saved.zst" "$B/base.tar.zst"
exit_is "--verify passes again once restored" 0 as_pg "$BB" --repo "$REPO" --verify "$label"
exit_is "--verify of an unknown label exits 1" 1 as_pg "$BB" --repo "$REPO" --verify nosuch 2>/dev/null

# --- --json ---------------------------------------------------------------------------
bb --label json1 --json >"$T/json1.out" 2>"$T/json1.err"
is "--json backup exits 0" 0 "$?"
is "--json prints backup.json" "json1" "$(jq -r .label "$T/json1.out" 2>/dev/null)"
ok "--json output equals the stored backup.json" cmp -s "$T/json1.out" "$REPO/backups/json1/backup.json"
exit_is "a label already taken is refused" 1 bb --label json1 2>/dev/null
ok "the existing backup is untouched" cmp -s "$T/json1.out" "$REPO/backups/json1/backup.json"
# the default format is chunked: its manifest's stored bytes are --verify's too
is "the default format is chunked" chunked "$(jq -r .layout "$T/json1.out")"
ok "no tar in a default backup" bash -c "! ls '$REPO/backups/json1' | grep -q tar"
C=$REPO/backups/json1/base.chunks.zst
cp "$C" "$T/saved.chunks"
printf '\x55' | dd of="$C" bs=1 seek=$(($(stat -c %s "$C") / 2)) conv=notrunc status=none
cmp -s "$C" "$T/saved.chunks" && printf '\xaa' | dd of="$C" bs=1 seek=$(($(stat -c %s "$C") / 2)) \
    conv=notrunc status=none
exit_is "--verify reports a flipped byte in a chunked backup's manifest (exit 3)" 3 \
    as_pg "$BB" --repo "$REPO" --verify json1 2>"$T/verify2.err"
ok "... naming base.chunks.zst" grep -q 'mismatch for ".*base.chunks.zst"' "$T/verify2.err"
cp "$T/saved.chunks" "$C"
exit_is "--verify passes again once restored" 0 as_pg "$BB" --repo "$REPO" --verify json1

# --- configuration: config file and environment ------------------------------------------
cat >"$T/rs.conf" <<CONF
# one file serves every tool
repo = "$REPO"
dbname = $(pg_conn a)
checkpoint = fast
compress-level = 5
unknown-key-of-another-tool = 1
CONF
chmod 644 "$T/rs.conf"
is "--config supplies repo, dbname, checkpoint" "conf1" \
    "$(as_pg "$BB" --config "$T/rs.conf" --label conf1 2>/dev/null)"
is "RAGSAFE_REPO supplies the repository" "env1" \
    "$(as_pg env -u RAGSAFE_CONFIG RAGSAFE_REPO="$REPO" "$BB" -d "$(pg_conn a)" -c fast --label env1 2>/dev/null)"
exit_is "a named config file that is missing exits 2" 2 as_pg "$BB" --config "$T/nope.conf" 2>/dev/null
exit_is "a flag wins over the config file (bad level on the command line exits 2)" 2 \
    as_pg "$BB" --config "$T/rs.conf" --compress-level 0 2>/dev/null

# --- progress on a pseudo-terminal ------------------------------------------------------
as_pg script -qec "$BB -d '$(pg_conn a)' --repo '$REPO' -c fast --label tty1 >'$T/tty1.out'" \
    "$T/tty1.log" >/dev/null 2>&1
is "backup on a pseudo-terminal exits 0" "tty1" "$(cat "$T/tty1.out")"
# (the last line has a rate only after 0.5 s: a quick backup on an idle machine has none)
ok "progress line on the terminal (done of estimate, or the last line: done in [, rate])" \
    grep -Eq 'backup: [0-9.]+ [KMG]?i?B (of [0-9.]+ [KMG]?i?B \([0-9]+%\)|in [0-9.]+ s( \([0-9.]+ [KMG]?i?B/s\))?)' "$T/tty1.log"

# --- kill -9 mid-stream -----------------------------------------------------------------
setpriv --reuid=postgres --regid=postgres --init-groups "$BB" -d "$(pg_conn a)" --repo "$REPO" \
    -c fast --max-rate 256k --label killed >/dev/null 2>"$T/kill.err" &
pid=$!
started=0
for ((i = 0; i < 300; i++)); do
    # the server streams files (a chunked backup stores nothing in its folder yet)
    if [ -d "$REPO/backups/killed.partial" ] &&
        [ "$(pg_sql a "select phase from pg_stat_progress_basebackup")" = "streaming database files" ]; then
        started=1; break
    fi
    sleep 0.1
done
exit_is "a second backup while one runs exits 1" 1 bb --label second 2>"$T/second.err"
ok "it says another backup is running" grep -q 'another backup or expire is running' "$T/second.err"
ok "the second backup left nothing" test ! -e "$REPO/backups/second.partial"
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
is "the streamer was mid-stream when killed" 1 "$started"
ok "killed backup is not complete" test ! -e "$REPO/backups/killed"
ok "killed backup left only a .partial" test -d "$REPO/backups/killed.partial"
label2=$(bb 2>"$T/bb2.err"); rc=$?
is "next backup after kill -9 exits 0" 0 "$rc"
ok "next backup says it removed the stale .partial" grep -q 'removing "backups/killed.partial"' "$T/bb2.err"
ok "stale .partial removed" test ! -e "$REPO/backups/killed.partial"
ok "next backup is complete" test -s "$REPO/backups/$label2/backup.json"
pg_wait_for a "select count(*) from pg_stat_activity where backend_type = 'walsender'" 0 30 >/dev/null
ok "the killed backup's walsender went away" test "$(pg_sql a "select count(*) from pg_stat_activity where backend_type = 'walsender'")" = 0

# --- usage errors -------------------------------------------------------------------------
exit_is "bad label exits 2" 2 bb --label '../x' 2>/dev/null
exit_is "label ending in .partial exits 2" 2 bb --label 'x.partial' 2>/dev/null
exit_is "bad --checkpoint exits 2" 2 bb --checkpoint sometimes 2>/dev/null
exit_is "bad --compress-level exits 2" 2 bb --compress-level 99 2>/dev/null
exit_is "bad --max-rate exits 2" 2 bb --max-rate 1k 2>/dev/null
exit_is "no repository exits 2" 2 as_pg env -u RAGSAFE_REPO "$BB" -d "$(pg_conn a)" 2>/dev/null
exit_is "unknown option exits 2" 2 bb --frobnicate 2>/dev/null
exit_is "--help exits 0" 0 as_pg "$BB" --help >/dev/null
ok "--version prints the version" bash -c "'$BB' --version | grep -q '^ragsafe-basebackup (ragsafe) [0-9]'"

# --- a broken archive_command: bounded wait, names the segment ----------------------------
pg_set a "archive_command = 'false'"
pg_sql a "select pg_reload_conf()" >/dev/null
sleep 0.5
exit_is "backup with a failing archiver exits 1" 1 bb --label noarch --wal-timeout 3 2>"$T/noarch.err"
ok "timeout names the missing segment" grep -Eq 'WAL segment "[0-9A-F]{24}" was not archived within 3 seconds' "$T/noarch.err"
ok "timeout shows pg_stat_archiver" grep -q 'pg_stat_archiver: .* failed' "$T/noarch.err"
ok "timed-out backup is not complete" test ! -e "$REPO/backups/noarch"
ok "timed-out backup's .partial is removed" test ! -e "$REPO/backups/noarch.partial"
pg_set a "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_sql a "select pg_reload_conf()" >/dev/null

# --- another cluster into the same repository -------------------------------------------
pg_init b -k || exit 1
pg_set b "archive_mode = on"
pg_set b "archive_command = 'true'"
pg_start b || exit 1
exit_is "another cluster into the same repository exits 3" 3 \
    as_pg "$BB" -d "$(pg_conn b)" --repo "$REPO" -c fast 2>"$T/other.err"
ok "refusal names both system identifiers" grep -q "$(pg_sql b 'select system_identifier from pg_control_system()')" "$T/other.err"
ok "nothing of the other cluster stored" bash -c "[ \$(ls '$REPO/backups' | wc -l) -eq 6 ]"

# --- a data-page checksum failure (XX001) -------------------------------------------------
REPO_B=$T/repo_b
mkdir -p "$REPO_B" && chown postgres: "$REPO_B"
pg_set b "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO_B %p %f'"
pg_sql b "create table c (id int, t text); insert into c select g, repeat('x', 100) from generate_series(1, 2000) g" || exit 1
relpath=$(pg_sql b "select pg_relation_filepath('c')")
pg_stop b
printf 'CORRUPT' | dd of="$T/b/$relpath" bs=1 seek=4000 conv=notrunc status=none
pg_start b || exit 1
exit_is "backup of a cluster with a corrupt page exits 3" 3 \
    as_pg "$BB" -d "$(pg_conn b)" --repo "$REPO_B" -c fast --label corrupt 2>"$T/xx001.err"
ok "reported as a data-page checksum failure" grep -q 'data-page checksum failure' "$T/xx001.err"
ok "corrupt backup is not complete" test ! -e "$REPO_B/backups/corrupt"

# --- archive_mode = off ---------------------------------------------------------------------
pg_stop b
pg_set b "archive_mode = off"
pg_start b || exit 1
exit_is "archive_mode = off is refused (exit 1)" 1 \
    as_pg "$BB" -d "$(pg_conn b)" --repo "$T/repo_off" -c fast 2>"$T/off.err"
ok "refusal gives the reason" grep -q 'archive_mode is off' "$T/off.err"
ok "refusal gives a hint" grep -q 'hint: set archive_mode = on' "$T/off.err"
ok "refused backup created no repository" test ! -e "$T/repo_off"

t_done
