#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""List Gate payouts by status, page or search; status-4 payouts come back with hidden (null) amounts."""

from itrader.contract import run  # noqa: E402
from itrader.gate.ops import list_payouts  # noqa: E402

if __name__ == "__main__":
    run("gate_list_payouts", list_payouts)
