"""The ``email_fetch_receipts`` operation: pull receipt mail over IMAP, verify DKIM, save attachments.

Decisions (see the receipts reference §1 and §8):

* **Search ``UNSEEN`` (plus ``SINCE``), not ``UNSEEN FROM <sender>``.**  IMAP ``FROM`` is a substring match
  on the raw header, so it neither proves the sender nor shows us look-alike senders.  Every unseen message
  is fetched and reported once, with ``allowlisted`` (the exact From address is in the allowlist), ``dkim``
  (``pass`` only for a valid signature whose ``d=`` is the From domain or its parent) and ``trusted``
  (both).  Only trusted messages can feed an automatic approve; the rest are evidence for a human.
* **Fetch with ``BODY.PEEK[]``** and set ``\\Seen`` on a message only after every accepted attachment is on
  disk (temp file, fsync, rename, fsync of the directory).  A failed save leaves the message unseen so the
  next poll retries it.
* Attachments are saved under content-addressed names (``<sha256>.<ext>``): no attacker-chosen path ever
  reaches the file system, and the same file saved twice is the same file.  Only PDFs and images (checked by
  their bytes, not just the declared type) within the size limit are saved; others are listed with a reason.
* The DNS TXT records of DKIM keys come from real DNS (dnspython), or from ``dkim_dns_override`` /
  ``ITRADER_DKIM_DNS_FILE`` - how the sandbox publishes its bank key.
"""

from __future__ import annotations

import email
import hashlib
import json
import os
import tempfile
from datetime import date, datetime
from email import policy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from itrader.contract import Context
from itrader.errors import InputError, ScriptError, network_error

DEFAULT_SENDERS = ("noreply@tinkoff.ru", "noreply@tbank.ru")
DEFAULT_MAX_MESSAGES = 50
DEFAULT_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
EXTENSIONS = {"pdf": "pdf", "png": "png", "jpeg": "jpg", "gif": "gif", "webp": "webp", "bmp": "bmp", "tiff": "tif"}


def sniff_kind(data: bytes) -> str | None:
    """The real type of an attachment by its magic bytes (the declared Content-Type is attacker data)."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


# -- DKIM -----------------------------------------------------------------------------------------------------
def load_dns_override(request: dict[str, Any]) -> dict[str, str] | None:
    """Records from the request, else from the JSON file named by ITRADER_DKIM_DNS_FILE, else None (real DNS).

    Both ``{"name": "v=DKIM1; ..."}`` and the sandbox's ``{"records": {...}}`` shapes are accepted.
    """
    records = request.get("dkim_dns_override")
    if records is None and os.environ.get("ITRADER_DKIM_DNS_FILE"):
        path = os.environ["ITRADER_DKIM_DNS_FILE"]
        try:
            with open(path, encoding="utf-8") as fh:
                records = json.load(fh)
        except (OSError, ValueError) as exc:
            raise InputError("bad_dkim_dns_file", f"ITRADER_DKIM_DNS_FILE unreadable ({type(exc).__name__})") from None
    if records is None:
        return None
    if isinstance(records, dict) and isinstance(records.get("records"), dict):
        records = records["records"]
    if not isinstance(records, dict) or not all(isinstance(v, str) for v in records.values()):
        raise InputError("bad_dkim_dns_override", "dkim_dns_override must map DNS names to TXT strings")
    return {k.lower().rstrip("."): v for k, v in records.items()}


def dkim_status(raw: bytes, from_domain: str | None, dns: dict[str, str] | None) -> tuple[str, str | None]:
    """("pass" | "fail" | "none", signing domain). pass = a valid signature aligned with the From domain."""
    import dkim

    try:
        verifier = dkim.DKIM(raw, minkey=1024)
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    except Exception:  # noqa: BLE001 - unparseable mail simply has no usable signature
        return "fail", None
    if count == 0:
        return "none", None

    dnsfunc = None
    if dns is not None:
        def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:  # noqa: ARG001 - dkimpy's signature
            value = dns.get(name.decode("ascii", "replace").lower().rstrip("."))
            return value.encode() if value is not None else None

    first_domain: str | None = None
    for idx in range(count):
        try:
            ok = verifier.verify(idx=idx, dnsfunc=dnsfunc) if dnsfunc else verifier.verify(idx=idx)
        except Exception:  # noqa: BLE001 - malformed signature or DNS failure: not a pass
            ok = False
        domain = (verifier.domain or b"").decode("ascii", "replace").lower() or None
        first_domain = first_domain or domain
        # Relaxed alignment: d= is the From domain or a parent of it, but never a bare public suffix ("ru").
        aligned = bool(domain and from_domain and "." in domain
                       and (from_domain == domain or from_domain.endswith("." + domain)))
        if ok and aligned:
            return "pass", domain
    return "fail", first_domain


# -- saving ---------------------------------------------------------------------------------------------------
def save_atomically(directory: str, name: str, data: bytes) -> str:
    """Write temp + fsync + rename + fsync(dir): after return the file survives a crash."""
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, name)
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def _decode_date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError):
        return None


def process_message(raw: bytes, *, allowlist: set[str], dns: dict[str, str] | None, save_dir: str,
                    max_bytes: int) -> tuple[dict[str, Any], bool]:
    """(report, all accepted attachments saved) for one raw message."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    addresses = [addr.lower() for _, addr in getaddresses([str(h) for h in msg.get_all("From", [])]) if addr]
    # Exactly one From address, or it cannot be trusted (RFC 5322 allows lists; banks never send them).
    from_addr = addresses[0] if len(addresses) == 1 else None
    from_domain = from_addr.rsplit("@", 1)[-1] if from_addr and "@" in from_addr else None
    allowlisted = from_addr is not None and from_addr in allowlist
    dkim, dkim_domain = dkim_status(raw, from_domain, dns)
    report: dict[str, Any] = {
        "message_id": str(msg.get("Message-ID") or "") or None,
        "from": from_addr or (str(msg.get("From")) if msg.get("From") else None),
        "subject": str(msg.get("Subject") or ""),
        "date": _decode_date(str(msg.get("Date")) if msg.get("Date") else None),
        "dkim": dkim,
        "dkim_domain": dkim_domain,
        "allowlisted": allowlisted,
        "trusted": allowlisted and dkim == "pass",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "attachments": [],
        "error": None,
    }
    ok = True
    for part in msg.iter_attachments():
        try:
            data = part.get_content()
        except Exception:  # noqa: BLE001 - an undecodable part is refused, not fatal
            data = b""
        if isinstance(data, str):
            data = data.encode()
        entry: dict[str, Any] = {
            "filename": part.get_filename() or "",
            "content_type": part.get_content_type(),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "saved_path": None,
            "accepted": False,
            "reason": None,
        }
        kind = sniff_kind(data)
        if kind is None:
            entry["reason"] = "unsupported_type"
        elif len(data) > max_bytes:
            entry["reason"] = "too_large"
        else:
            try:
                entry["saved_path"] = save_atomically(save_dir, f"{entry['sha256']}.{EXTENSIONS[kind]}", data)
                entry["accepted"] = True
            except OSError as exc:
                entry["reason"] = "save_failed"
                report["error"] = f"save_failed: {exc.__class__.__name__}"
                ok = False
        report["attachments"].append(entry)
    return report, ok


