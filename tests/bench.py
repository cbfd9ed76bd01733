"""Benchmark runner (``./test.sh bench`` = ``python -m tests.bench``): not a test, a table of measured numbers.

Every module ``tests/bench_*.py`` that defines ``rows(ctx) -> list[dict]`` contributes rows; one sandbox is
started for all of them and handed over in ``ctx``.  A row is built with :func:`row` from raw samples in
milliseconds and an optional target (median must be at or below it).  The output is ONE table:

    name | median ms | p90 ms | n | target | ok

Options: ``-k SUBSTR`` runs only modules whose name contains SUBSTR; ``--json`` prints the rows as JSON lines
instead of the table; ``--strict`` exits 1 when any row misses its target (default: always exit 0, because
numbers on a shared, loaded machine are information, not a verdict).
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import REPO, Sandbox, ServeWorker, script_env

TESTS_DIR = Path(__file__).resolve().parent


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def row(name: str, samples_ms: list[float], target_ms: float | None = None, note: str = "") -> dict[str, Any]:
    median = statistics.median(samples_ms)
    return {
        "name": name,
        "median_ms": round(median, 2),
        "p90_ms": round(percentile(samples_ms, 90), 2),
        "n": len(samples_ms),
        "target": f"<= {target_ms:g} ms" if target_ms is not None else "",
        "ok": None if target_ms is None else median <= target_ms,
        "note": note,
    }


@dataclass
class BenchContext:
    """What a bench module gets: the shared sandbox and small timing helpers."""

    sandbox: Sandbox
    python: str = sys.executable
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return self.sandbox.env

    def time_calls(self, fn: Callable[[], Any], n: int, warmup: int = 0) -> list[float]:
        for _ in range(warmup):
            fn()
        out: list[float] = []
        for _ in range(n):
            started = time.perf_counter()
            fn()
            out.append((time.perf_counter() - started) * 1000)
        return out

    def spawn(self, argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One child process, spawn to exit; returns (exit status, stdout)."""
        proc = subprocess.run(argv, input=stdin, capture_output=True, env=script_env(env), cwd=REPO, timeout=60)
        return proc.returncode, proc.stdout

    def spawn_cpu_ms(self, argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None) -> float:
        """CPU time (user + system) one child used: unlike wall time, barely inflated by a loaded machine."""
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        code, out = self.spawn(argv, stdin, env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if code != 0:
            raise RuntimeError(f"{argv[-1]} failed: {out[:300]!r}")
        return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000

    @staticmethod
    def process_cpu_ms(pid: int) -> float:
        """CPU time used so far by a running process (Linux /proc), for per-call cost of --serve workers."""
        import os

        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def script(self, name: str) -> str:
        return str(REPO / "scripts" / f"{name}.py")

    def serve(self, name: str, env: dict[str, str] | None = None) -> ServeWorker:
        return ServeWorker(name, env=env)


def discover(pattern: str | None) -> list[Any]:
    modules = []
    for path in sorted(TESTS_DIR.glob("bench_*.py")):
        if pattern and pattern not in path.stem:
            continue
        module = importlib.import_module(f"tests.{path.stem}")
        if callable(getattr(module, "rows", None)):
            modules.append(module)
    return modules


def render(rows: list[dict[str, Any]]) -> str:
    head = ["name", "median ms", "p90 ms", "n", "target", "ok"]
    body = [[r["name"], f"{r['median_ms']:.1f}", f"{r['p90_ms']:.1f}", str(r["n"]), r["target"],
             "" if r["ok"] is None else ("yes" if r["ok"] else "NO")] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    out = [line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    notes = [f"  {r['name']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(out + (["", "notes:", *notes] if notes else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="pattern", help="only bench modules whose name contains this")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of the table")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any row misses its target")
    args = parser.parse_args(argv)
    modules = discover(args.pattern)
    if not modules:
        print("no bench modules found", file=sys.stderr)
        return 2
    box = Sandbox(seed=7, speed=1.0)
    rows: list[dict[str, Any]] = []
    try:
        ctx = BenchContext(sandbox=box)
        for module in modules:
            try:
                rows.extend(module.rows(ctx))
            except Exception as exc:  # one broken module must not hide the others' numbers
                rows.append({"name": f"{module.__name__} FAILED", "median_ms": 0.0, "p90_ms": 0.0, "n": 0,
                             "target": "", "ok": False, "note": f"{type(exc).__name__}: {exc}"})
    finally:
        box.close()
    if args.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
    else:
        print(render(rows))
    return 1 if args.strict and any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
