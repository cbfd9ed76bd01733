#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Give an accepted Gate payout back with /cancel (the buyer backed out)."""

from itrader.contract import run  # noqa: E402
from itrader.gate.ops import cancel  # noqa: E402

if __name__ == "__main__":
    run("gate_cancel", cancel)