# -- the operation --------------------------------------------------------------------------------------------
def fetch_receipts(request: dict[str, Any], ctx: Context) -> dict[str, Any]:
    from imapclient import IMAPClient
    from imapclient.exceptions import IMAPClientError, LoginError

    allowlist = {s.strip().lower() for s in request.get("senders") or DEFAULT_SENDERS}
    dns = load_dns_override(request)
    save_dir = str(request["save_dir"])
    max_messages = int(request.get("max_messages", DEFAULT_MAX_MESSAGES))
    max_bytes = int(request.get("max_attachment_bytes", DEFAULT_MAX_ATTACHMENT_BYTES))
    mark_seen = bool(request.get("mark_seen", True))
    folder = str(request.get("folder", "INBOX"))
    criteria: list[Any] = ["UNSEEN"]
    if request.get("since"):
        try:
            since = date.fromisoformat(str(request["since"])[:10])
        except ValueError:
            raise InputError("bad_since", "since must be an ISO date (YYYY-MM-DD...)") from None
        criteria += ["SINCE", since]
    host, port = str(request["host"]), int(request.get("port", 993 if request.get("ssl", True) else 143))
    messages: list[dict[str, Any]] = []
    try:
        with IMAPClient(host, port=port, ssl=bool(request.get("ssl", True)),
                        timeout=float(request.get("timeout_s", 30))) as client:
            try:
                client.login(str(request["username"]), str(request["password"]))
            except LoginError:
                raise ScriptError("auth_failed", "the IMAP server refused the login", retryable=False) from None
            client.select_folder(folder)
            uids = sorted(client.search(criteria))
            pending = len(uids)
            uids = uids[:max_messages]
            fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            done: list[int] = []
            for uid in uids:
                raw = fetched.get(uid, {}).get(b"BODY[]")
                if raw is None:
                    messages.append({"uid": uid, "message_id": None, "from": None, "subject": "", "date": None,
                                     "dkim": "none", "dkim_domain": None, "allowlisted": False, "trusted": False,
                                     "sha256": None, "attachments": [], "error": "vanished", "marked_seen": False})
                    continue
                report, ok = process_message(raw, allowlist=allowlist, dns=dns, save_dir=save_dir,
                                             max_bytes=max_bytes)
                report = {"uid": uid, **report, "marked_seen": False}
                if ok:
                    done.append(uid)
                messages.append(report)
            if mark_seen and done:
                client.add_flags(done, [b"\\Seen"])
                for report in messages:
                    if report.get("uid") in done:
                        report["marked_seen"] = True
            client.logout()
    except ScriptError:
        raise
    except (OSError, IMAPClientError) as exc:
        # Only the class name: server error text may echo what we sent.
        if isinstance(exc, IMAPClientError) and "select" in str(exc).lower():
            raise ScriptError("folder_not_found", f"cannot select folder {folder!r}", retryable=False) from None
        raise network_error(exc, "IMAP server") if isinstance(exc, OSError) else ScriptError(
            "imap_error", f"IMAP protocol error ({type(exc).__name__})", retryable=True) from None
    ctx.log.info("receipts fetched", extra={"fields": {"messages": len(messages), "pending": pending}})
    return {"folder": folder, "searched": " ".join(str(c) for c in criteria), "pending": pending,
            "fetched_at": datetime.now().astimezone().isoformat(timespec="seconds"), "messages": messages}
