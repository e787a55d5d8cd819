#!/usr/bin/env bash
# 049_pitr_delta_tar.sh -- 049_pitr_delta.sh on a --format tar base backup: --delta,
# its refusals and a --delta that fails half way on a damaged tar.
DELTA_FORMAT=tar exec bash "$(dirname "$0")/049_pitr_delta.sh"
