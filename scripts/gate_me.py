#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Check a Gate session and report the account's RUB and USDT wallet balances."""

from itrader.contract import run  # noqa: E402
from itrader.gate.ops import me  # noqa: E402

if __name__ == "__main__":
    run("gate_me", me)
