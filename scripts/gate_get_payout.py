#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Read one Gate payout, falling back to search[id] when the details endpoint fails (it answers 410)."""

from itrader.contract import run  # noqa: E402
from itrader.gate.ops import get_payout  # noqa: E402

if __name__ == "__main__":
    run("gate_get_payout", get_payout)
