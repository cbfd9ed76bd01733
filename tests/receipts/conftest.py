"""Receipt-suite fixtures: one real dovecot per session, wired to the sandbox bank's mail delivery."""

from __future__ import annotations

import json

import pytest

from tests.services.dovecot import Dovecot


@pytest.fixture(scope="session")
def dovecot():
    # Its own temp root (not pytest's 0700 tree): dovecot's unprivileged auth process must traverse it.
    server = Dovecot()
    yield server
    server.close()


@pytest.fixture(scope="session")
def bank_mail(sandbox, dovecot, tmp_path_factory):
    """The sandbox bank delivers to our dovecot; returns the DKIM records file the sandbox publishes."""
    sandbox.control("POST", "/sandbox/bank/mailbox", json=dovecot.bank_config())
    path = tmp_path_factory.mktemp("dkim") / "dns.json"
    path.write_text(json.dumps(sandbox.control("GET", "/sandbox/bank/dkim")))
    return path


@pytest.fixture
def inbox(dovecot, bank_mail):
    """A mailbox with nothing unseen at the start of the test."""
    dovecot.mark_all_seen()
    return dovecot
