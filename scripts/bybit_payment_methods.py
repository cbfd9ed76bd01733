#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""List the account's own payment methods, classified as sbp/tinkoff/other for ad creation."""

from itrader.bybit.ops import payment_methods  # noqa: E402
from itrader.contract import run  # noqa: E402

if __name__ == "__main__":
    run("bybit_payment_methods", payment_methods)
