#!/usr/bin/env bash
# 070_ops_files.sh -- ragsafe-files: encrypted config and log snapshots. Round trip
# (content, modes, mtimes), deduplication, no plaintext (content, names, plaintext
# hashes) anywhere in the repository, a wrong key and a tampered object (exit 3, no
# file written), a key file readable by others (exit 2), keygen never overwrites,
# path escapes refused (at snapshot, and in a manifest forged with the key), --force
# moves replaced entries aside, expire sweeps.
source "$(dirname "$0")/lib.sh"
t_init

F=$RAGSAFE_BIN/ragsafe-files
REPO=$T/repo
repo_init "$REPO"
P=$T/platform
SECRET="OPENAI_API_KEY=sk-ragsafe-test-$RANDOM$RANDOM-do-not-leak"
mkdir -p "$P/backend" "$P/frontend" "$P/logs/backend" "$P/logs/nginx"
printf 'POSTGRES_PASSWORD=hunter2\n%s\n' "$SECRET" >"$P/.env"
chmod 0600 "$P/.env"
printf 'services:\n  rag-postgres:\n    image: postgres:15\n' >"$P/docker-compose.yml"
printf '[alembic]\nscript_location = alembic\n' >"$P/backend/alembic.ini"
printf 'NEXT_PUBLIC_API=http://localhost:8000\n' >"$P/frontend/.env.local"
chmod 0640 "$P/frontend/.env.local"
chown postgres: "$P/frontend/.env.local"     # owners come back too (as root)
head -c 400000 /dev/urandom >"$P/logs/backend/app.log"
for i in $(seq 1 20); do echo "GET /api/search $i" >>"$P/logs/nginx/access.log"; done
cp "$P/logs/nginx/access.log" "$P/logs/nginx/access.log.1"     # same content: stored once
ln -s app.log "$P/logs/backend/current.log"
chmod 0750 "$P/logs/backend"
touch -d '2024-03-04 05:06:07.123456789' "$P/backend/alembic.ini"
touch -h -d '2023-01-01 00:00:00' "$P/logs/backend/current.log"

exit_is "keygen" 0 "$F" keygen "$T/key"
is "key file mode 0600" 600 "$(stat -c %a "$T/key")"
keybefore=$(cat "$T/key")
exit_is "keygen refuses to overwrite" 1 "$F" keygen "$T/key"
is "key unchanged" "$keybefore" "$(cat "$T/key")"

label=$("$F" snapshot --repo "$REPO" --key-file "$T/key" --base "$P" .env docker-compose.yml \
    backend/alembic.ini frontend/.env.local logs)
is "snapshot prints its label" 0 $?
ok "label is a UTC time" grep -Eq '^[0-9]{8}T[0-9]{6}Z$' <<<"$label"
is "dedup: 7 files, 6 objects" 6 "$(find "$REPO/files/objects" -name '*.zst' | wc -l)"

# nothing readable in the repository: not the secret, not a file name, not a plain hash
ok "secret line not in the repository" bash -c "! grep -r -a -F -q -e \"\$1\" \"\$2\"" _ "$SECRET" "$REPO"
ok "password not in the repository" bash -c "! grep -r -a -q hunter2 \"\$1\"" _ "$REPO"
ok "file names not in the repository" bash -c "! grep -r -a -q -e alembic -e access.log \"\$1\"" _ "$REPO"
envsha=$(sha256sum "$P/.env" | cut -d' ' -f1)
ok "plaintext SHA-256 not used as a name" bash -c "! find \"\$1\" | grep -q \"\$2\"" _ "$REPO" "$envsha"
ok "plaintext SHA-256 not stored" bash -c "! grep -r -a -q \"\$2\" \"\$1\"" _ "$REPO" "$envsha"

exit_is "verify" 0 "$F" verify --repo "$REPO" --key-file "$T/key"
ok "list shows the snapshot" bash -c "\"\$1\" list --repo \"\$2\" --key-file \"\$3\" | grep -q \"^\$4\"" _ "$F" "$REPO" "$T/key" "$label"

