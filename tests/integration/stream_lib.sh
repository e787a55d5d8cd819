# tests/integration/stream_lib.sh -- fixtures for the tests of what ragsafe-pitr makes of
# ragsafe-receive's objects (091_pitr_stream*.sh), sourced after lib.sh. They follow the
# receiver's contract (pitr/pitr.h), built from real WAL:
#
#     stream_partial NAME REPO    cluster NAME's segment in progress, as the receiver
#                                 stores it: the file from pg_wal with every byte past
#                                 pg_current_wal_flush_lsn() zeroed, stored as a WAL object
#                                 (by ragsafe-archive, into a scratch repository pinned to
#                                 the same cluster) and moved to
#                                 REPO/stream/<TTTTTTTT>/<segment>.partial. Sets
#                                 STREAM_SEG (the segment name), STREAM_FLUSH (the flush
#                                 LSN) and STREAM_OBJ (the object's path).
#     stream_status REPO JSON     REPO/stream/status.json holding JSON, stored as an
#                                 ordinary object (ragsafe-archive cannot: written as the
#                                 posix storage stores an unencrypted object, plain bytes).

stream_partial() {
    local name=$1 repo=$2 seg off scratch obj
    STREAM_FLUSH=$(pg_sql "$name" "select pg_current_wal_flush_lsn()") || return 1
    read -r seg off < <(pg_sql "$name" "select file_name || ' ' || file_offset from pg_walfile_name_offset('$STREAM_FLUSH')")
    [ -n "$seg" ] && [ -n "$off" ] || return 1
    cp "$T/$name/pg_wal/$seg" "$T/$seg.copy" || return 1
    # bytes past the flushed position are zero, as the receiver leaves them
    truncate -s "$off" "$T/$seg.copy" && truncate -s 16777216 "$T/$seg.copy" || return 1
    chown postgres: "$T/$seg.copy"
    scratch=$T/scratch.$seg
    repo_init "$scratch" && install -o postgres -m 0640 "$repo/repo.json" "$scratch/repo.json" || return 1
    as_pg "$RAGSAFE_BIN/ragsafe-archive" --repo "$scratch" "$T/$seg.copy" "$seg" || return 1
    obj=$(find "$scratch/wal" -name "$seg.zst")
    [ -f "$obj" ] || return 1
    install -d -o postgres -g postgres -m 0750 "$repo/stream" "$repo/stream/${seg:0:8}"
    STREAM_OBJ=$repo/stream/${seg:0:8}/$seg.partial
    mv "$obj" "$STREAM_OBJ" && chown postgres: "$STREAM_OBJ" || return 1
    rm -rf "$scratch" "$T/$seg.copy"
    STREAM_SEG=$seg
}

stream_status() {
    install -d -o postgres -g postgres -m 0750 "$1/stream"
    printf '%s' "$2" >"$1/stream/status.json"
    chown postgres: "$1/stream/status.json"
}
