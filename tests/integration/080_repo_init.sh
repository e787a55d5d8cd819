#!/usr/bin/env bash
# 080_repo_init.sh -- repositories are created on purpose (issue 13):
#   - a relative --repo (or "repo =" in the config file) is refused by every tool
#     (archive_command runs in PGDATA: it would land there), ragsafe-restore with 128,
#     and nothing is created in the current directory;
#   - a typo'd absolute repository fails loudly, with the install -d / init hint, and
#     creates nothing;
#   - ragsafe-pitr init: the root (0750, postgres's as root) and repo.json from --pgdata
#     or -d, the encryption record with --cipher-key-file; archiving then works; a
#     second init is a no-op (exit 0), another cluster's repository is refused (3);
#   - root runs on a postgres-owned repository (archive, basebackup, pitr info/verify/
#     expire/restore, milvus and files snapshots) leave nothing that postgres does not
#     own, and postgres keeps archiving and backing up afterwards;
#   - S3: init writes repo.json under the prefix (when s3rver is installed).
source "$(dirname "$0")/lib.sh"
t_init

B=$RAGSAFE_BIN
ARCH=$B/ragsafe-archive REST=$B/ragsafe-restore BB=$B/ragsafe-basebackup
PITR=$B/ragsafe-pitr MV=$B/ragsafe-milvus F=$B/ragsafe-files
FAKE="$RAGSAFE_SRC/tests/integration/fake_milvus.py"
REPO=$T/repo
sysid() { as_pg "$PGBIN/pg_controldata" -D "$T/$1" | awk -F': *' '/Database system identifier/ {print $2}'; }

# --- init with --pgdata, then archiving works ---------------------------------------------
pg_init src || exit 1
exit_is "init --pgdata: exit 0" 0 "$PITR" init --repo "$REPO" --pgdata "$T/src"
ok "init made the root owned by postgres" [ "$(stat -c %U:%G "$REPO")" = postgres:postgres ]
is "... mode 0750" 750 "$(stat -c %a "$REPO")"
ok "repo.json names the cluster of --pgdata" grep -q "\"system_identifier\" *: *\"$(sysid src)\"" "$REPO/repo.json"
cp "$REPO/repo.json" "$T/repo.json.saved"
pg_set src "archive_mode = on"
pg_set src "archive_command = '$ARCH --repo $REPO %p %f'"
pg_start src || exit 1
pg_sql src "create table t (id int); insert into t values (1)"
ok "the cluster archives into the initialised repository" switch_wal src
exit_is "init again: exit 0" 0 "$PITR" init --repo "$REPO" --pgdata "$T/src" 2>"$T/again.err"
ok "... says it is already initialised" grep -q "already initialised" "$T/again.err"
ok "... repo.json untouched" cmp -s "$REPO/repo.json" "$T/repo.json.saved"
exit_is "init again without --pgdata: exit 0" 0 "$PITR" init --repo "$REPO" 2>/dev/null

# --- another cluster; an encrypted repository from -d ------------------------------------
pg_init enc || exit 1
pg_set enc "archive_mode = on"
KEY=$T/key KEY2=$T/key2
openssl rand -hex 32 >"$KEY" && openssl rand -hex 32 >"$KEY2" && chmod 0600 "$KEY" "$KEY2" \
    && chown postgres: "$KEY" "$KEY2"
pg_set enc "archive_command = '$ARCH --repo $T/erepo --cipher-key-file $KEY %p %f'"
pg_start enc || exit 1
ECONN=$(pg_conn enc)
exit_is "init on another cluster's repository: exit 3" 3 "$PITR" init --repo "$REPO" --pgdata "$T/enc" 2>"$T/other.err"
ok "... names the system identifier mismatch" grep -q "system identifier mismatch" "$T/other.err"
ok "... repo.json untouched" cmp -s "$REPO/repo.json" "$T/repo.json.saved"
exit_is "init -d CONNINFO --cipher-key-file (as postgres): exit 0" 0 \
    as_pg "$PITR" init --repo "$T/erepo" -d "$ECONN" --cipher-key-file "$KEY"
