#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Approve an accepted Gate payout with the receipt file (multipart attachments[]); 6 and 7 count as approved."""

from itrader.contract import run  # noqa: E402
from itrader.gate.ops import approve  # noqa: E402

if __name__ == "__main__":
    run("gate_approve", approve)
