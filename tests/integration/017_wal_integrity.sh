#!/usr/bin/env bash
# 017_wal_integrity.sh -- ragsafe-archive never leaves a damaged object as the last
# copy, on real pgbench WAL, in a plain and an encrypted local repository and in S3
# (s3rver; its objects are files we can damage).
#
# Duplicate names: the stored object is read whole, never judged by its trailer.
# Intact and identical: 0, untouched. Intact and different: 3, untouched. Damaged (4
# bytes overwritten in the middle, truncated): replaced by the offered file with a
# warning naming the object, 0, and ragsafe-restore returns the original bytes; a
# history file too. An existing object that cannot be read (EACCES, S3 down): 1, untouched.
#
# A fresh repository whose first file is a timeline history file (a promoted standby
# archiving into a new repository): pinned at once from the data directory's
# global/pg_control, so ragsafe-restore serves it (history: 0, a segment: 1 = not
# found, never 128).
#
# A file system without RENAME_NOREPLACE (renameat2 answering EINVAL, as NFS and FUSE
# do; a preloaded shim): archiving and a base backup's commit still work.
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore
BUCKET=ragsafe-017
KEY=$T/key

wal_key() {
    case $1 in
        *.history) echo "wal/$1.zst" ;;
        *) echo "wal/${1:0:16}/$1.zst" ;;
    esac
}

# damage_middle FILE: overwrite 4 bytes in the middle.
damage_middle() {
    printf '\xde\xad\xbe\xef' | dd of="$1" bs=1 seek=$(($(stat -c %s "$1") / 2)) count=4 conv=notrunc status=none
}

openssl rand -hex 32 >"$KEY" && chmod 0600 "$KEY" && chown postgres: "$KEY"

# A real cluster whose WAL is copied out by `cp`; then a standby of it promoted onto
# timeline 2 (its pg_wal holds a real 00000002.history, its global/pg_control the
# cluster's system identifier).
pg_cp_archiving a "$T/segs" || exit 1
as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -i -s 1 -q postgres >/dev/null 2>&1 || exit 1
for i in 1 2; do
    as_pg "$PGBIN/pgbench" -h "$T/a" -p 5432 -U postgres -n -t 300 postgres >/dev/null 2>&1 || exit 1
    switch_wal a || exit 1
done
as_pg "$PGBIN/pg_basebackup" -h "$T/a" -p 5432 -U postgres -X stream -c fast -R -D "$T/sb" || exit 1
pg_stop a
rm -f "$T/sb/.s.PGSQL.5432" "$T/sb/.s.PGSQL.5432.lock"   # copied: the socket dir is the data dir
sed -i "s|^unix_socket_directories.*|unix_socket_directories = '$T/sb'|; /^archive_command/d" "$T/sb/postgresql.conf"
pg_set sb "archive_mode = off"
pg_start sb || exit 1
as_pg "$PGBIN/pg_ctl" -D "$T/sb" -w -t 60 promote >/dev/null || exit 1
pg_stop sb
SYSID=$(as_pg "$PGBIN/pg_controldata" -D "$T/a" | awk -F: '/Database system identifier/ {gsub(/ /, "", $2); print $2}')
HIST=$T/sb/pg_wal/00000002.history
ok "the promoted standby wrote 00000002.history" [ -s "$HIST" ]
mapfile -t SEGS < <(cd "$T/segs" && ls | grep -E '^[0-9A-F]{24}$' | sort)
ok "the cluster produced at least 3 segments" [ "${#SEGS[@]}" -ge 3 ]
S1=${SEGS[1]} S2=${SEGS[2]}
mkdir -p "$T/pg_wal" "$T/other" && cp "$T/segs/$S1" "$T/segs/$S2" "$HIST" "$T/pg_wal/" \
    && cp "$T/segs/$S1" "$T/other/$S1" && chown -R postgres: "$T/pg_wal" "$T/other"
# a valid segment under S1's name (its page headers intact) with other content
printf 'ragsafe' | dd of="$T/other/$S1" bs=1 seek=$((8 * 1048576 + 100)) conv=notrunc status=none
printf '1\t0/9000000\tno recovery target specified\n' >"$T/other/00000002.history"
chown postgres: "$T/other/00000002.history"