# round trip: content, modes, mtimes (and owners, as root) equal
exit_is "restore" 0 "$F" restore "$label" --repo "$REPO" --key-file "$T/key" --target "$T/out"
ok "contents equal" diff -r --no-dereference "$P" "$T/out"
tree() { (cd "$1" && find . -mindepth 1 -printf '%p %y %m %U:%G %T@ %l\n' | sort); }
is "modes, owners, mtimes, link targets equal" "$(tree "$P")" "$(tree "$T/out")"
is ".env mode 0600" 600 "$(stat -c %a "$T/out/.env")"
is "alembic.ini mtime to the nanosecond" "$(stat -c %y "$P/backend/alembic.ini")" "$(stat -c %y "$T/out/backend/alembic.ini")"
is "no staging dir left" "" "$(find "$T/out" -name '.ragsafe-*')"

# a wrong key: exit 3, nothing written
head -c 32 /dev/urandom >"$T/key2"; chmod 0600 "$T/key2"
exit_is "wrong key: exit 3" 3 "$F" restore "$label" --repo "$REPO" --key-file "$T/key2" --target "$T/out2"
ok "wrong key: no output directory" test ! -e "$T/out2"
exit_is "wrong key: list exit 3" 3 "$F" list --repo "$REPO" --key-file "$T/key2"
exit_is "wrong key: verify exit 3" 3 "$F" verify --repo "$REPO" --key-file "$T/key2"

# key file readable by others: refused, exit 2
cp "$T/key" "$T/key644"; chmod 0644 "$T/key644"
exit_is "key file 0644 refused: exit 2" 2 "$F" restore "$label" --repo "$REPO" --key-file "$T/key644" --target "$T/out3"
ok "key file 0644: no output" test ! -e "$T/out3"
chmod 0640 "$T/key644"
exit_is "key file 0640 refused: exit 2" 2 "$F" list --repo "$REPO" --key-file "$T/key644"

# a tampered object: exit 3, no output files; verify names it
obj=$(find "$REPO/files/objects" -name '*.zst' -size +100k | head -1)
cp "$obj" "$T/obj.orig"
printf '\xff' | dd of="$obj" bs=1 seek=5000 conv=notrunc 2>/dev/null
exit_is "tampered object: restore exit 3" 3 "$F" restore "$label" --repo "$REPO" --key-file "$T/key" --target "$T/out4"
ok "tampered object: no output directory" test ! -e "$T/out4"
mkdir "$T/out5"
exit_is "tampered object into an existing empty dir: exit 3" 3 "$F" restore "$label" --repo "$REPO" --key-file "$T/key" --target "$T/out5"
is "tampered object: the empty dir stays empty" "" "$(ls -A "$T/out5")"
exit_is "tampered object: verify exit 3" 3 "$F" verify --repo "$REPO" --key-file "$T/key"
cp "$T/obj.orig" "$obj"
# a truncated manifest and a manifest swapped for another label's
"$F" snapshot --repo "$REPO" --key-file "$T/key" --base "$P" --label other .env >/dev/null
cp "$REPO/files/snapshots/other.json" "$T/other.json"
cp "$REPO/files/snapshots/$label.json" "$REPO/files/snapshots/other.json"
exit_is "manifest swapped between labels: exit 3" 3 "$F" restore other --repo "$REPO" --key-file "$T/key" --target "$T/out6"
head -c 100 "$T/other.json" >"$REPO/files/snapshots/other.json"
exit_is "truncated manifest: exit 3" 3 "$F" restore other --repo "$REPO" --key-file "$T/key" --target "$T/out6"
ok "no output" test ! -e "$T/out6"
cp "$T/other.json" "$REPO/files/snapshots/other.json"
exit_is "verify after repair" 0 "$F" verify --repo "$REPO" --key-file "$T/key"

# escapes refused at snapshot time
exit_is "'..' refused" 2 bash -c "cd '$P' && '$F' snapshot --repo '$REPO' --key-file '$T/key' --label esc ../x 2>/dev/null; [ \$? -ne 0 ] && exit 2"
exit_is "'a/../b' refused" 1 "$F" snapshot --repo "$REPO" --key-file "$T/key" --base "$P" --label esc2 backend/../.env
exit_is "absolute outside the base is stored relative" 0 "$F" snapshot --repo "$REPO" --key-file "$T/key" --base "$P" --label abs "$P/.env" "$P/backend/alembic.ini"
exit_is "restore abs" 0 "$F" restore abs --repo "$REPO" --key-file "$T/key" --target "$T/abs"
ok "absolute path under the base restored relative" cmp "$P/.env" "$T/abs/.env"

