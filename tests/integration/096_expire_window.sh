#!/usr/bin/env bash
# 096_expire_window.sh -- expire --keep-window with --keep-daily and --now, on real
# backups and real WAL.
#
# Four backups b1..b4 a few seconds apart, with commits and segment switches between
# them (the WAL between b2 and b3 holds mark G). expire decides "as of" --now, so a
# window of a few seconds puts b4 inside it and b3 just before it:
#   0. --now in the future without --dry-run is refused (it would delete what today's
#      policy keeps).
#   1. --keep-daily 1 (dry run, --json): b4 kept for the window (and as today's newest),
#      b3 for the window's start, b1 and b2 expired; nothing deleted.
#   2. --keep-daily 0 --min-backups 3 (real): b2 is kept outside the window, so only its
#      start..stop WAL stays: the WAL below b2 and between b2's stop and b3's start goes,
#      from b3's start on everything stays. The output names each backup's reason and
#      the kept and removed ranges. Then verify passes (expire's holes are not missing
#      segments), info reports no gap and its window starts at b3, a plan to each kept
#      backup's stop and to an instant of the window succeeds, a plan to mark G (in the
#      removed WAL) is refused, and a restore of b2 to its stop recovers b2's data.
#   3. --now the next UTC day, --keep-window 1h: --keep-daily 2 keeps b4 as the newest
#      backup of its day; --keep-daily 1 keeps it only for the window's start.
# Backups on different UTC days cannot be made honestly here: the per-day choice among
# several days is tested in tests/unit/check_retention.c.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
REPO=$T/repo
pg_archiving src "$REPO" || exit 1

bb() { as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn src)" --repo "$REPO" -c fast -l "$1" 2>"$T/$1.err" >/dev/null \
    || { cat "$T/$1.err"; exit 1; }; }
