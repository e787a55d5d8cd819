#!/usr/bin/env bash
# 091_pitr_stream.sh -- ragsafe-pitr plan, info and verify with a receiver's partial
# segment (ragsafe-receive's stream/<tli>/<segment>.partial, see pitr/pitr.h).
#
# A cluster archives through ragsafe-archive; a base backup; two commits A and B, one
# second apart, in the segment in progress; that segment is stored as the receiver
# stores it (stream_lib.sh: real WAL, zeroes past the flush LSN); then the primary dies
# (stop -m immediate, data directory deleted). plan --target-latest reaches commit B
# and names the partial (text and --json); a time between A and B is reachable (the
# partial holds the commit after it); info's window ends at B; verify reads the partial
# and does not call its zero tail damage. A partial the archive has overtaken, one
# beyond a gap, and one of a timeline that has a later timeline are not used.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/stream_lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1
pg_sql src "create table t (id int primary key, v text)" || exit 1
pg_sql src "insert into t select g, 'base' from generate_series(1, 100) g"
backup=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast 2>"$T/bb.err")
[ -n "$backup" ] || { cat "$T/bb.err"; echo "# no base backup"; exit 1; }
pg_sql src "insert into t values (200, 'archived')"
switch_wal src || exit 1
LAST_ARCHIVED=$(pg_sql src "select last_archived_wal from pg_stat_archiver")