# a manifest forged by someone holding the key (a re-sealed manifest whose last entry
# names NEWPATH): the restore refuses paths that leave the target, exit 3, no output
cat >"$T/forge.py" <<'PY'
import sys, json, os, struct, hmac, hashlib
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
keyfile, path, name, newpath = sys.argv[1:5]
raw = open(keyfile, 'rb').read()
if len(raw) != 32:
    raw = bytes.fromhex(raw.strip().decode())
enc = hmac.new(raw, b"ragsafe-encrypt", hashlib.sha256).digest()
blob = open(path, 'rb').read()
plain, pos = b"", 0
while pos < len(blob):
    hdr = blob[pos:pos + 28]
    ln = struct.unpack_from('<I', hdr, 8)[0]
    clen = max(ln, 56) if hdr[5] & 1 else ln
    nonce = blob[pos + 28:pos + 40]
    ct = blob[pos + 40:pos + 40 + clen + 16]
    plain += AESGCM(enc).decrypt(nonce, ct, hdr + name.encode())[:ln]
    pos += 40 + clen + 16
m = json.loads(plain)
m["files"][-1]["path"] = newpath
if len(sys.argv) > 5:
    m["files"][-1]["type"] = sys.argv[5]
plain = json.dumps(m).encode()
def seal(final, idx, off, data):
    ln = len(data)
    hdr = b"RGSE" + bytes([1, 1 if final else 0, 0, 0]) + struct.pack('<IQQ', ln, idx, off)
    padded = data + b"\0" * (max(ln, 56) - ln if final else 0)
    nonce = os.urandom(12)
    return hdr + nonce + AESGCM(enc).encrypt(nonce, padded, hdr + name.encode())
out = b""
split = max(len(plain) - 56, 0)
if split:
    out += seal(False, 0, 0, plain[:split])
out += seal(True, 1 if split else 0, split, plain[split:])
open(path, 'wb').write(out)
PY
"$F" snapshot --repo "$REPO" --key-file "$T/key" --base "$P" --label forged .env docker-compose.yml >/dev/null
cp "$REPO/files/snapshots/forged.json" "$T/forged.orig"
python3 "$T/forge.py" "$T/key" "$REPO/files/snapshots/forged.json" files/snapshots/forged.json docker-compose.yml
exit_is "forger check: an honest re-sealed manifest restores" 0 "$F" restore forged --repo "$REPO" --key-file "$T/key" --target "$T/forged-ok"
for bad in ../escaped /tmp/escaped-$$ a/../../escaped ./x x//y; do
    cp "$T/forged.orig" "$REPO/files/snapshots/forged.json"
    python3 "$T/forge.py" "$T/key" "$REPO/files/snapshots/forged.json" files/snapshots/forged.json "$bad"
    exit_is "manifest path '$bad' refused: exit 3" 3 "$F" restore forged --repo "$REPO" --key-file "$T/key" --target "$T/esc/in"
    ok "manifest path '$bad': nothing written" test ! -e "$T/esc/in" -a ! -e "$T/esc/escaped" -a ! -e "/tmp/escaped-$$"
done
cp "$T/forged.orig" "$REPO/files/snapshots/forged.json"
for typ in c b p s; do
    cp "$T/forged.orig" "$REPO/files/snapshots/forged.json"
    python3 "$T/forge.py" "$T/key" "$REPO/files/snapshots/forged.json" files/snapshots/forged.json dev-node "$typ"
    "$F" restore forged --repo "$REPO" --key-file "$T/key" --target "$T/dev" 2>/dev/null
    ok "manifest entry of type '$typ' (device, FIFO, socket) refused" test $? -ne 0
    ok "type '$typ': nothing written" test ! -e "$T/dev"
done
cp "$T/forged.orig" "$REPO/files/snapshots/forged.json"

# no set-id bits, FIFOs skipped, owners only when the target's owner fits
S=$T/su
mkdir -p "$S/shared"
printf '#!/bin/sh\nid\n' >"$S/tool"; chmod 4755 "$S/tool"
chmod 2775 "$S/shared"; echo x >"$S/shared/f"; chown postgres: "$S/shared/f"
mkfifo "$S/fifo"
"$F" snapshot --repo "$REPO" --cipher-key-file "$T/key" --base "$S" --label su tool shared fifo \
    >/dev/null 2>"$T/su.err"
