#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Log in to the Gate panel and return the session cookies in browser-export format."""

from itrader.contract import run  # noqa: E402
from itrader.gate.ops import login  # noqa: E402

if __name__ == "__main__":
    run("gate_login", login)
