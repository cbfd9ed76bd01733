"""The bank's outgoing mail: DKIM keys, the DNS TXT records the sandbox publishes, and IMAP delivery.

The sandbox cannot run real DNS, so every key it signs with is published through ``GET /sandbox/bank/dkim``;
clients feed those records to ``email_fetch_receipts`` as ``dkim_dns_override`` (the production path asks
real DNS).  Keys are generated at sandbox start, so nothing secret ever lives in the repository.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

BANK_DOMAIN = "tbank.ru"
BANK_SENDER = "noreply@tbank.ru"
BANK_SELECTOR = "dkim2025"
# Domains nobody but the bank may sign for: the sandbox refuses to forge a valid signature for them.
BANK_DOMAINS = frozenset({"tbank.ru", "tinkoff.ru"})
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"]


@dataclass
class DkimKey:
    domain: str
    selector: str
    private_pem: bytes
    public_b64: str

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.public_b64}"


def generate_key(domain: str, selector: str) -> DkimKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return DkimKey(domain, selector, pem, base64.b64encode(der).decode())


class KeyRing:
    """The bank's key plus keys of look-alike domains that fraudsters legitimately own (published too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bank = generate_key(BANK_DOMAIN, BANK_SELECTOR)
        self._published: dict[str, DkimKey] = {BANK_DOMAIN: self.bank}

    def for_domain(self, domain: str) -> DkimKey:
        """The published key of a non-bank domain, created on first use (a fraudster's own domain)."""
        with self._lock:
            if domain not in self._published:
                self._published[domain] = generate_key(domain, "mail")
            return self._published[domain]

    def records(self) -> dict[str, str]:
        with self._lock:
            return {k.record_name: k.record for k in self._published.values()}


def build_message(*, from_addr: str, from_name: str | None, to_addr: str, subject: str, body: str,
                  pdf: bytes, filename: str, domain: str, content_type: str = "application/pdf") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{from_name} <{from_addr}>" if from_name else from_addr
    msg["To"] = to_addr
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(body)
    maintype, _, subtype = content_type.partition("/")
    msg.add_attachment(pdf, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def sign(message: bytes, key: DkimKey, *, domain: str | None = None) -> bytes:
    """Prepend a DKIM-Signature (relaxed/relaxed, rsa-sha256) made with ``key`` for ``domain``."""
    import dkim

    header = dkim.sign(message, key.selector.encode(), (domain or key.domain).encode(), key.private_pem,
                       include_headers=SIGNED_HEADERS, canonicalize=(b"relaxed", b"relaxed"))
    return header + message


@dataclass
class Mailbox:
    """Where mail for the merchant's receipt address lands (set at runtime by the control API)."""

    host: str
    port: int
    user: str
    password: str
    address: str
    folder: str = "INBOX"
    ssl: bool = False

    def public(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "address": self.address,
                "folder": self.folder, "ssl": self.ssl}


def deliver(mailbox: Mailbox, raw: bytes) -> dict[str, Any]:
    """IMAP APPEND into the merchant's mailbox, unseen, as an MTA's local delivery would leave it."""
    from imapclient import IMAPClient

    try:
        with IMAPClient(mailbox.host, port=mailbox.port, ssl=mailbox.ssl, timeout=10) as client:
            client.login(mailbox.user, mailbox.password)
            answer = client.append(mailbox.folder, raw, flags=())
            client.logout()
        return {"delivered": True, "imap": answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)}
    except Exception as exc:  # noqa: BLE001 - report delivery problems to the caller, never crash a tick
        return {"delivered": False, "reason": "delivery_failed", "error": type(exc).__name__}
