#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Accept (take) a Gate payout with /show; idempotent for a payout this account already took."""

from itrader.contract import run  # noqa: E402
from itrader.gate.ops import accept  # noqa: E402

if __name__ == "__main__":
    run("gate_accept", accept)
