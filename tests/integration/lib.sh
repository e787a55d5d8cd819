# tests/integration/lib.sh -- shared helpers for the integration tests.
#
# Each test script sources this file and then:
#     t_init                      temp dir $T (owned by postgres, mode 0755), cleanup trap
#     pg_init NAME [initdb args]  initdb into $T/NAME as postgres; sets nothing global
#                                 (without initdb args: a copy of the run's template,
#                                 with a system identifier of its own; PG_INIT_FRESH=1:
#                                 always a real initdb)
#     pg_set NAME "key = value"   append to postgresql.conf
#     pg_start NAME / pg_stop NAME
#     pg_archiving NAME REPO      pg_init + archiving into REPO with ragsafe-archive + pg_start
#     pg_cp_archiving NAME DIR    pg_init + archiving into DIR (made) with cp + pg_start:
#                                 real WAL segments for the tools to take as input
#     repo_init DIR...            make repository roots as the README does (install -d -o
#                                 postgres -m 0750): no tool creates a repository's root
#     pg_boot_restored NAME       start a restored copy in $T/NAME on its own socket
#                                 directory and wait (120 s) until it has promoted
#     pg_sql NAME "SQL"           psql -XAtq as postgres over the cluster's Unix socket
#     switch_wal NAME             pg_switch_wal() and wait until that segment is archived
#     as_pg CMD...                run as the postgres user
#     ok "name" CMD...            pass when CMD exits 0
#     not_ok_expected / is "name" EXPECTED ACTUAL / exit_is "name" STATUS CMD...
#     t_done                      prints "N passed, N failed"; non-zero on a failure or
#                                 when no assertion ran
#     t_skip "reason"             a dependency is unavailable: prints "skipped: reason" and
#                                 exits 77, which tests/run.sh counts as skipped (and, under
#                                 CI=true, as a failed run); never use it for a failure
#
# Binaries: $RAGSAFE_BIN (set by tests/run.sh: an installed prefix the postgres user can
# read; CI's clone may sit where postgres cannot enter). PostgreSQL 15 binaries: $PGBIN.
# Every cluster started is stopped by the EXIT trap, on every exit path.

set -u
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
# python3 behind a version manager's shim (pyenv) starts a bash script and pyenv itself on
# every call, a second or more on a loaded machine: call the interpreter it stands for
# directly (its directory holds what the shims stand for; tests/run.sh does this once)
if [[ "$(command -v python3)" == */shims/python3 ]]; then
    T_PY_REAL=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) &&
        [ -x "$T_PY_REAL" ] && PATH="${T_PY_REAL%/*}:$PATH"
fi
export PATH="$PGBIN:$PATH"
: "${RAGSAFE_BIN:?RAGSAFE_BIN must point at an installed bin dir (tests/run.sh sets it)}"
T_PASS=0
T_FAIL=0
T_CLUSTERS=()
T_CLEANUP_CMDS=()
T_NAME=$(basename "$0" .sh)
T_LIBDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

t_cleanup() {
    local c
    for c in "${T_CLUSTERS[@]}"; do
        if [ -f "$T/$c/postmaster.pid" ]; then
            runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/$c" -m immediate -w stop >/dev/null 2>&1 || true
        fi
    done
    for c in "${T_CLEANUP_CMDS[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
    if [ -n "${T:-}" ] && [ -d "$T" ] && [ -z "${KEEP_TMP:-}" ]; then
        rm -rf "$T"
    fi
}