ok "FIFO skipped with a warning at snapshot" grep -q 'warning: skipping "fifo"' "$T/su.err"
"$F" restore su --repo "$REPO" --cipher-key-file "$T/key" --target "$T/su1" 2>"$T/su1.err"
is "restore (--cipher-key-file)" 0 $?
is "set-uid bit not restored" 755 "$(stat -c %a "$T/su1/tool")"
is "set-gid bit of a directory not restored" 775 "$(stat -c %a "$T/su1/shared")"
ok "the restore says so" grep -q '"tool": set-user-ID/set-group-ID bits not restored' "$T/su1.err"
ok "no FIFO restored" test ! -e "$T/su1/fifo"
is "owner restored (top-level owners are the new target's)" postgres "$(stat -c %U "$T/su1/shared/f")"
mkdir "$T/su2"; chown postgres: "$T/su2"
exit_is "restore into a directory owned by someone else" 0 "$F" restore su --repo "$REPO" --key-file "$T/key" --target "$T/su2"
is "owners not restored there" root "$(stat -c %U "$T/su2/shared/f")"
mkdir "$T/su3"; chown postgres: "$T/su3"; chown nobody "$S/shared/f"
"$F" snapshot --repo "$REPO" --key-file "$T/key" --base "$S" --label su-b tool shared >/dev/null 2>&1
exit_is "--same-owner" 0 "$F" restore su-b --repo "$REPO" --key-file "$T/key" --target "$T/su3" --same-owner
is "--same-owner restores the recorded owner" nobody "$(stat -c %U "$T/su3/shared/f")"

# a non-empty target: refused, then --force moves only what is replaced aside
mkdir -p "$T/live/backend"; echo "OLD=1" >"$T/live/.env"; echo keep >"$T/live/unrelated.txt"
exit_is "non-empty target refused" 1 "$F" restore "$label" --repo "$REPO" --key-file "$T/key" --target "$T/live"
is "refused: old .env untouched" "OLD=1" "$(cat "$T/live/.env")"
# a process working in the target: refused, even with --force, nothing changed
(cd "$T/live/backend" && exec sleep 300) &
SLEEP=$!
t_on_exit "kill $SLEEP"
sleep 0.3
"$F" restore "$label" --repo "$REPO" --key-file "$T/key" --target "$T/live" --force 2>"$T/live.err"
is "live process in the target: refused (exit 1)" 1 $?
ok "refusal names the PID and its command" grep -q "in use by process $SLEEP (sleep)" "$T/live.err"
is "live process: old .env untouched" "OLD=1" "$(cat "$T/live/.env")"
is "live process: nothing moved aside" "" "$(find "$T/live" -name '.ragsafe-*')"
kill "$SLEEP"; wait "$SLEEP" 2>/dev/null
exit_is "--force" 0 "$F" restore "$label" --repo "$REPO" --key-file "$T/key" --target "$T/live" --force
ok "--force: .env restored" cmp "$P/.env" "$T/live/.env"
is "--force: unrelated file left alone" keep "$(cat "$T/live/unrelated.txt")"
is "--force: old .env moved aside" "OLD=1" "$(cat "$T"/live/.ragsafe-old-*/.env)"

# expire: keep the newest, sweep what only older snapshots referenced
sleep 1.1
echo "new log line" >"$P/logs/nginx/new.log"
"$F" snapshot --repo "$REPO" --key-file "$T/key" --base "$P" --label last .env logs/nginx >/dev/null
exit_is "expire --keep-last 1" 0 "$F" expire --repo "$REPO" --key-file "$T/key" --keep-last 1
is "one snapshot left" last "$("$F" list --repo "$REPO" --key-file "$T/key" | cut -f1)"
is "objects of expired snapshots swept (3 left)" 3 "$(find "$REPO/files/objects" -name '*.zst' | wc -l)"
exit_is "verify after expire" 0 "$F" verify --repo "$REPO" --key-file "$T/key"
exit_is "expire with a wrong key removes nothing: exit 3" 3 "$F" expire --repo "$REPO" --key-file "$T/key2" --keep-last 1
is "still one snapshot" 1 "$(find "$REPO/files/snapshots" -name '*.json' | wc -l)"
exit_is "usage: restore without --target" 2 "$F" restore last --repo "$REPO" --key-file "$T/key"
exit_is "unknown snapshot: exit 1" 1 "$F" restore nosuch --repo "$REPO" --key-file "$T/key" --target "$T/o7"
ok "secret still nowhere in the repository" bash -c "! grep -r -a -F -q -e \"\$1\" \"\$2\"" _ "$SECRET" "$REPO"
t_done
