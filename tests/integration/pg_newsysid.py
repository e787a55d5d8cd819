#!/usr/bin/env python3
"""pg_newsysid.py PGDATA -- give a copy of a freshly initdb'd (never started) cluster a
database system identifier of its own, as another initdb would have.

lib.sh's pg_init copies one template cluster per test run instead of running initdb for
every cluster (a copy is several times faster); a copy keeps the template's system
identifier, which ragsafe uses to tell clusters apart. The identifier lives in two
places of such a cluster: global/pg_control (followed by that struct's CRC-32C, which is
recomputed) and the long header of the first page of each WAL segment in pg_wal
(xlp_sysid at offset 24; page headers are outside every record's CRC). Refuses anything
it does not recognise (exit 1), rather than leave a half-patched cluster.
"""
import os
import random
import struct
import sys
import time

PG_CONTROL_SIZE = 8192
XLP_LONG_HEADER = 0x0002


def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: pg_newsysid.py PGDATA")
    pgdata = sys.argv[1]
    ctl_path = os.path.join(pgdata, "global", "pg_control")
    with open(ctl_path, "rb") as f:
        ctl = bytearray(f.read())
    if len(ctl) != PG_CONTROL_SIZE:
        sys.exit(f"{ctl_path}: {len(ctl)} bytes, not {PG_CONTROL_SIZE}")
    old = struct.unpack_from("<Q", ctl, 0)[0]
    # the CRC-32C of ControlFileData sits right after the bytes it covers: find where
    crc_off = next((off for off in range(16, 1024, 4)
                    if struct.unpack_from("<I", ctl, off)[0] == crc32c(ctl[:off])), None)
    if crc_off is None:
        sys.exit(f"{ctl_path}: no valid CRC-32C found")
    # as PostgreSQL makes one: seconds << 32 | microseconds << 12 | 12 more bits
    now = time.time()
    new = (int(now) << 32) | (int((now % 1) * 1e6) << 12) | random.getrandbits(12)
    if new == old:
        new ^= 1
    wal_dir = os.path.join(pgdata, "pg_wal")
    segs = sorted(n for n in os.listdir(wal_dir) if len(n) == 24)
    if not segs:
        sys.exit(f"{wal_dir}: no WAL segment")
    patched = []
    for name in segs:
        path = os.path.join(wal_dir, name)
        with open(path, "rb") as f:
            hdr = f.read(40)
        info = struct.unpack_from("<H", hdr, 2)[0]
        sysid = struct.unpack_from("<Q", hdr, 24)[0]
        if not info & XLP_LONG_HEADER or sysid != old:
            sys.exit(f"{path}: no long page header with system identifier {old}")
        patched.append(path)
    struct.pack_into("<Q", ctl, 0, new)
    struct.pack_into("<I", ctl, crc_off, crc32c(ctl[:crc_off]))
    for path in patched:
        with open(path, "r+b") as f:
            f.seek(24)
            f.write(struct.pack("<Q", new))
    with open(ctl_path, "r+b") as f:
        f.write(ctl)
    print(new)


if __name__ == "__main__":
    main()
