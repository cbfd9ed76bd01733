#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Remove a P2P ad."""

from itrader.bybit.ops import cancel_ad  # noqa: E402
from itrader.contract import run  # noqa: E402

if __name__ == "__main__":
    run("bybit_cancel_ad", cancel_ad)