ok "repo.json names the server of -d" grep -q "\"system_identifier\" *: *\"$(sysid enc)\"" "$T/erepo/repo.json"
ok "... and is encrypted" grep -q '"encryption"' "$T/erepo/repo.json"
ok "the encrypted cluster archives into it" switch_wal enc
exit_is "pitr info without the key: refused (exit 3)" 3 as_pg "$PITR" info --repo "$T/erepo" 2>/dev/null
exit_is "init with another key: refused (exit 3)" 3 as_pg "$PITR" init --repo "$T/erepo" --cipher-key-file "$KEY2" 2>/dev/null
exit_is "init again with the key: exit 0" 0 as_pg "$PITR" init --repo "$T/erepo" --cipher-key-file "$KEY" 2>/dev/null
# encrypted, no identity yet: cipher.json until the first segment
exit_is "init --cipher-key-file without an identity: exit 0" 0 "$PITR" init --repo "$T/erepo2" --cipher-key-file "$KEY"
ok "... the encryption record is there" [ -f "$T/erepo2/cipher.json" ]
ok "... no repo.json yet" [ ! -e "$T/erepo2/repo.json" ]
# plain, no identity: the first segment pins it
exit_is "init a bare repository: exit 0" 0 "$PITR" init --repo "$T/bare/deep/repo"
SEG=$(pg_sql src "select pg_walfile_name(pg_current_wal_lsn())")
ARCHIVED=$(cd "$REPO/wal" && find . -name '0*.zst' ! -name '*.backup.zst' -printf '%f\n' | sed 's/\.zst$//' | sort | head -1)
cp "$T/src/pg_wal/$ARCHIVED" "$T/seg" 2>/dev/null || as_pg "$REST" --repo "$REPO" "$ARCHIVED" "$T/seg"
chown postgres: "$T/seg"
exit_is "the first segment into the bare repository: exit 0" 0 as_pg "$ARCH" --repo "$T/bare/deep/repo" "$T/seg" "$ARCHIVED"
ok "... pins it to its cluster" grep -q "\"system_identifier\" *: *\"$(sysid src)\"" "$T/bare/deep/repo/repo.json"
exit_is "a segment without the key into the encrypted one (cipher.json only): refused (exit 3)" 3 \
    as_pg "$ARCH" --repo "$T/erepo2" "$T/seg" "$ARCHIVED" 2>/dev/null
ok "... nothing stored" [ ! -e "$T/erepo2/wal" ]
exit_is "... with the key: exit 0" 0 as_pg "$ARCH" --repo "$T/erepo2" --cipher-key-file "$KEY" "$T/seg" "$ARCHIVED"
ok "... repo.json now pins it, encrypted" grep -q '"encryption"' "$T/erepo2/repo.json"
exit_is "init --pgdata of a directory that is no data directory: exit 1" 1 \
    "$PITR" init --repo "$T/nopg-repo" --pgdata "$T/bare" 2>"$T/nopg.err"
ok "... says so" grep -q "global/pg_control" "$T/nopg.err"
ok "... and created nothing" [ ! -e "$T/nopg-repo" ]

# --- a relative repository: refused by every tool, nothing made in the cwd ------------------
# $T/repo exists: from $T, "repo" would work as a relative path if it were accepted
mkdir "$T/cwd" && chown postgres: "$T/cwd"
rel() { (cd "$T" && "$@"); }
relpg() { (cd "$T/cwd" && runuser -u postgres -- "$@"); }
exit_is "ragsafe-restore, relative repo: exit 128" 128 rel "$REST" --repo repo "$ARCHIVED" "$T/out" 2>"$T/rel.err"
ok "... the message names the path and the reason" \
    grep -q 'repository "repo" is a relative path' "$T/rel.err"
