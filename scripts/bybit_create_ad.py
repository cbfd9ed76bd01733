#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Post a P2P ad (SELL USDT for RUB); everything the venue would reject is checked first."""

from itrader.bybit.ops import create_ad  # noqa: E402
from itrader.contract import run  # noqa: E402

if __name__ == "__main__":
    run("bybit_create_ad", create_ad)
