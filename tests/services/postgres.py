"""A PostgreSQL server for tests, found or started, with a fresh database per caller.

Order of preference:
1. ITRADER_TEST_PG_URL (e.g. postgresql+psycopg2://user@host:5432/db): that server; fresh databases are
   created on it (the role needs CREATEDB).
2. A server already listening on 127.0.0.1:5432 with trust auth (user postgres or root, database test or
   postgres), like the packaged cluster on a developer machine.
3. Otherwise a throwaway cluster: initdb into a temp dir (as the postgres user when we are root, because
   initdb refuses root), a private socket dir, a free port, fsync off; stopped and deleted by close().
   ITRADER_TEST_PG_THROWAWAY=1 forces this path (what a fresh CI machine does).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb") or shutil.which("pg_ctl")
    if which:
        return Path(which).parent
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")


def _try_connect(host: str, port: int, user: str, dbname: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(host=host, port=port, user=user, dbname=dbname, connect_timeout=2).close()
        return True
    except psycopg2.Error:
        return False


class PostgresServer:
    """Admin access to one server; hands out fresh databases."""

    def __init__(self, host: str, port: int, user: str, admin_db: str, kind: str, password: str | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.host, self.port, self.user, self.admin_db, self.kind = host, port, user, admin_db, kind
        self.password = password
        self._on_close = on_close
        self._created: list[str] = []

    def url(self, dbname: str) -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        # Test data is disposable: asynchronous commit spares an fsync per transaction on a packaged server.
        return (f"postgresql+psycopg2://{auth}@{self.host}:{self.port}/{dbname}"
                "?options=-c%20synchronous_commit%3Doff")

    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=self.admin_db, connect_timeout=5)
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
        return conn

    def create_database(self, prefix: str = "itrader_test") -> str:
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self._created.append(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()
        if name in self._created:
            self._created.remove(name)

    def close(self) -> None:
        for name in list(self._created):
            with contextlib.suppress(Exception):
                self.drop_database(name)
        if self._on_close is not None:
            fn, self._on_close = self._on_close, None
            fn()


def _start_throwaway() -> PostgresServer:
    pgbin = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="itrader-pg-"))
    data, sock, log = root / "data", root / "sock", root / "pg.log"
    sock.mkdir()
    demote: Callable[[], None] | None = None
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)

        def demote() -> None:
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)

    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    env.pop("PGDATA", None)

    def run(args: list[str]) -> None:
        res = subprocess.run(args, preexec_fn=demote, env=env, capture_output=True, text=True, cwd=root,
                             timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {res.stderr.strip() or res.stdout.strip()}")

    port = _free_port()
    try:
        run([str(pgbin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"])
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off")
        run([str(pgbin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", opts, "start"])
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise

    def stop() -> None:
        with contextlib.suppress(Exception):
            run([str(pgbin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)  # a crashed test session must not leave a server running
    server = PostgresServer("127.0.0.1", port, "postgres", "postgres", "throwaway", on_close=stop)
    server.root = root  # type: ignore[attr-defined]
    return server


def start_postgres(force_throwaway: bool | None = None) -> PostgresServer:
    if force_throwaway is None:
        force_throwaway = os.environ.get("ITRADER_TEST_PG_THROWAWAY") == "1"
    env_url = os.environ.get("ITRADER_TEST_PG_URL")
    if env_url and not force_throwaway:
        u = make_url(env_url)
        return PostgresServer(u.host or "127.0.0.1", u.port or 5432, u.username or "postgres", u.database or "postgres",
                              "env", password=u.password)
    if not force_throwaway:
        for user in ("postgres", "root"):
            for dbname in ("test", "postgres"):
                if _try_connect("127.0.0.1", 5432, user, dbname):
                    return PostgresServer("127.0.0.1", 5432, user, dbname, "local")
    return _start_throwaway()
