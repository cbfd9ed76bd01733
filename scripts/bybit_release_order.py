#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Release the USDT of a paid order (status 20 only; never twice)."""

from itrader.bybit.ops import release_order  # noqa: E402
from itrader.contract import run  # noqa: E402

if __name__ == "__main__":
    run("bybit_release_order", release_order)
