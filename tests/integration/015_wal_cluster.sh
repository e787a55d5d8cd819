#!/usr/bin/env bash
# 015_wal_cluster.sh -- one cluster per repository, on both the io_uring path and the
# fallback (RAGSAFE_NO_URING=1).
#
# Cluster A archives into a repository and pins it. Cluster B (another initdb, so
# another system identifier, same segment names) then archives into the same
# repository through a real archive_command: every attempt exits 3 with a message
# naming both identifiers, B's archiver counts failures and never a success, and the
# repository stays byte-for-byte as A left it. A keeps archiving meanwhile.
source "$(dirname "$0")/lib.sh"
t_init

ARCH=$RAGSAFE_BIN/ragsafe-archive

sysid() { as_pg "$PGBIN/pg_controldata" -D "$T/$1" | awk -F: '/Database system identifier/ {gsub(/ /, "", $2); print $2}'; }
repo_sums() { (cd "$1" && find . -type f | sort | xargs -r sha256sum); }
names_both() { grep -q "$SYSID_A" "$1" && grep -q "$SYSID_B" "$1"; }
obj_matches() {
    [ -f "$1" ] && zstd -q -t "$1" 2>/dev/null && zstd -q -dc <"$1" 2>/dev/null | cmp -s - "$2"
}
make_wal() { pg_sql "$1" "set client_min_messages = warning; create table if not exists t (i int); insert into t select generate_series(1, 20000)"; }

for c in a b; do
    pg_init $c || exit 1
    pg_set $c "wal_level = replica"
    pg_set $c "archive_mode = on"
    pg_set $c "archive_command = ''"
    pg_set $c "log_min_messages = log"
    pg_start $c || exit 1
done
SYSID_A=$(sysid a) SYSID_B=$(sysid b)
ok "two clusters with different system identifiers" [ -n "$SYSID_A" -a "$SYSID_A" != "$SYSID_B" ]

for mode in uring fallback; do
    R=$T/repo_$mode
    repo_init "$R"
    if [ $mode = fallback ]; then envp="env RAGSAFE_NO_URING=1"; else envp="env -u RAGSAFE_NO_URING"; fi
    cmd="$envp $RAGSAFE_BIN/ragsafe-archive --repo $R %p %f"

    # A pins the repository
    pg_sql a "alter system set archive_command = '$cmd'" && pg_sql a "select pg_reload_conf()" >/dev/null
    make_wal a
    last=$(pg_sql a "select pg_walfile_name(pg_switch_wal())")
    ok "$mode: cluster A archives $last" pg_wait_for a "select last_archived_wal >= '$last' from pg_stat_archiver" t 60
    ok "$mode: repo.json names A" grep -q "\"system_identifier\" *: *\"$SYSID_A\"" "$R/repo.json"
    before=$(repo_sums "$R")
    nobj=$(find "$R/wal" -name '*.zst' | wc -l)
    ok "$mode: A's objects in the repository ($nobj)" [ "$nobj" -ge 1 ]

    # B tries the same repository
    fails=$(pg_sql b "select failed_count from pg_stat_archiver")
    okb=$(pg_sql b "select archived_count from pg_stat_archiver")
    logpos=$(stat -c %s "$T/b.log")
    pg_sql b "alter system set archive_command = '$cmd'" && pg_sql b "select pg_reload_conf()" >/dev/null
    make_wal b
    pg_sql b "select pg_switch_wal()" >/dev/null
    ok "$mode: cluster B's archive_command fails (3 tries at least)" \
        pg_wait_for b "select failed_count >= $fails + 3 from pg_stat_archiver" t 60
    is "$mode: B never archived anything" "$okb" "$(pg_sql b "select archived_count from pg_stat_archiver")"
    tail -c +$((logpos + 1)) "$T/b.log" >"$T/b-$mode.log"
    ok "$mode: PostgreSQL saw exit code 3" grep -q "archive command failed with exit code 3" "$T/b-$mode.log"
    ok "$mode: the message names the repository's system identifier" grep -q "$SYSID_A" "$T/b-$mode.log"
    ok "$mode: the message names B's system identifier" grep -q "$SYSID_B" "$T/b-$mode.log"
    is "$mode: the repository is byte-for-byte as A left it" "$before" "$(repo_sums "$R")"
    is "$mode: no temp file left" "" "$(find "$R" -name '.*' -printf '%P\n')"

    # the same, called directly with one of B's segments
    bseg=$(pg_sql b "select last_failed_wal from pg_stat_archiver")
    cp "$T/b/pg_wal/$bseg" "$T/bseg-$mode" && chown postgres: "$T/bseg-$mode"
    exit_is "$mode: ragsafe-archive on B's segment exits 3" 3 \
        as_pg env ${envp#env } "$ARCH" --repo "$R" "$T/bseg-$mode" "$bseg" 2>"$T/err"
    ok "$mode: ... naming both identifiers" names_both "$T/err"

    # B stops trying; A goes on archiving into its repository
    pg_sql b "alter system set archive_command = ''" && pg_sql b "select pg_reload_conf()" >/dev/null
    make_wal a
    last=$(pg_sql a "select pg_walfile_name(pg_switch_wal())")
    ok "$mode: A still archives ($last)" pg_wait_for a "select last_archived_wal >= '$last' from pg_stat_archiver" t 60
    is "$mode: A never failed" 0 "$(pg_sql a "select failed_count from pg_stat_archiver")"
    ok "$mode: ... and its objects are exact" obj_matches "$R/wal/${last:0:16}/$last.zst" "$T/a/pg_wal/$last"
done

t_done
