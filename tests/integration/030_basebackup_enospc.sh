#!/usr/bin/env bash
# 030_basebackup_enospc.sh -- the repository fills up in the middle of a base backup
# (a small tmpfs): ragsafe-basebackup exits 1 naming the cause, no complete backup
# appears, its .partial is gone; once there is room again the next backup succeeds
# and the archiver (which shares the file system) recovers too.
source "$(dirname "$0")/lib.sh"
t_init

BB=$RAGSAFE_BIN/ragsafe-basebackup
REPO=$T/fs/repo
mkdir -p "$T/fs"
mount -t tmpfs -o size=3m,mode=0755 tmpfs "$T/fs" || { fail "mount a tmpfs"; t_done; exit 1; }
t_on_exit "umount '$T/fs'"
mkdir -p "$REPO" && chown postgres: "$REPO"

pg_init a || exit 1
pg_set a "archive_mode = on"
pg_set a "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $REPO %p %f'"
pg_start a || exit 1
# incompressible rows so the base tar cannot fit in what is left of 3 MB
pg_sql a "create table r (b bytea); alter table r alter b set storage external;
          insert into r select decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), 'hex')
          from generate_series(1, 8000) x, generate_series(1, 500) g group by g" || exit 1

exit_is "backup into a full repository exits 1" 1 \
    as_pg "$BB" -d "$(pg_conn a)" --repo "$REPO" -c fast --label full 2>"$T/full.err"
ok "the message names the cause" grep -q 'No space left on device' "$T/full.err"
ok "no complete backup" test ! -e "$REPO/backups/full"
ok "no .partial left" test ! -e "$REPO/backups/full.partial"
ok "no temp file left under backups/" bash -c "[ -z \"\$(find '$REPO/backups' -name '*.tmp' 2>/dev/null)\" ]"
ok "no temp file left under chunks/" bash -c "[ -z \"\$(find '$REPO/chunks' -name '.*' 2>/dev/null)\" ]"

mount -o remount,size=64m "$T/fs" || fail "grow the tmpfs"
label=$(as_pg "$BB" -d "$(pg_conn a)" --repo "$REPO" -c fast --wal-timeout 60 2>"$T/ok.err"); rc=$?
is "with room again the next backup exits 0" 0 "$rc"
[ "$rc" = 0 ] || cat "$T/ok.err"
ok "and is complete" test -s "$REPO/backups/$label/backup.json"
exit_is "and verifies" 0 as_pg "$BB" --repo "$REPO" --verify "$label"
exit_is "ragsafe-pitr verify reads every chunk it names" 0 as_pg "$RAGSAFE_BIN/ragsafe-pitr" --repo "$REPO" verify

t_done
