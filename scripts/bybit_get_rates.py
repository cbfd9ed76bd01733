#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""USDT/RUB P2P market rates and our ad price by the tiered (or configured) pricing rule."""

from itrader.bybit.ops import get_rates  # noqa: E402
from itrader.contract import run  # noqa: E402

if __name__ == "__main__":
    run("bybit_get_rates", get_rates)