bj() { jq -r ".$2" "$REPO/backups/$1/backup.json"; }
epoch() { date -u -d "$1" +%s; }
segno() { echo $((16#${1:8:8} * 256 + 16#${1:16:8})); }  # 16 MB segments: 256 per xlogid
wal_names() { find "$REPO/wal" -name '0*.zst' ! -name '*.history.zst' -printf '%f\n' | sed 's/\.zst$//' | grep -E '^[0-9A-F]{24}$' | sort; }
ins() { pg_sql src "insert into t values ($1)"; }

pg_sql src "create table t (id int primary key)" || exit 1
ins 1
bb b1
ins 2
switch_wal src
sleep 1.1
bb b2
sleep 1.1
ins 3
MG=$(pg_sql src "select clock_timestamp()")
sleep 1.1
ins 4
switch_wal src
sleep 1.1
bb b3
ins 5
switch_wal src
sleep 1.1
bb b4
sleep 1.1
ins 6
MW=$(pg_sql src "select clock_timestamp()")
sleep 1.1
ins 7
switch_wal src || exit 1

S3=$(epoch "$(bj b3 stop_time)")
S4=$(epoch "$(bj b4 stop_time)")
NOW=$((S4 + 1))        # past by now: the commits after b4 took longer
KW=$((NOW - S3 - 1))   # the window opens one second after b3 ended, before b4 ended
NOWS=$(date -u -d "@$NOW" +%Y-%m-%dT%H:%M:%SZ)
DAY4=$(date -u -d "@$S4" +%Y-%m-%d)
b2_start=$(bj b2 start_wal)
b3_start=$(bj b3 start_wal)
b2_stop_lsn=$(bj b2 stop_lsn)
b2_stop_seg=$(printf '%08X%08X' $((16#${b2_stop_lsn%/*})) $((16#${b2_stop_lsn#*/} / 16#1000000)))
b2_stop_seg=${b2_start:0:8}$b2_stop_seg
ok "b3 and b4 ended at least 2 s apart" test $((S4 - S3)) -ge 2

WAL_BEFORE=$(wal_names)
gap=$(for n in $WAL_BEFORE; do s=$(segno "$n"); [ "$s" -gt "$(segno "$b2_stop_seg")" ] && [ "$s" -lt "$(segno "$b3_start")" ] && echo "$n"; done)
below=$(for n in $WAL_BEFORE; do [ "$(segno "$n")" -lt "$(segno "$b2_start")" ] && echo "$n"; done)
island=$(for n in $WAL_BEFORE; do s=$(segno "$n"); [ "$s" -ge "$(segno "$b2_start")" ] && [ "$s" -le "$(segno "$b2_stop_seg")" ] && echo "$n"; done)
tail_wal=$(for n in $WAL_BEFORE; do [ "$(segno "$n")" -ge "$(segno "$b3_start")" ] && echo "$n"; done)
ok "there is WAL between b2's stop and b3's start" test -n "$gap"
ok "there is WAL below b2's start" test -n "$below"

# --- 1. dry run: window, window start, today's newest ---------------------------------
"$PITR" expire --repo "$REPO" --keep-window "${KW}s" --keep-daily 1 --now "$NOWS" --dry-run --json \
    >"$T/dry.json" 2>"$T/dry.err"
dry_rc=$?
is "dry run --json exits 0" 0 "$dry_rc"
why() { jq -r --arg l "$2" '.backups[] | select(.label == $l) | .why' "$1"; }
is "b4: inside the window" window "$(why "$T/dry.json" b4)"
is "b4: also the newest of its UTC day" "$DAY4" "$(jq -r '.backups[] | select(.label == "b4") | .day' "$T/dry.json")"
is "b3: restores the window's start" window-start "$(why "$T/dry.json" b3)"
is "b2: expired" expired "$(why "$T/dry.json" b2)"
is "b1: expired" expired "$(why "$T/dry.json" b1)"
is "dry run: two backups to delete" 2 "$(jq .backups_deleted "$T/dry.json")"
is "dry run: --now is the decision's time" "$NOWS" "$(jq -r .now "$T/dry.json")"
# (after a dry run that ran: an expire that refused deletes nothing either)
is "dry run deleted nothing" "0 $WAL_BEFORE" "$dry_rc $(wal_names)"
ok "dry run kept b1" bash -c "[ $dry_rc = 0 ] && test -f '$REPO/backups/b1/backup.json'"

# --- 2. islands: b2 kept outside the window, with its own WAL only ---------------------
args=(--repo "$REPO" --keep-window "${KW}s" --keep-daily 0 --min-backups 3 --now "$NOWS")
"$PITR" expire "${args[@]}" --dry-run >"$T/dry.out" 2>&1
is "dry run (text) exits 0" 0 "$?"
ok "text: b2 kept for --min-backups" grep -q "^backup b2 (ended .*): keep, --min-backups$" "$T/dry.out"
ok "text: b1 expired" grep -q "^backup b1 (ended .*): expired, would delete$" "$T/dry.out"
ok "text: b2's WAL kept start to stop" grep -q "^wal kept $b2_start to $b2_stop_seg: backup b2, from its start to its stop" "$T/dry.out"
ok "text: PITR WAL kept from b3's start" grep -q "^wal kept from $b3_start on: point-in-time recovery from the start of backup b3$" "$T/dry.out"
ok "text: the gap would be deleted" grep -q "^wal $(echo "$gap" | head -1) to $(echo "$gap" | tail -1): expired, would delete" "$T/dry.out"

FUT=$(date -u -d "@$(($(date +%s) + 86400))" +%Y-%m-%dT%H:%M:%SZ)
"$PITR" expire --repo "$REPO" --keep-window 1h --keep-daily 0 --now "$FUT" >/dev/null 2>"$T/fut.err"
fut_rc=$?
is "--now in the future without --dry-run: refused (usage)" "2 1" "$fut_rc $(grep -c 'is in the future' "$T/fut.err")"
is "... nothing deleted" "1 $WAL_BEFORE" "$(grep -c 'is in the future' "$T/fut.err") $(wal_names)"
"$PITR" expire "${args[@]}" --json >"$T/real.json" 2>"$T/real.err"
is "expire exits 0" 0 "$?"
ok "b1 deleted" test ! -e "$REPO/backups/b1"
# what follows holds after that expire: if it did not run, each assertion fails
expired=0
[ -f "$T/real.json" ] && [ ! -e "$REPO/backups/b1" ] && expired=1
after() { [ "$expired" = 1 ] || return 99; "$@"; }
ok "b2, b3, b4 kept" bash -c "[ $expired = 1 ] && test -f '$REPO/backups/b2/backup.json' && test -f '$REPO/backups/b3/backup.json' && test -f '$REPO/backups/b4/backup.json'"
is "json: b2 keeps its WAL start to stop" start-to-stop "$(jq -r '.backups[] | select(.label == "b2") | .wal' "$T/real.json")"
is "json: b3 keeps its WAL to the end" to-end "$(jq -r '.backups[] | select(.label == "b3") | .wal' "$T/real.json")"
is "json: kept ranges" "$b2_start $b2_stop_seg $b3_start null" \
    "$(jq -r '[.wal_kept[] | .first, .last] | map(tostring) | join(" ")' "$T/real.json")"
is "json: the gap is a removed range" "$(echo "$gap" | head -1)" \
    "$(jq -r --arg f "$(echo "$gap" | head -1)" '.wal_removed[] | select(.first == $f) | .first' "$T/real.json")"
AFTER=$(wal_names)
left=""; for n in $gap $below; do grep -qx "$n" <<<"$AFTER" && left="$left $n"; done
is "WAL below b2 and between b2 and b3 deleted" "" "$left"
miss=""; for n in $island $tail_wal; do grep -qx "$n" <<<"$AFTER" || miss="$miss $n"; done
is "b2's start..stop and everything from b3's start kept" "1" "$expired$miss"
ok "the retention record names b3's start" bash -c "jq -e --arg s '$b3_start' '.pitr_from == \$s' '$REPO/status/retention.json' >/dev/null"

after "$PITR" verify --repo "$REPO" >"$T/verify.out" 2>&1
is "verify after expire exits 0 (expire's holes are not missing)" 0 "$?"
"$PITR" info --repo "$REPO" --json >"$T/info.json" 2>"$T/info.err"
is "info: no gap on timeline 1" "1 0" "$expired $(jq '[.timelines[]? | .missing_segments] | add // 0' "$T/info.json")"
is "info: the restorable window starts with b3" b3 "$(jq -r '.timelines[0].window.from_backup' "$T/info.json")"

plan() { after "$PITR" plan --repo "$REPO" "$@" >"$T/plan.out" 2>"$T/plan.err"; }
for b in b2 b3 b4; do
    plan --target-lsn "$(bj $b stop_lsn)"
    is "plan to $b's stop succeeds" 0 "$?"
done
ok "the plan to b4's stop uses b4" bash -c "[ $expired = 1 ] && grep -q 'backup: *b4' '$T/plan.out'"
plan --target-time "$MW"
is "plan to an instant of the window succeeds" 0 "$?"
plan --target-time "$MG"
is "plan to mark G (its WAL expired) is refused" 1 "$?"
ok "the refusal names a missing segment" grep -q "missing" "$T/plan.err"

after "$PITR" restore --repo "$REPO" --pgdata "$T/r2" --target-lsn "$b2_stop_lsn" >"$T/r2.out" 2>"$T/r2.err"
is "restore of b2 to its stop exits 0" 0 "$?"
ok "it uses b2" grep -q "backup: *b2" "$T/r2.out"
pg_set r2 "unix_socket_directories = '$T/r2'"
if pg_start r2 && pg_wait_for r2 "select pg_is_in_recovery()" f 120; then
    is "b2 restored holds rows 1 and 2" "1,2" "$(pg_sql r2 "select string_agg(id::text, ',' order by id) from t")"
    pg_stop r2
else
    fail "b2 restored recovers"; cat "$T/r2.err"; tail -20 "$T/r2.log"
fi

# --- 3. --now the next UTC day: b4 is its day's newest ---------------------------------
NEXT=$(date -u -d "$DAY4 + 1 day 12:00" +%Y-%m-%dT%H:%M:%SZ)
"$PITR" expire --repo "$REPO" --keep-window 1h --keep-daily 2 --now "$NEXT" --dry-run --json >"$T/d2.json" 2>&1
is "next day, --keep-daily 2: exits 0" 0 "$?"
is "next day, --keep-daily 2: b4 kept as its day's newest" "daily $DAY4" "$(jq -r '.backups[] | select(.label == "b4") | "\(.why) \(.day)"' "$T/d2.json")"
is "next day, --keep-daily 2: b2 and b3 expired" "expired expired" \
    "$(jq -r '[.backups[] | select(.label == "b2" or .label == "b3") | .why] | join(" ")' "$T/d2.json")"
"$PITR" expire --repo "$REPO" --keep-window 1h --keep-daily 1 --now "$NEXT" --dry-run >"$T/d1.out" 2>&1
ok "next day, --keep-daily 1: b4 kept only for the window's start" grep -q "^backup b4 .*: keep, restores the start of the window$" "$T/d1.out"
"$PITR" expire --repo "$REPO" --now yesterday --dry-run 2>"$T/u1.err"
is "--now that is not a time: usage error naming it" "2 1" "$? $(grep -c 'invalid --now "yesterday"' "$T/u1.err")"
"$PITR" expire --repo "$REPO" --keep-daily -1 --dry-run 2>"$T/u2.err"
is "--keep-daily -1: usage error naming it" "2 1" "$? $(grep -c 'keep-daily: -1 is outside' "$T/u2.err")"

t_done