ok "... with PGDATA as the reason" grep -q "inside PGDATA" "$T/rel.err"
ok "... and the hint: an absolute path" grep -q "hint: give an absolute path" "$T/rel.err"
ok "... nothing written to %p" [ ! -e "$T/out" ]
exit_is "ragsafe-pitr info, relative repo: exit 1" 1 rel "$PITR" info --repo repo 2>/dev/null
exit_is "ragsafe-milvus list, relative repo: exit 1" 1 rel "$MV" list --repo repo 2>/dev/null
exit_is "ragsafe-files list, relative repo: exit 1" 1 rel "$F" list --repo repo --key-file "$KEY" 2>/dev/null
exit_is "ragsafe-archive, relative repo: exit 1" 1 relpg "$ARCH" --repo backups/repo3 "$T/seg" "$ARCHIVED" 2>"$T/relarch.err"
ok "... the message names the path" grep -q 'repository "backups/repo3" is a relative path' "$T/relarch.err"
printf 'repo = backups/repo4\n' >"$T/rel.conf" && chown postgres: "$T/rel.conf"
exit_is "ragsafe-archive, relative \"repo =\" in the config file: exit 1" 1 \
    relpg "$ARCH" --config "$T/rel.conf" "$T/seg" "$ARCHIVED" 2>/dev/null
exit_is "ragsafe-basebackup, relative repo: exit 1" 1 relpg "$BB" -d "$(pg_conn src)" --repo backups/repo5 -c fast 2>/dev/null
exit_is "ragsafe-pitr init, relative repo: exit 1" 1 relpg "$PITR" init --repo backups/repo6 2>/dev/null
exit_is "ragsafe-files snapshot, relative repo: exit 1" 1 \
    relpg "$F" snapshot --repo backups/repo7 --key-file "$KEY" --base "$T" rel.conf 2>/dev/null
is "nothing was created in the current directory" "" "$(ls -A "$T/cwd")"

# --- a typo'd absolute path: fails loudly, creates nothing ----------------------------------
python3 "$FAKE" gen "$T/vol" --mb 1 --seed 5 >/dev/null
mkdir "$T/parent" && chown postgres: "$T/parent"
TYPO=$T/parent/rpeo
before=$(ls -A "$T/parent")
exit_is "ragsafe-archive into a missing root: exit 1" 1 as_pg "$ARCH" --repo "$TYPO" "$T/seg" "$ARCHIVED" 2>"$T/typo.err"
ok "... names the path" grep -q "could not open repository \"$TYPO\"" "$T/typo.err"
ok "... hint: install -d or ragsafe-pitr init" \
    grep -q "hint: create it first: install -d -o postgres -m 0750 $TYPO, or ragsafe-pitr init --repo $TYPO" "$T/typo.err"
exit_is "ragsafe-basebackup into a missing root: exit 1" 1 as_pg "$BB" -d "$(pg_conn src)" --repo "$TYPO" -c fast 2>/dev/null
exit_is "ragsafe-files snapshot into a missing root: exit 1" 1 "$F" snapshot --repo "$TYPO" --key-file "$KEY" --base "$T" rel.conf 2>/dev/null
exit_is "ragsafe-milvus snapshot into a missing root: exit 1" 1 "$MV" snapshot --repo "$TYPO" --volume "etcd=$T/vol/etcd" \
    --volume "minio=$T/vol/minio" --volume "milvus=$T/vol/milvus" --assume-stopped --label typo 2>/dev/null
is "... nothing was created next to it" "$before" "$(ls -A "$T/parent")"

