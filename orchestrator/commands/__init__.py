"""Click command groups of `itrader` (database, config, accounts, review, pools, pause/resume).

Modules here import only click at import time; SQLAlchemy, pydantic and cryptography load inside the
commands, so `itrader --help` stays fast.
"""

from __future__ import annotations

import click


def commands() -> list[click.Command]:
    from orchestrator.commands.accounts import accounts
    from orchestrator.commands.dbcmd import config_group, db, keygen
    from orchestrator.commands.ops import pause, pools, resume, review
    from orchestrator.commands.stack import sandbox_stack

    return [db, keygen, config_group, accounts, pools, review, pause, resume, sandbox_stack]
