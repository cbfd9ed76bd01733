#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Read a bank receipt (PDF text layer, OCR fallback for scans and screenshots), check it against the payout."""

from itrader.contract import run  # noqa: E402
from itrader.receipts.ops import ocr_receipt  # noqa: E402

if __name__ == "__main__":
    run("ocr_receipt", ocr_receipt)
