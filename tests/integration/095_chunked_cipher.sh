#!/usr/bin/env bash
# 095_chunked_cipher.sh -- chunked base backups in an encrypted repository:
#   - dedup still works (the second backup stores < 40 % of the first's bytes);
#   - names reveal nothing: no object name holds the SHA-256 (or any hex run of 64) of a
#     known content, packs and indexes are sealed (no zstd magic in the clear);
#   - restore --jobs 2 and verify work with the key, verify without it fails;
#   - rekey re-seals packs, indexes and manifests: verify and restore work with the new key.
source "$(dirname "$0")/lib.sh"
t_init

R=$T/repo
KEY=$T/key
NEW=$T/new.key
PITR=$RAGSAFE_BIN/ragsafe-pitr
BB=$RAGSAFE_BIN/ragsafe-basebackup
mkdir -p "$R" && chown postgres: "$R"
openssl rand -hex 32 >"$KEY"
openssl rand -hex 32 >"$NEW"
chown postgres: "$KEY" "$NEW"
chmod 0600 "$KEY" "$NEW"
pg_init src || exit 1
pg_set src "archive_mode = on"
pg_set src "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $R --cipher-key-file $KEY %p %f'"
pg_start src || exit 1
as_pg pgbench -i -q -s 5 -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1
# a tablespace: its archive is chunked too (<oid>.chunks.zst)
install -d -o postgres -g postgres -m 0700 "$T/ts1"
pg_sql src "create tablespace ts1 location '$T/ts1'" || exit 1
pg_sql src "create table tt tablespace ts1 as select g from generate_series(1, 50000) g" || exit 1
TSOID=$(pg_sql src "select oid from pg_tablespace where spcname = 'ts1'")
# databases for dump: app (dumped), other (restored hollow in dump's scratch copy)
q() { as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/src" -p 5432 -U postgres -d "$1" -c "$2"; }
pg_sql src "create database app" && pg_sql src "create database other" || exit 1
q app "create table t as select g as id from generate_series(1, 100) g" || exit 1
q other "create table big as select g, md5(g::text) v from generate_series(1, 100000) g" || exit 1
SUM="select md5(string_agg(aid::text || ':' || abalance, ',' order by aid)) from pgbench_accounts"
bb() { as_pg "$BB" -d "$(pg_conn src)" --repo "$R" --cipher-key-file "$KEY" -c fast --format chunked \
       --no-progress --json "$@"; }
stored() { python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])'; }

B1=$(bb --label b1 2>"$T/bb1.err" | stored)
ok "chunked backup b1 in an encrypted repository" [ -n "$B1" ]
as_pg pgbench -n -N -t 200 -h "$T/src" -p 5432 -U postgres postgres >/dev/null 2>&1
B2=$(bb --label b2 2>"$T/bb2.err" | stored)
ok "chunked backup b2" [ -n "$B2" ]
S2=$(pg_sql src "$SUM"); L2=$(pg_sql src "select pg_current_wal_lsn()")
pg_sql src "create table later (id int)"; switch_wal src || exit 1
echo "# stored bytes: b1 $B1, b2 $B2"
ok "dedup works encrypted: b2 stores < 40 % of b1" [ "$((B2 * 100))" -lt "$((B1 * 40))" ]

# names: the digest of a known content (PG_VERSION, and a whole 32 KiB chunk of a table)
ACC=$(pg_sql src "select pg_relation_filepath('pgbench_accounts')")
D1=$(sha256sum "$T/src/PG_VERSION" | cut -c1-64)
D2=$(head -c 32768 "$T/src/$ACC" | sha256sum | cut -c1-64)
ok "no object name holds a known content's digest" bash -c "! find '$R' | grep -Eq '$D1|$D2'"
ok "no object name is a 64-hex digest" bash -c "! find '$R/chunks' '$R/backups' | grep -Eq '[0-9a-f]{64}'"
ok "packs are sealed (no record magic in the clear)" python3 -c '
import os, sys
d = sys.argv[1]
packs = [f for f in os.listdir(d) if f.endswith(".pack")]
assert packs
for f in packs:
    assert b"\x5e\x2a\x4d\x18" not in open(os.path.join(d, f), "rb").read(4096)
' "$R/chunks"
ok "indexes are sealed (no index magic in the clear)" bash -c "! grep -l RSCIDX01 '$R'/chunks/*.idx"

"$PITR" verify --repo "$R" --cipher-key-file "$KEY" >"$T/v.out" 2>&1
is "verify with the key exits 0" 0 "$?"
"$PITR" restore --repo "$R" --cipher-key-file "$KEY" --pgdata "$T/r1" --target-lsn "$L2" --jobs 2 \
    --tablespace-map "$TSOID=$T/ts_r1" --set "unix_socket_directories=$T/r1" >"$T/r1.out" 2>"$T/r1.err"
is "restore with the key exits 0" 0 "$?"
if pg_start r1 && pg_wait_for r1 "select pg_is_in_recovery()" f 120; then
    is "the restore holds b2's state" "$S2" "$(pg_sql r1 "$SUM")"
    is "the tablespace's table is back" 50000 "$(pg_sql r1 "select count(*) from tt")"
    pg_stop r1
else
    fail "the restore holds b2's state"
fi

ok "b2 has a chunk manifest for the tablespace" [ -s "$R/backups/b2/$TSOID.chunks.zst" ]
"$PITR" extract --repo "$R" --cipher-key-file "$KEY" b2 "$T/x" >"$T/x.out" 2>"$T/x.err"
is "extract exits 0" 0 "$?"
ok "the tablespace is extracted as a plain directory" [ -d "$T/x/pg_tblspc/$TSOID" ]
ok "pg_verifybackup -n accepts the extracted directory" "$PGBIN/pg_verifybackup" -n "$T/x"

mkdir -p "$T/scratch"
"$PITR" dump --repo "$R" --cipher-key-file "$KEY" --target-lsn "$L2" --dbname app \
    --file "$T/app.dump" --scratch "$T/scratch" >"$T/dump.out" 2>"$T/dump.err"
is "dump of a database from a chunked backup exits 0" 0 "$?"
ok "the dump holds app's 100 rows" grep -q "table: *public.t: 100 rows" "$T/dump.out"

# rekey: packs, indexes and manifests re-sealed; everything works with the new key
as_pg "$PITR" rekey --repo "$R" --cipher-key-file "$KEY" --new-cipher-key-file "$NEW" >"$T/rk.out" 2>"$T/rk.err"
is "rekey of a repository with chunked backups exits 0" 0 "$?"
"$PITR" verify --repo "$R" --cipher-key-file "$NEW" >"$T/v2.out" 2>&1
is "verify with the new key exits 0" 0 "$?"
"$PITR" restore --repo "$R" --cipher-key-file "$NEW" --pgdata "$T/r2" --target-lsn "$L2" \
    --tablespace-map "$TSOID=$T/ts_r2" --set "unix_socket_directories=$T/r2" >"$T/r2.out" 2>"$T/r2.err"
is "restore with the new key exits 0" 0 "$?"
if pg_start r2 && pg_wait_for r2 "select pg_is_in_recovery()" f 120; then
    is "the re-keyed restore holds b2's state" "$S2" "$(pg_sql r2 "$SUM")"
    pg_stop r2
else
    fail "the re-keyed restore holds b2's state"
fi
"$PITR" verify --repo "$R" --cipher-key-file "$KEY" >"$T/v3.out" 2>&1
is "verify with the old key after rekey: exit 3" 3 "$?"
t_done