# run_mode MODE: the duplicate rules in one repository.
run_mode() {
    local m=$1 repo objdir sfx o oh k=() st
    case $m in
        plain) repo=$T/repo-plain; repo_init "$repo"; objdir=$repo; sfx= ;;
        sealed) repo=$T/repo-sealed; repo_init "$repo"; objdir=$repo; sfx=; k=(--cipher-key-file "$KEY") ;;
        s3) repo=s3://$BUCKET/p; objdir=$T/s3/$BUCKET/p; sfx=._S3rver_object ;;
    esac
    arch() { as_pg "$ARCH" --repo "$repo" "${k[@]}" "$@"; }
    rest() { as_pg "$REST" --repo "$repo" "${k[@]}" "$@"; }
    o=$objdir/$(wal_key "$S1")$sfx
    oh=$objdir/wal/00000002.history.zst$sfx

    exit_is "$m: archive $S1" 0 arch "$T/pg_wal/$S1" "$S1"
    exit_is "$m: archive 00000002.history" 0 arch "$T/pg_wal/00000002.history" 00000002.history
    ok "$m: the object is where we damage it" [ -f "$o" ]
    cp "$o" "$T/o.saved"

    # intact and identical: 0, untouched
    exit_is "$m: identical duplicate exits 0" 0 arch "$T/pg_wal/$S1" "$S1" 2>/dev/null
    ok "$m: ... object untouched" cmp -s "$o" "$T/o.saved"

    # intact and different: 3, untouched
    exit_is "$m: different content under the name exits 3" 3 arch "$T/other/$S1" "$S1" 2>"$T/err"
    ok "$m: ... reported as different content" grep -q "different content" "$T/err"
    ok "$m: ... object untouched" cmp -s "$o" "$T/o.saved"

    # damaged in the middle (trailer intact): repaired
    damage_middle "$o"
    cp "$o" "$T/o.damaged"
    exit_is "$m: a damaged stored copy: re-archiving exits 0" 0 arch "$T/pg_wal/$S1" "$S1" 2>"$T/err"
    ok "$m: ... a warning names the object" grep -q "warning.*$(wal_key "$S1")" "$T/err"
    ok "$m: ... the object was replaced" bash -c "! cmp -s '$o' '$T/o.damaged'"
    rm -f "$T/out"
    exit_is "$m: ... ragsafe-restore exits 0" 0 rest "$S1" "$T/out"
    ok "$m: ... and returns the original bytes" cmp -s "$T/out" "$T/segs/$S1"
    exit_is "$m: ... and the next identical duplicate exits 0" 0 arch "$T/pg_wal/$S1" "$S1" 2>/dev/null

    # truncated (trailer gone): repaired
    truncate -s $(($(stat -c %s "$o") - 100)) "$o"
    exit_is "$m: a truncated stored copy: re-archiving exits 0" 0 arch "$T/pg_wal/$S1" "$S1" 2>"$T/err"
    ok "$m: ... a warning names the object" grep -q "warning.*$(wal_key "$S1")" "$T/err"
    rm -f "$T/out"
    exit_is "$m: ... ragsafe-restore exits 0" 0 rest "$S1" "$T/out"
    ok "$m: ... and returns the original bytes" cmp -s "$T/out" "$T/segs/$S1"

    # a history file: different intact 3, damaged repaired
    cp "$oh" "$T/oh.saved"
    exit_is "$m: a different history file under the name exits 3" 3 arch "$T/other/00000002.history" 00000002.history 2>/dev/null
    ok "$m: ... history object untouched" cmp -s "$oh" "$T/oh.saved"
    damage_middle "$oh"
    exit_is "$m: a damaged stored history file: re-archiving exits 0" 0 arch "$T/pg_wal/00000002.history" 00000002.history 2>"$T/err"
    ok "$m: ... a warning names the object" grep -q "warning.*wal/00000002.history.zst" "$T/err"
    rm -f "$T/out"
    exit_is "$m: ... ragsafe-restore exits 0" 0 rest 00000002.history "$T/out"
    ok "$m: ... and returns the original bytes" cmp -s "$T/out" "$HIST"

    # an existing object that cannot be read: 1 (retry), untouched
    damage_middle "$o"
    cp "$o" "$T/o.damaged"
    if [ $m = s3 ]; then
        s3_stop
        exit_is "$m: S3 unreachable while checking a duplicate: exit 1" 1 arch "$T/pg_wal/$S1" "$S1" 2>/dev/null
        s3_start "$BUCKET"
    else
        chmod 000 "$o"
        exit_is "$m: an unreadable stored object (EACCES): exit 1, not 3" 1 arch "$T/pg_wal/$S1" "$S1" 2>/dev/null
        chmod 0640 "$o"
    fi
    ok "$m: ... object untouched" cmp -s "$o" "$T/o.damaged"
    exit_is "$m: ... readable again: repaired, exit 0" 0 arch "$T/pg_wal/$S1" "$S1" 2>/dev/null
    rm -f "$T/out"
    exit_is "$m: ... ragsafe-restore exits 0" 0 rest "$S1" "$T/out"
    ok "$m: ... and returns the original bytes" cmp -s "$T/out" "$T/segs/$S1"
    is "$m: no temp file left" "" "$(find "$objdir" -name '.*' -printf '%P\n')"
}

