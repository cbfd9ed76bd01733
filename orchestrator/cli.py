"""The ``itrader`` command.  Subcommands import their machinery lazily so ``itrader --help`` stays instant."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """itrader: Gate payouts -> Bybit P2P sales -> receipt -> approve -> release."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8800, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same market and buyers.")
@click.option("--speed", default=1.0, show_default=True, type=float, help="Simulated durations shrink by this factor.")
@click.option("--print-env", is_flag=True, help="Print the export lines for this port and exit.")
def sandbox(host: str, port: int, seed: int, speed: float, print_env: bool) -> None:
    """Serve every simulated venue (Bybit, Gate, bank, LLM) on one port."""
    from sandbox.app import env_lines, serve

    if print_env:
        click.echo("\n".join(env_lines(host, port)))
        return
    if speed <= 0:
        raise click.BadParameter("must be > 0", param_hint="--speed")
    click.echo(f"sandbox on http://{host}:{port} (seed {seed}, speed {speed}); health: /sandbox/health", err=True)
    serve(host, port, seed, speed)


def _register_orchestrator_commands() -> None:
    """db, keygen, config, accounts, pools, review, pause, resume (their modules import only click)."""
    from orchestrator.commands import commands

    for cmd in commands():
        main.add_command(cmd)


_register_orchestrator_commands()


if __name__ == "__main__":
    main()
