"""A private dovecot IMAP server: the merchant's receipt mailbox in sandbox runs.

The bank simulator delivers its DKIM-signed receipt mail here and ``email_fetch_receipts`` reads it over real
IMAP, exactly as in production against a real mailbox.  Everything lives under one directory (config, state,
maildirs, socket dir), nothing on the host is touched, and mail processes run as ``nobody`` because dovecot
refuses uid 0 for mail access.  Readiness is a real IMAP LOGIN, not a TCP connect.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
protocol lda {{
  postmaster_address = postmaster@itrader.test
}}
"""


def _others_can_traverse(path: Path) -> bool:
    return all(part.stat().st_mode & 0o001 for part in (path, *path.parents) if part.exists())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    host: str
    port: int
    user: str
    password: str
    address: str


class MailServer:
    """dovecot -F under our control; ``stop()`` terminates it and keeps or removes its directory."""

    def __init__(self, root: Path, *, user: str = "merchant", password: str = "sandbox-mail-password",
                 address: str = "receipts@merchant.test", port: int | None = None) -> None:
        if shutil.which("dovecot") is None:
            raise RuntimeError("dovecot is not installed (./test.sh setup installs dovecot-imapd)")
        self.root = Path(root).resolve()
        self._own_root = False
        if not _others_can_traverse(self.root.parent):
            # dovecot's auth and mail processes run as other users; a private parent (pytest's tmp dirs are
            # 0700) would lock them out, so the server lives in its own world-traversable temp dir instead.
            self.root = Path(tempfile.mkdtemp(prefix="itrader-dovecot-"))
            self._own_root = True
        self.mailbox = Mailbox("127.0.0.1", port or free_port(), user, password, address)
        self.proc: subprocess.Popen[bytes] | None = None

    def _prepare(self) -> Path:
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # dovecot's auth process (user "dovecot") must traverse the root to read the passwd file.
        os.chmod(self.root, 0o755)
        nobody = pwd.getpwnam("nobody")
        uid, gid = (nobody.pw_uid, nobody.pw_gid) if os.geteuid() == 0 else (os.getuid(), os.getgid())
        if os.geteuid() == 0:
            os.chown(self.root / "mail", uid, gid)
        (self.root / "passwd").write_text(f"{self.mailbox.user}:{{PLAIN}}{self.mailbox.password}\n")
        conf = self.root / "dovecot.conf"
        conf.write_text(CONFIG.format(root=self.root, port=self.mailbox.port, uid=uid, gid=gid))
        return conf

    def start(self, timeout: float = 15.0) -> Mailbox:
        conf = self._prepare()
        log = open(self.root / "dovecot.stdout", "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {(self.root / 'dovecot.log').read_text(errors='replace')[-2000:]}")
            try:
                self._login_once()
                return self.mailbox
            except Exception as exc:  # not ready yet
                last_error = exc
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not accept an IMAP login in {timeout}s: {last_error}")

    def _login_once(self) -> None:
        from imapclient import IMAPClient

        with IMAPClient(self.mailbox.host, port=self.mailbox.port, ssl=False, timeout=2) as client:
            client.login(self.mailbox.user, self.mailbox.password)
            client.logout()

    def stop(self) -> None:
        from sandbox.process import stop_process

        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
