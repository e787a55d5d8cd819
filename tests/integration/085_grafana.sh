#!/usr/bin/env bash
# scripts/grafana-dashboard.json: valid JSON in Grafana's model, every panel on the
# ${DS_PROMETHEUS} data source variable, and every ragsafe_* metric its queries name
# present (with a sample) in `ragsafe-pitr info --prometheus` of a real repository: a
# base backup, archived WAL, a verify and a Milvus snapshot, as 043 sets it up. The
# checker is also run on a copy with one bogus metric added, which it must refuse.
source "$(dirname "$0")/lib.sh"
t_init

D=$(cd "$(dirname "$0")/../.." && pwd)/scripts/grafana-dashboard.json

ok "the dashboard parses as JSON" jq empty "$D"
is "schemaVersion is Grafana 9's or later" true "$(jq '.schemaVersion >= 36' "$D")"
is "a datasource variable named DS_PROMETHEUS of type prometheus" 1 \
    "$(jq '[.templating.list[] | select(.name == "DS_PROMETHEUS" and .type == "datasource" and .query == "prometheus")] | length' "$D")"
# every panel and every query target (rows excepted) uses the variable, none a fixed uid
is "every panel and target uses \${DS_PROMETHEUS}" 0 \
    "$(jq '[.panels[] | select(.type != "row") | (., .targets[]) | select(.datasource.uid != "${DS_PROMETHEUS}")] | length' "$D")"
is "panel ids are unique" "$(jq '.panels | length' "$D")" "$(jq '[.panels[].id] | unique | length' "$D")"
ok "every non-row panel has at least one query" \
    test "$(jq '[.panels[] | select(.type != "row") | select((.targets // []) | length == 0)] | length' "$D")" = 0

# queries -- every PromQL string in FILE: panel targets (rows' nested panels too) and
# the template variables' queries.
queries() {
    jq -r '(.. | objects | select(has("expr")) | .expr),
           (.templating.list[] | select(.type == "query") | (.query | if type == "object" then .query else . end))' "$1"
}
# metric_names FILE -- the ragsafe_* names those queries reference, one per line.
metric_names() { queries "$1" | grep -oE 'ragsafe_[a-z_]+' | sort -u; }
# missing_in FILE PROM -- the names FILE references that PROM has no sample line for.
missing_in() {
    local n
    for n in $(metric_names "$1"); do
        grep -qE "^$n(\{| )" "$2" || echo "$n"
    done
}

# The words a query may hold besides ragsafe_* metrics: PromQL functions, operators'
# keywords, the labels ragsafe exports and Grafana's $repo. Anything else (another
# exporter's metric, a typo without the prefix) is reported.
others=$(queries "$D" | sed 's/"[^"]*"//g' | grep -oE '[A-Za-z_:][A-Za-z0-9_:]*' | sort -u |
    grep -vxE 'ragsafe_[a-z_]+|label_values|max|min|sum|by|time|repo|timeline')
is "the queries name no metric but ragsafe_*" "" "$others"

R=$T/repo
pg_archiving pg "$R"
as_pg "$PGBIN/pgbench" -h "$T/pg" -p 5432 -U postgres -i -s 1 -q postgres >/dev/null 2>&1
label=$(as_pg "$RAGSAFE_BIN/ragsafe-basebackup" -d "$(pg_conn pg)" --repo "$R" --checkpoint fast)
ok "base backup taken" test -n "$label"
pg_sql pg "CREATE TABLE t AS SELECT 1 AS x" >/dev/null
switch_wal pg
ok "verify passes" as_pg "$RAGSAFE_BIN/ragsafe-pitr" verify --repo "$R"
mkdir -p "$T/vol/etcd"
head -c 10000 /dev/urandom >"$T/vol/etcd/db"
"$RAGSAFE_BIN/ragsafe-milvus" snapshot --repo "$R" --label snap1 --assume-stopped \
    --volume etcd="$T/vol/etcd" >/dev/null
chown -R postgres: "$R"
as_pg "$RAGSAFE_BIN/ragsafe-pitr" info --repo "$R" --prometheus >"$T/metrics.prom"
is "info --prometheus exits 0" 0 "$?"

names=$(metric_names "$D")
ok "the dashboard references ragsafe metrics" test -n "$names"
is "every metric the dashboard references has a sample in info --prometheus" "" \
    "$(missing_in "$D" "$T/metrics.prom" | tr '\n' ' ')"

# what the issue asks the dashboard to show: restorable window, the live RPO (age of
# the newest segment), age of the newest backup, archive gaps, repository size,
# damaged objects. (No receiver lag: ragsafe has no WAL receiver yet.)
for n in ragsafe_window_start_timestamp_seconds ragsafe_window_end_timestamp_seconds \
    ragsafe_wal_newest_age_seconds ragsafe_backup_newest_age_seconds \
    ragsafe_wal_missing_segments ragsafe_repository_bytes ragsafe_damaged_objects \
    ragsafe_verify_last_success; do
    ok "the dashboard shows $n" grep -qx "$n" <<<"$names"
done

# the checker itself: a panel on a metric that does not exist is caught
jq '.panels += [{"id": 999, "type": "stat", "title": "bogus",
                 "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                 "targets": [{"expr": "ragsafe_bogus_metric{repo=~\"$repo\"}", "refId": "A"}]}]' \
    "$D" >"$T/bogus.json"
is "a panel on a nonexistent metric is reported" "ragsafe_bogus_metric" \
    "$(missing_in "$T/bogus.json" "$T/metrics.prom" | tr '\n' ' ' | sed 's/ $//')"
# and a name that only has HELP/TYPE lines but no sample counts as missing
grep -v '^ragsafe_damaged_objects' "$T/metrics.prom" >"$T/nosample.prom"
is "a metric without a sample line is reported" "ragsafe_damaged_objects" \
    "$(missing_in "$D" "$T/nosample.prom" | tr '\n' ' ' | sed 's/ $//')"
t_done
