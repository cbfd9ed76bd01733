"""A real private dovecot for tests: started on a free port under a temp dir, ready after a real IMAP LOGIN.

The server itself is ``sandbox.mailserver.MailServer`` (the sandbox's merchant mailbox); this wrapper adds
what tests need around it: a context manager, a logged-in client, and helpers to look at flags directly over
IMAP so assertions never trust the code under test.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox.mailserver import MailServer


class Dovecot:
    def __init__(self, root: Path | None = None, *, user: str = "merchant", password: str = "test-mail-pw-5d1c",
                 address: str = "receipts@merchant.test") -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="itrader-dovecot-"))
        # dovecot's unprivileged auth process must traverse every directory down to the passwd file.
        self.root.chmod(0o755)
        self.server = MailServer(self.root, user=user, password=password, address=address)
        self.mailbox = self.server.start()

    @property
    def host(self) -> str:
        return self.mailbox.host

    @property
    def port(self) -> int:
        return self.mailbox.port

    def fetch_request(self, **extra: Any) -> dict[str, Any]:
        """The email_fetch_receipts request for this mailbox."""
        return {"host": self.host, "port": self.port, "ssl": False, "username": self.mailbox.user,
                "password": self.mailbox.password, **extra}

    def bank_config(self) -> dict[str, Any]:
        """The body of POST /sandbox/bank/mailbox."""
        return {"host": self.host, "port": self.port, "user": self.mailbox.user, "password": self.mailbox.password,
                "address": self.mailbox.address}

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        from imapclient import IMAPClient

        with IMAPClient(self.host, port=self.port, ssl=False, timeout=10) as imap:
            imap.login(self.mailbox.user, self.mailbox.password)
            imap.select_folder("INBOX")
            yield imap

    def unseen(self) -> list[int]:
        with self.client() as imap:
            return sorted(imap.search(["UNSEEN"]))

    def seen(self, uid: int) -> bool:
        with self.client() as imap:
            return b"\\Seen" in imap.get_flags([uid]).get(uid, ())

    def mark_all_seen(self) -> None:
        with self.client() as imap:
            uids = imap.search(["UNSEEN"])
            if uids:
                imap.add_flags(uids, [b"\\Seen"])

    def append(self, raw: bytes) -> None:
        with self.client() as imap:
            imap.append("INBOX", raw)

    def close(self) -> None:
        self.server.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
