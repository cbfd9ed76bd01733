#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""List P2P orders (all, or pending with the documented empty-items fallback)."""

from itrader.bybit.ops import list_orders  # noqa: E402
from itrader.contract import run  # noqa: E402

if __name__ == "__main__":
    run("bybit_list_orders", list_orders)
