#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Set the Gate account's RUB balance (the limit that decides whether payouts are offered)."""

from itrader.contract import run  # noqa: E402
from itrader.gate.ops import set_balance  # noqa: E402

if __name__ == "__main__":
    run("gate_set_balance", set_balance)
