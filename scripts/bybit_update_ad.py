#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Edit or re-list a P2P ad; the venue wants a full replacement, built here from item/info."""

from itrader.bybit.ops import update_ad  # noqa: E402
from itrader.contract import run  # noqa: E402

if __name__ == "__main__":
    run("bybit_update_ad", update_ad)
