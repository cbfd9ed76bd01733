#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Fetch unseen receipt mail over IMAP, verify DKIM, save PDF/image attachments, then mark the mail seen."""

from itrader.contract import run  # noqa: E402
from itrader.receipts.inbox import fetch_receipts  # noqa: E402

if __name__ == "__main__":
    run("email_fetch_receipts", fetch_receipts)
