#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Print the Bybit P2P account's own profile (who we are, limits, privileges)."""

from itrader.bybit.ops import account_info  # noqa: E402
from itrader.contract import run  # noqa: E402

if __name__ == "__main__":
    run("bybit_account_info", account_info)