# commits A and B in the segment in progress, never archived
XID_A=$(pg_sql src "insert into t values (300, 'A'); select txid_current()")
MA=$(pg_sql src "select clock_timestamp()")
sleep 1.1
XID_B=$(pg_sql src "insert into t values (400, 'B'); select txid_current()")
stream_partial src "$REPO" || { echo "# the partial fixture failed"; exit 1; }
SEG=$STREAM_SEG
# the fixture must be the segment right after the last archived one
[ $((16#${LAST_ARCHIVED:16:8} + 1)) = $((16#${SEG:16:8})) ] ||
    { echo "# partial $SEG does not follow $LAST_ARCHIVED"; exit 1; }
echo "# partial $SEG, flushed to $STREAM_FLUSH; transactions A $XID_A, B $XID_B"
as_pg "$PGBIN/pg_ctl" -D "$T/src" -m immediate -w stop >/dev/null
rm -rf "${T:?}/src"

# --- plan --target-latest reaches B, through the partial --------------------------------
"$PITR" plan --repo "$REPO" --target-latest >"$T/plan.out" 2>"$T/plan.err"
echo "# plan --target-latest: exit $?"
ok "plan names the streamed partial" grep -q "including a streamed partial segment $SEG (flushed up to " "$T/plan.out"
ok "plan: last replayed is transaction B ($XID_B)" grep -q "last replayed:   transaction $XID_B at" "$T/plan.out"
ok "plan: the stop is the end of the streamed WAL" grep -q "recovery stops:  at the end of the streamed WAL" "$T/plan.out"
"$PITR" plan --repo "$REPO" --target-latest --json >"$T/plan.json" 2>"$T/plan_json.err"
is "plan --json: streamed_partial.segment" "$SEG" "$(jq -r .streamed_partial.segment "$T/plan.json")"
is "plan --json: streamed_partial.key" "stream/${SEG:0:8}/$SEG.partial" "$(jq -r .streamed_partial.key "$T/plan.json")"
FL=$(jq -r .streamed_partial.flushed_lsn "$T/plan.json")
ok "plan --json: flushed_lsn ($FL) reaches the commit of B and not past the flush ($STREAM_FLUSH)" \
    python3 -c "
import sys
p = lambda s: (int(s.split('/')[0], 16) << 32) | int(s.split('/')[1], 16)
fl, stop, flush = p('$FL'), p('$(jq -r .stop_lsn "$T/plan.json")'), p('$STREAM_FLUSH')
sys.exit(0 if stop <= fl <= flush else 1)"
is "plan --json: last commit is B" "$XID_B" "$(jq -r .last_commit_xid "$T/plan.json")"
is "plan --json: last segment is the partial" "$SEG" "$(jq -r .last_segment "$T/plan.json")"

# --- a time between A and B: only the partial proves it reachable ----------------------
"$PITR" plan --repo "$REPO" --target-time "$MA" >"$T/plan_t.out" 2>"$T/plan_t.err"
is "plan --target-time between A and B exits 0 (the partial holds the commit after it)" 0 "$?"
ok "plan --target-time stops before the commit of B" grep -q "recovery stops:  before commit of transaction $XID_B" "$T/plan_t.out"
ok "plan --target-time replays A" grep -q "last replayed:   transaction $XID_A at" "$T/plan_t.out"

# --- info: the window ends at B -------------------------------------------------------
as_pg "$PITR" info --repo "$REPO" --json >"$T/info.json" 2>"$T/info.err"
is "info: timeline 1's window ends at B" "$XID_B" "$(jq -r '.timelines[0].window.to_xid' "$T/info.json")"
is "info: timeline 1 names its streamed partial" "$SEG" "$(jq -r '.timelines[0].streamed_partial' "$T/info.json")"

# --- verify: the partial is read and checked; its zero tail is not damage --------------
as_pg "$PITR" verify --repo "$REPO" --json >"$T/verify.json" 2>"$T/verify.err"
is "verify: exit 0, intact, the partial verified" "0 true 1" \
    "$? $(jq -r '"\(.intact) \(.streamed_partials)"' "$T/verify.json")"
# damage inside the partial is found (a flipped byte in the stored object)
cp "$STREAM_OBJ" "$T/partial.good"
python3 - "$STREAM_OBJ" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 0xFF
open(p, 'wb').write(bytes(b))
PY
exit_is "verify: a damaged partial exits 3" 3 as_pg "$PITR" verify --repo "$REPO" >/dev/null 2>"$T/verify_bad.err"
ok "verify names the damaged partial" grep -q "stream/${SEG:0:8}/$SEG.partial" "$T/verify_bad.err"
cp "$T/partial.good" "$STREAM_OBJ"

# --- partials that do not extend the archive are not used ------------------------------
# one for a segment already archived (the receiver deletes it soon; the archive wins)
install -o postgres -m 0640 "$STREAM_OBJ" "$REPO/stream/${SEG:0:8}/$LAST_ARCHIVED.partial"
# one beyond a gap (two segments after the last archived)
AHEAD=${SEG:0:16}$(printf '%08X' $((16#${SEG:16:8} + 2)))
install -o postgres -m 0640 "$STREAM_OBJ" "$REPO/stream/${SEG:0:8}/$AHEAD.partial"
"$PITR" plan --repo "$REPO" --target-latest --json >"$T/plan2.json" 2>"$T/plan2.err"
is "plan uses the partial that extends the archive, not the others" "$SEG" \
    "$(jq -r .streamed_partial.segment "$T/plan2.json")"
rm -f "$REPO/stream/${SEG:0:8}/$LAST_ARCHIVED.partial" "$REPO/stream/${SEG:0:8}/$AHEAD.partial"

# a later timeline: the partial of timeline 1 is not served by ragsafe-restore then
printf '1\t%s\tno recovery target specified\n' "$(jq -r .backup_stop_lsn "$T/plan.json")" >"$T/00000002.history"
chown postgres: "$T/00000002.history"
as_pg "$RAGSAFE_BIN/ragsafe-archive" --repo "$REPO" "$T/00000002.history" 00000002.history
"$PITR" plan --repo "$REPO" --target-latest --target-timeline 1 --json >"$T/plan3.json" 2>"$T/plan3.err"
is "plan on timeline 1 once a later timeline exists: exit 0, streamed_partial null" "0 true" \
    "$? $(jq -r 'has("streamed_partial") and .streamed_partial == null' "$T/plan3.json")"

t_done
