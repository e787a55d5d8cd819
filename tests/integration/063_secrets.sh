#!/usr/bin/env bash
# 063_secrets.sh -- files that hold secrets or commands are refused when others could
# read or change them, before any tool acts on them.
#
# The config file (its stop-cmd / start-cmd / version-cmd / notify commands run, and it
# may hold S3 secrets): every tool refuses one that group or others can write, that a
# user other than root or the running one owns, or that sits in a directory group or
# others can write (not sticky) -- exit 2 (ragsafe-restore: 128) with the fix named.
# The repository key file: every tool refuses one that group or others can read (only
# ragsafe-files did; the others warned) -- exit 2, hint "chmod 600". Fixing the mode
# makes the same command go through.
source "$(dirname "$0")/lib.sh"
t_init

PITR=$RAGSAFE_BIN/ragsafe-pitr
ARCH=$RAGSAFE_BIN/ragsafe-archive
REST=$RAGSAFE_BIN/ragsafe-restore
BB=$RAGSAFE_BIN/ragsafe-basebackup
REPO=$T/repo
mkdir -p "$REPO" && chown postgres: "$REPO"
# a real WAL segment (initdb's first): accepted configs and keys really archive it
pg_init src || exit 1
SEG=000000010000000000000001
cp "$T/src/pg_wal/$SEG" "$T/seg" && chown postgres: "$T/seg"

# run NAME CMD...: CMD's status in $rc, its stderr in $T/NAME.err
run() {
    local name=$1; shift
    "$@" >/dev/null 2>"$T/$name.err"
    rc=$?
    sed 's/^/#   /' "$T/$name.err" | head -4
}

# --- the config file ------------------------------------------------------------------
# root's config in a root-owned directory (the test dir $T belongs to postgres)
ETC=$(mktemp -d /tmp/ragsafe-063-etc.XXXXXX)
t_on_exit "rm -rf '$ETC'"
chmod 0755 "$ETC"
CONF=$ETC/ragsafe.conf
printf 'repo = %s\nstop-cmd = /bin/false\n' "$REPO" >"$CONF"

chmod 0664 "$CONF"
run pitr-gw "$PITR" info --config "$CONF"
is "pitr info: a group-writable config file: exit 2" 2 "$rc"
ok "... refused, naming the file and the fix" \
    grep -q "refusing config file \"$CONF\": it is writable by group or others (mode 0664)" "$T/pitr-gw.err"
ok "... hint: chmod go-w" grep -q "hint: chmod go-w \"$CONF\"" "$T/pitr-gw.err"

chmod 0646 "$CONF"
run arch-ow as_pg "$ARCH" --config "$CONF" "$T/seg" "$SEG"
is "ragsafe-archive: an other-writable config file: exit 2" 2 "$rc"
ok "... refused with the fix" grep -q "hint: chmod go-w" "$T/arch-ow.err"
ok "... and nothing archived" test -z "$(ls -A "$REPO")"

run rest-ow as_pg "$REST" --config "$CONF" "$SEG" "$T/out"
is "ragsafe-restore: an other-writable config file: exit 128" 128 "$rc"
ok "... refused with the fix" grep -q "hint: chmod go-w" "$T/rest-ow.err"

run bb-ow "$BB" --config "$CONF" --verify nosuchlabel
is "ragsafe-basebackup: an other-writable config file: exit 2" 2 "$rc"

# owned by another (non-root) user: postgres could rewrite root's commands
chmod 0644 "$CONF"
chown postgres: "$CONF"
run pitr-own "$PITR" info --config "$CONF"
is "pitr info as root: a config file owned by postgres: exit 2" 2 "$rc"
ok "... refused, naming the owner" grep -q "refusing config file \"$CONF\": it is owned by uid $(id -u postgres)" "$T/pitr-own.err"
ok "... hint: chown" grep -q "hint: chown root" "$T/pitr-own.err"
run arch-own as_pg "$ARCH" --config "$CONF" "$T/seg" "$SEG"
ok "ragsafe-archive as postgres: its own config file is accepted" \
    bash -c "! grep -q 'refusing config file' '$T/arch-own.err'"
is "... and the segment is archived: exit 0" 0 "$rc"

# a directory on the path that others can write
chown root: "$CONF"
chmod 0777 "$ETC"
run pitr-dir "$PITR" info --config "$CONF"
is "pitr info: the config file's directory is world-writable: exit 2" 2 "$rc"
ok "... refused, naming the directory" \
    grep -q "directory \"$ETC\" is writable by group or others" "$T/pitr-dir.err"
chmod 1777 "$ETC"
run pitr-sticky "$PITR" info --config "$CONF"
ok "... but a sticky one (like /tmp) is fine" bash -c "! grep -q 'refusing config file' '$T/pitr-sticky.err'"

# once fixed, the same commands go through; RAGSAFE_CONFIG is checked the same way
chmod 0755 "$ETC"
run pitr-good "$PITR" info --config "$CONF"
ok "root-owned 0644 config: pitr info accepts it" bash -c "! grep -q 'refusing config file' '$T/pitr-good.err'"
is "... and reads the repository: exit 0" 0 "$rc"
chmod 0666 "$CONF"
run pitr-env env RAGSAFE_CONFIG="$CONF" "$PITR" info
is "RAGSAFE_CONFIG naming a world-writable file: exit 2" 2 "$rc"
chmod 0644 "$CONF"

# --- the repository key file ------------------------------------------------------------
KEY=$T/key
REPO=$T/repo2
mkdir -p "$REPO" && chown postgres: "$REPO"
openssl rand -hex 32 >"$KEY"
chown postgres: "$KEY"
chmod 0644 "$KEY"
run pitr-key "$PITR" info --repo "$REPO" --cipher-key-file "$KEY"
is "pitr info: a key file readable by others: exit 2" 2 "$rc"
ok "... refused, naming the file" grep -q "cipher key file \"$KEY\" has mode 0644: it must be 0600 or stricter" "$T/pitr-key.err"
ok "... hint: chmod 600" grep -q "hint: chmod 600 \"$KEY\"" "$T/pitr-key.err"
ok "... not a mere warning" bash -c "! grep -q 'warning: cipher key file' '$T/pitr-key.err'"
chmod 0640 "$KEY"
run arch-key as_pg "$ARCH" --repo "$REPO" --cipher-key-file "$KEY" "$T/seg" "$SEG"
is "ragsafe-archive: a key file readable by the group: exit 2" 2 "$rc"
ok "... hint: chmod 600" grep -q "hint: chmod 600" "$T/arch-key.err"
ok "... and nothing archived" test -z "$(ls -A "$REPO")"
run rest-key as_pg env RAGSAFE_CIPHER_KEY_FILE="$KEY" "$REST" --repo "$REPO" "$SEG" "$T/out"
is "ragsafe-restore: the same key from RAGSAFE_CIPHER_KEY_FILE: exit 128" 128 "$rc"
ok "... hint: chmod 600" grep -q "hint: chmod 600" "$T/rest-key.err"
run bb-key "$BB" --repo "$REPO" --cipher-key-file "$KEY" --verify nosuchlabel
is "ragsafe-basebackup: a key file readable by the group: exit 2" 2 "$rc"

chmod 0600 "$KEY"
run pitr-key-ok "$PITR" info --repo "$REPO" --cipher-key-file "$KEY"
ok "chmod 600: the key file is accepted" bash -c "! grep -q 'cipher key file' '$T/pitr-key-ok.err'"
ok "... pitr info goes on to the repository" grep -q "is not a ragsafe repository" "$T/pitr-key-ok.err"

t_done