# --- root on a postgres-owned repository: everything stays postgres's ----------------------
# a segment archived by root: PostgreSQL's own attempts fail meanwhile, it stays ready
pg_sql src "alter system set archive_command = 'false'" && pg_sql src "select pg_reload_conf()" >/dev/null
sleep 1
pg_sql src "insert into t values (2)"
RSEG=$(pg_sql src "select pg_walfile_name(pg_current_wal_insert_lsn())")
pg_sql src "select pg_switch_wal()" >/dev/null
ok "a segment waits for archiving" bash -c "sleep 1; [ -f '$T/src/pg_wal/archive_status/$RSEG.ready' ]"
exit_is "root: ragsafe-archive $RSEG" 0 "$ARCH" --repo "$REPO" "$T/src/pg_wal/$RSEG" "$RSEG"
pg_sql src "alter system set archive_command = '$ARCH --repo $REPO %p %f'" && pg_sql src "select pg_reload_conf()" >/dev/null
ok "root: ragsafe-basebackup" bash -c "'$BB' -d '$(pg_conn src)' --repo '$REPO' -c fast -l rootbb >/dev/null 2>'$T/rootbb.err'"
ok "root: ragsafe-pitr info" bash -c "'$PITR' info --repo '$REPO' >/dev/null"
ok "root: ragsafe-pitr verify" bash -c "'$PITR' verify --repo '$REPO' >/dev/null 2>'$T/rootverify.err'"
ok "root: ragsafe-pitr expire" bash -c "'$PITR' expire --repo '$REPO' >/dev/null 2>&1"
ok "root: ragsafe-pitr restore (records it in restores/)" \
    bash -c "'$PITR' restore --repo '$REPO' --pgdata '$T/r1' --target-latest >/dev/null 2>'$T/r1.err'"
ok "... the restore record is there" bash -c "ls '$REPO/restores/' | grep -q ."
ok "root: ragsafe-milvus snapshot" bash -c "'$MV' snapshot --repo '$REPO' --volume 'etcd=$T/vol/etcd' --volume 'minio=$T/vol/minio' --volume 'milvus=$T/vol/milvus' --assume-stopped --label m1 >/dev/null 2>&1"
mkdir -p "$T/cfg" && echo "a = 1" >"$T/cfg/app.conf"
ok "root: ragsafe-files snapshot" bash -c "'$F' snapshot --repo '$REPO' --key-file '$KEY' --base '$T/cfg' app.conf >/dev/null 2>&1"
ok "... objects of all of them are there" bash -c "[ -d '$REPO/backups/rootbb' ] && [ -d '$REPO/milvus' ] && [ -d '$REPO/files' ] && [ -d '$REPO/locks' ]"
is "nothing in the repository is owned by another user than postgres" "" "$(find "$REPO" ! -user postgres)"
is "... or another group" "" "$(find "$REPO" ! -group postgres)"
NSEG=$(pg_sql src "select pg_walfile_name(pg_current_wal_insert_lsn())")
pg_sql src "insert into t values (3); select pg_switch_wal()" >/dev/null
# (the archiver may still be in its 60 s pause after the failures above)
ok "postgres archives again after the root runs" \
    pg_wait_for src "select last_archived_wal >= '$NSEG' from pg_stat_archiver" t 180
ok "... $NSEG stored by postgres" bash -c "[ \"\$(stat -c %U '$REPO/wal/${NSEG:0:16}/$NSEG.zst')\" = postgres ]"
ok "postgres backs up again after the root runs" bash -c "runuser -u postgres -- '$BB' -d '$(pg_conn src)' --repo '$REPO' -c fast -l pgbb >/dev/null 2>'$T/pgbb.err'"

# --- S3: init writes repo.json under the prefix ----------------------------------------------
if [ -f "${RAGSAFE_S3RVER_DIR:-/var/tmp/ragsafe-s3rver}/node_modules/s3rver/bin/s3rver.js" ]; then
    s3_start ragsafe
    exit_is "S3: init --pgdata: exit 0" 0 "$PITR" init --repo s3://ragsafe/pg --pgdata "$T/src" 2>/dev/null
    ok "S3: repo.json under the prefix names the cluster" \
        grep -q "\"system_identifier\" *: *\"$(sysid src)\"" "$T/s3/ragsafe/pg/repo.json._S3rver_object"
    exit_is "S3: init again: exit 0" 0 "$PITR" init --repo s3://ragsafe/pg --pgdata "$T/src" 2>/dev/null
    exit_is "S3: init of another cluster: exit 3" 3 "$PITR" init --repo s3://ragsafe/pg --pgdata "$T/enc" 2>/dev/null
    exit_is "S3: init into a bucket that does not exist: exit 1" 1 "$PITR" init --repo s3://nosuchbucket/pg 2>/dev/null
else
    echo "# s3rver not installed: the S3 case is not run"
fi

t_done