t_init() {
    T=$(mktemp -d "${TMPDIR:-/tmp}/ragsafe-$T_NAME.XXXXXX")
    chmod 0755 "$T"
    chown postgres: "$T"
    trap t_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Register a shell command to run at exit (umount a tmpfs, kill a helper server).
t_on_exit() { T_CLEANUP_CMDS+=("$1"); }

as_pg() { runuser -u postgres -- "$@"; }

# pg_init NAME [initdb args]: when tests/run.sh gave a template directory
# (RAGSAFE_PG_TEMPLATE, shared by the run's scripts), the cluster is a copy of one initdb
# with the same arguments made once per run (by the first script that needs it), given a
# system identifier of its own by pg_newsysid.py: a copy is several times faster than
# initdb and otherwise the same cluster. PG_INIT_FRESH=1, or an argument with a path in
# it: a real initdb.
pg_init() {
    local name=$1 tpl; shift
    if [ -n "${RAGSAFE_PG_TEMPLATE:-}" ] && [ -z "${PG_INIT_FRESH:-}" ] && [[ "$*" != */* ]]; then
        tpl=$RAGSAFE_PG_TEMPLATE/$(printf '%s\n' "$@" | md5sum | cut -c1-12)
        pg_template "$tpl" "$@" && cp -a "$tpl/data" "$T/$name" &&
            python3 "$T_LIBDIR/pg_newsysid.py" "$T/$name" >"$T/$name.initdb.log" 2>&1 \
            || { cat "$T/$name.initdb.log" 2>/dev/null; echo "# pg_init $name: copy of the template failed"; return 1; }
    else
        as_pg "$PGBIN/initdb" -D "$T/$name" -A trust -U postgres --no-sync "$@" >"$T/$name.initdb.log" 2>&1 \
            || { cat "$T/$name.initdb.log"; return 1; }
    fi
    cat >>"$T/$name/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$T/$name'
port = 5432
fsync = off
shared_buffers = 32MB
max_wal_size = 256MB
log_min_messages = warning
CONF
}

# pg_template DIR [initdb args]: a template cluster in DIR/data (initdb -A trust -U postgres
# --no-sync [args], never started), made under a lock by the first script that needs it.
pg_template() {
    local tpl=$1; shift
    [ -f "$tpl/ready" ] && return 0
    install -d -o postgres -g postgres -m 0755 "$tpl" || return 1
    (
        flock 9 || exit 1
        [ -f "$tpl/ready" ] && exit 0
        rm -rf "$tpl/data"
        as_pg "$PGBIN/initdb" -D "$tpl/data" -A trust -U postgres --no-sync "$@" >"$tpl/initdb.log" 2>&1 \
            || { cat "$tpl/initdb.log"; exit 1; }
        touch "$tpl/ready"
    ) 9>"$tpl/lock"
}

pg_set() { printf '%s\n' "$2" >>"$T/$1/postgresql.conf"; }

# repo_init DIR...: repository roots, made as the README says (no tool makes one).
repo_init() { install -d -o postgres -g postgres -m 0750 "$@"; }

# milvus_env: the names the Milvus tests share: M (ragsafe-milvus), FAKE (the fake
# stack, fake_milvus.py), R (a repository, created), V (the volumes' parent), VOLS (the
# --volume options for V); to DIR prints the --volume options for DIR.
milvus_env() {
    M="$RAGSAFE_BIN/ragsafe-milvus"
    FAKE="$RAGSAFE_SRC/tests/integration/fake_milvus.py"
    R="$T/repo"
    repo_init "$R" || return 1
    V="$T/vol"
    VOLS=(--volume "etcd=$V/etcd" --volume "minio=$V/minio" --volume "milvus=$V/milvus")
}
to() { echo --volume "etcd=$1/etcd" --volume "minio=$1/minio" --volume "milvus=$1/milvus"; }

# pg_archiving NAME REPO: REPO (created, owned by postgres) and cluster NAME archiving
# into it with ragsafe-archive, started.
pg_archiving() {
    local name=$1 repo=$2
    repo_init "$repo" || return 1
    pg_init "$name" || return 1
    pg_set "$name" "archive_mode = on"
    pg_set "$name" "archive_command = '$RAGSAFE_BIN/ragsafe-archive --repo $repo %p %f'"
    pg_start "$name"
}

# pg_cp_archiving NAME DIR: cluster NAME (wal_level replica) archiving with a plain cp
# into DIR (created, owned by postgres), started.
pg_cp_archiving() {
    local name=$1 dir=$2
    pg_init "$name" || return 1
    mkdir -p "$dir" && chown postgres: "$dir" || return 1
    pg_set "$name" "wal_level = replica"
    pg_set "$name" "archive_mode = on"
    pg_set "$name" "archive_command = 'cp %p $dir/%f'"
    pg_start "$name"
}

# pg_boot_restored NAME: a restored copy in $T/NAME (its postgresql.conf came with the
# backup and names the source's socket directory) started on $T/NAME, waited for until
# recovery ended (120 s).
pg_boot_restored() {
    pg_set "$1" "unix_socket_directories = '$T/$1'"
    pg_start "$1" && pg_wait_for "$1" "select pg_is_in_recovery()" f 120
}

pg_start() {
    local name=$1
    T_CLUSTERS+=("$name")
    as_pg "$PGBIN/pg_ctl" -D "$T/$name" -l "$T/$name.log" -w -t 120 start >/dev/null \
        || { tail -20 "$T/$name.log"; return 1; }
}

pg_stop() {
    as_pg "$PGBIN/pg_ctl" -D "$T/$1" -m fast -w -t 120 stop >/dev/null
}

# Connection options for a cluster named NAME (Unix socket in its data dir).
pg_conn() { printf 'host=%s port=5432 user=postgres dbname=postgres' "$T/$1"; }

pg_sql() {
    as_pg "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$T/$1" -p 5432 -U postgres -d postgres -c "$2"
}

# Wait until SQL on cluster NAME prints EXPECTED (polls up to SECONDS, default 60).
pg_wait_for() {
    local name=$1 sql=$2 expected=$3 secs=${4:-60} i out end
    end=$((SECONDS + secs))
    # every 0.05 s for the first second (most waits end there), then every 0.2 s; as many
    # polls as before at least (SECONDS x 5), and SECONDS of wall time at least
    for ((i = 0; i < secs * 5 || SECONDS < end; i++)); do
        out=$(pg_sql "$name" "$sql" 2>/dev/null) && [ "$out" = "$expected" ] && return 0
        if [ "$i" -lt 20 ]; then sleep 0.05; else sleep 0.2; fi
    done
    echo "# pg_wait_for: '$sql' gave '$out', wanted '$expected'" >&2
    return 1
}

pass() { T_PASS=$((T_PASS + 1)); echo "ok - $1"; }
fail() { T_FAIL=$((T_FAIL + 1)); echo "not ok - $1"; }

ok() {
    local name=$1; shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

is() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1"; echo "#   expected: '$2'"; echo "#   got:      '$3'"; fi
}

# exit_is NAME STATUS CMD...: pass when CMD exits with STATUS exactly.
exit_is() {
    local name=$1 want=$2 got; shift 2
    "$@"; got=$?
    if [ "$got" = "$want" ]; then pass "$name"; else fail "$name"; echo "#   exit status $got, wanted $want"; fi
}

t_done() {
    echo "$T_NAME: $T_PASS passed, $T_FAIL failed"
    if [ $((T_PASS + T_FAIL)) -eq 0 ]; then
        echo "$T_NAME: no assertion ran: that is a failure, not a pass"
        return 1
    fi
    [ "$T_FAIL" -eq 0 ]
}

# t_skip REASON: stop here, skipped (exit 77). Assertions that already failed still
# fail the script.
T_SKIP_STATUS=77
t_skip() {
    echo "skipped: $1"
    echo "$T_NAME: $T_PASS passed, $T_FAIL failed"
    [ "$T_FAIL" -eq 0 ] || exit 1
    exit "$T_SKIP_STATUS"
}

# switch_wal NAME: close the current WAL segment and wait (60 s at most) until the
# archiver has archived it.
switch_wal() {
    local seg
    seg=$(pg_sql "$1" "select pg_walfile_name(pg_current_wal_insert_lsn())")
    pg_sql "$1" "select pg_switch_wal()" >/dev/null
    pg_wait_for "$1" "select last_archived_wal >= '$seg' from pg_stat_archiver" t 60
}

# s3_start BUCKET: a local s3rver (npm; installed into $RAGSAFE_S3RVER_DIR, default
# /var/tmp/ragsafe-s3rver, when missing) with BUCKET, data in $T/s3, behind the SigV4
# verifier s3_sigv4_proxy.py (s3rver ignores signatures; the verifier recomputes each
# request's signature with python3-botocore for S3_KEY / S3_SECRET and answers 403 on a
# mismatch; its log, one line per request, is $T/sigv4.log). S3PORT is the verifier's
# port (free; the same again after s3_stop), S3RVER_PORT s3rver's own. Both stopped at
# exit; S3_LOG=1 keeps s3rver's request log in $T/s3rver.log. Sets S3PID (s3rver),
# S3VPID (the verifier), S3PORT; exports RAGSAFE_S3_ENDPOINT and the credentials unless
# S3_NO_ENV=1. S3_NO_VERIFY=1: no verifier, S3PORT is s3rver's (as before). When npm
# cannot reach its registry the test is skipped (t_skip: exit 77); any other failure,
# a missing python3-botocore included, fails it.
S3_KEY=S3RVER
S3_SECRET=S3RVER
s3_start() {
    local bucket=$1 dir=${RAGSAFE_S3RVER_DIR:-/var/tmp/ragsafe-s3rver} quiet=-s
    local js=$dir/node_modules/s3rver/bin/s3rver.js
    [ -n "${S3_LOG:-}" ] && quiet=
    if [ ! -f "$js" ]; then
        mkdir -p "$dir"
        if ! (cd "$dir" && npm install --no-audit --no-fund --loglevel=error s3rver@3.7.1 >"$T/npm.log" 2>&1); then
            if grep -qiE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network' "$T/npm.log"; then
                grep -m3 -E 'error (code|errno)|reason' "$T/npm.log" | sed 's/^/#   /'
                t_skip "s3rver unavailable (npm cannot reach its registry)"
            fi
            cat "$T/npm.log"
            fail "npm install s3rver"
            t_done
            exit 1
        fi
    fi
    if [ -z "${S3PORT:-}" ]; then
        t_on_exit '[ -n "${S3PID:-}" ] && kill "$S3PID"'
        t_on_exit '[ -n "${S3VPID:-}" ] && kill "$S3VPID"'
        S3PORT=$(free_port)
        S3RVER_PORT=$S3PORT
        [ -n "${S3_NO_VERIFY:-}" ] || S3RVER_PORT=$(free_port)
    fi
    mkdir -p "$T/s3"
    NODE_OPTIONS=--openssl-legacy-provider node "$js" -d "$T/s3" -a 127.0.0.1 -p "$S3RVER_PORT" \
        --configure-bucket "$bucket" --no-vhost-buckets $quiet >>"$T/s3rver.log" 2>&1 &
    S3PID=$!
    if ! wait_port "$S3RVER_PORT"; then
        cat "$T/s3rver.log"
        fail "s3rver starts"
        t_done
        exit 1
    fi
    if [ "$S3RVER_PORT" != "$S3PORT" ]; then
        if ! s3_verifier_py >/dev/null; then
            fail "python3-botocore is installed (scripts/install-deps.sh): the SigV4 verifier needs it"
            t_done
            exit 1
        fi
        "$(s3_verifier_py)" "$RAGSAFE_SRC/tests/integration/s3_sigv4_proxy.py" \
            "$S3PORT" "$S3RVER_PORT" "$S3_KEY" "$S3_SECRET" >>"$T/sigv4.log" 2>&1 &
        S3VPID=$!
        if ! wait_port "$S3PORT"; then
            cat "$T/sigv4.log"
            fail "the SigV4 verifier starts"
            t_done
            exit 1
        fi
    fi
    [ -n "${S3_NO_ENV:-}" ] ||
        export RAGSAFE_S3_ENDPOINT=http://127.0.0.1:$S3PORT AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET
}
# s3_verifier_py: a python3 that has botocore (Debian's python3-botocore is for
# /usr/bin/python3, which another python3 first on PATH may not see).
s3_verifier_py() {
    local py
    for py in /usr/bin/python3 python3; do
        if "$py" -c 'import botocore.auth' 2>/dev/null; then command -v "$py"; return 0; fi
    done
    return 1
}
# s3_stop: stop s3rver and the verifier (s3_start again brings them back on the same
# ports, with the data).
s3_stop() {
    kill "$S3PID" ${S3VPID:+"$S3VPID"} 2>/dev/null
    wait "$S3PID" ${S3VPID:+"$S3VPID"} 2>/dev/null
    S3PID= S3VPID=
}
# s3_curl METHOD URL [FILE]: one request signed (SigV4, curl) with S3_KEY / S3_SECRET,
# FILE as the body; prints the HTTP status.
s3_curl() {
    local method=$1 url=$2 file=${3:-} sha body=()
    sha=$(if [ -n "$file" ]; then sha256sum <"$file"; else printf '' | sha256sum; fi | cut -c1-64)
    [ -n "$file" ] && body=(--data-binary "@$file")
    curl -s -o /dev/null -w '%{http_code}' -X "$method" --aws-sigv4 aws:amz:us-east-1:s3 \
        --user "$S3_KEY:$S3_SECRET" -H "x-amz-content-sha256: $sha" "${body[@]}" "$url"
}
# s3_verified: how many requests the verifier passed (0 without one).
s3_verified() { local n; n=$(grep -c '^ok ' "$T/sigv4.log" 2>/dev/null); echo "${n:-0}"; }
# s3_all_signed: assert that the verifier passed requests and refused none (call it at
# the end of a test that never sends a wrong signature on purpose).
s3_all_signed() {
    [ "$S3PORT" != "$S3RVER_PORT" ] || { fail "SigV4: not verified (S3_NO_VERIFY=1)"; return; }
    ok "SigV4: the verifier checked the requests ($(s3_verified) passed)" [ "$(s3_verified)" -gt 0 ]
    is "SigV4: no request refused" "" "$(grep '^refused' "$T/sigv4.log" 2>/dev/null | head -3)"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_port PORT: wait (10 s at most) until something listens on 127.0.0.1:PORT.
wait_port() {
    local i
    for ((i = 0; i < 200; i++)); do
        (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