run_mode plain
run_mode sealed
ok "sealed: the objects are encrypted" bash -c "head -c 4 '$T/repo-sealed/$(wal_key "$S1")' | grep -q RGSE"

s3_start "$BUCKET"
run_mode s3

# --- a fresh repository whose first file is a history file (the promoted standby's),
# archived as PostgreSQL does it: cwd = the data directory, %p = pg_wal/%f
fresh() {
    local repo=$1 what=$2
    exit_is "$what: only 00000002.history into a fresh repository: exit 0" 0 \
        bash -c "cd '$T/sb' && runuser -u postgres -- '$ARCH' --repo '$repo' pg_wal/00000002.history 00000002.history"
    rm -f "$T/out"
    exit_is "$what: ragsafe-restore 00000002.history exits 0" 0 as_pg "$REST" --repo "$repo" 00000002.history "$T/out"
    ok "$what: ... with the history file's bytes" cmp -s "$T/out" "$HIST"
    rm -f "$T/out"
    exit_is "$what: ragsafe-restore of a segment exits 1 (not in the archive), not 128" 1 \
        as_pg "$REST" --repo "$repo" "$S1" "$T/out" 2>/dev/null
    ok "$what: ... and writes nothing" [ ! -e "$T/out" ]
    exit_is "$what: then a segment of the same cluster: exit 0" 0 as_pg "$ARCH" --repo "$repo" "$T/pg_wal/$S1" "$S1"
}
repo_init "$T/fresh" "$T/fresh2"
fresh "$T/fresh" local
ok "local: repo.json pins the system identifier from pg_control" \
    grep -q "\"system_identifier\" *: *\"$SYSID\"" "$T/fresh/repo.json"
ok "local: ... and the segment size" grep -q '"wal_segment_size" *: *16777216' "$T/fresh/repo.json"
fresh "s3://$BUCKET/fresh" s3

# outside a data directory nothing says which system it is: refused, nothing stored
exit_is "a history file into a fresh repository from outside a data directory: exit 1" 1 \
    as_pg "$ARCH" --repo "$T/fresh2" "$T/other/00000002.history" 00000002.history 2>"$T/err"
ok "... the hint says how to run it" grep -q "archive_command" "$T/err"
ok "... nothing stored" [ ! -e "$T/fresh2/wal" ]

# --- a file system without RENAME_NOREPLACE (NFS, many FUSE file systems: renameat2
# answers EINVAL), made with a preloaded renameat2 that refuses every flag: the WAL
# commit and the backup commit (.partial -> final folder) still work, and still never
# replace anything
cat >"$T/noflag.c" <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
int renameat2(int od, const char *o, int nd, const char *n, unsigned flags)
{
    if (flags) {
        errno = EINVAL;
        return -1;
    }
    return renameat(od, o, nd, n);
}
EOF
ok "the renameat2 shim builds" gcc -shared -fPIC -O1 -o "$T/noflag.so" "$T/noflag.c"
chmod 0755 "$T/noflag.so"
NF=$T/noflag
repo_init "$NF"
# (verify_asan_link_order=0: under `make asan` the shim comes before ASan's runtime)
noflag() { as_pg env LD_PRELOAD="$T/noflag.so" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" "$@"; }
exit_is "no RENAME_NOREPLACE: archive $S1 exits 0" 0 noflag "$ARCH" --repo "$NF" "$T/pg_wal/$S1" "$S1"
exit_is "... other content under the name: 3" 3 noflag "$ARCH" --repo "$NF" "$T/other/$S1" "$S1" 2>/dev/null
rm -f "$T/out"
exit_is "... ragsafe-restore exits 0" 0 as_pg "$REST" --repo "$NF" "$S1" "$T/out"
ok "... and returns the original bytes" cmp -s "$T/out" "$T/segs/$S1"
pg_set a "archive_command = 'LD_PRELOAD=$T/noflag.so ASAN_OPTIONS=verify_asan_link_order=0 $ARCH --repo $NF %p %f'"
pg_start a || exit 1
label=$(noflag "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn a)" --repo "$NF" -c fast 2>"$T/err")
st=$?
is "no RENAME_NOREPLACE: a base backup exits 0" 0 "$st"
[ "$st" = 0 ] || sed 's/^/#   /' "$T/err"
ok "... committed under its label" [ -n "$label" -a -d "$NF/backups/$label" ]
is "... no .partial folder left" "" "$(ls "$NF/backups" | grep partial)"
exit_is "... and it verifies" 0 as_pg "$RAGSAFE_BIN/ragsafe-basebackup" --repo "$NF" --verify "$label"
pg_stop a

t_done
