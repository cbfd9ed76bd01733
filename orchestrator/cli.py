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
@click.option("--buyers", default=None, metavar="MIX",
              help='Simulated Bybit buyers on from the start, e.g. "cooperative:6,refuser:1" (default: off).')
@click.option("--print-env", is_flag=True, help="Print the export lines for this port and exit.")
def sandbox(host: str, port: int, seed: int, speed: float, buyers: str | None, print_env: bool) -> None:
    """Serve every simulated venue (Bybit, Gate, bank, LLM) on one port."""
    from sandbox.app import env_lines, serve

    if print_env:
        click.echo("\n".join(env_lines(host, port)))
        return
    if speed <= 0:
        raise click.BadParameter("must be > 0", param_hint="--speed")
    options: dict[str, object] = {}
    if buyers:
        from sandbox.bybit.buyers import parse_mix

        try:
            parse_mix(buyers)  # a typo must fail here, not as a crash inside the first tick
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--buyers") from None
        options["buyers"] = buyers
    click.echo(f"sandbox on http://{host}:{port} (seed {seed}, speed {speed}); health: /sandbox/health", err=True)
    serve(host, port, seed, speed, options)


@main.command()
@click.option("--config", "config_path", default=None, help="TOML config (default: $ITRADER_CONFIG or var/itrader.toml).")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=1),
              help="Sandbox runs only: divide every duration, matching `itrader sandbox --speed`.")
def run(config_path: str | None, speed: float) -> None:
    """Run the orchestrator until SIGTERM/SIGINT (what supervisord starts)."""
    from orchestrator.config import load_config
    from orchestrator.db import InstanceLocked
    from orchestrator.service import Service, setup_logging

    setup_logging()
    cfg = load_config(config_path)
    try:
        service = Service(cfg, speed=speed)
    except InstanceLocked as exc:
        raise click.ClickException(str(exc)) from None
    service.install_signal_handlers()
    service.run()


@main.command()
@click.option("--payouts", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--speed", default=60.0, show_default=True, type=click.FloatRange(min=1, max=600),
              help="Simulated time runs this many times faster (venues and orchestrator alike).")
@click.option("--db", default=None, help="Database URL (default: a fresh SQLite file in the run directory).")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--bybit-accounts", default=6, show_default=True, type=click.IntRange(1, 100))
@click.option("--timeout", "timeout_s", default=900.0, show_default=True, type=float)
@click.option("--mix", default=None, help='Buyer profile weights as JSON, e.g. \'{"cooperative": 1}\'.')
def demo(payouts: int, speed: float, db: str | None, seed: int, bybit_accounts: int, timeout_s: float,
         mix: str | None) -> None:
    """The main job on the embedded default: SQLite + sandbox venues + orchestrator, N payouts end to end."""
    import json

    from orchestrator.demo import DEFAULT_MIX, run_demo

    weights = json.loads(mix) if mix else DEFAULT_MIX
    raise SystemExit(run_demo(payouts, speed, db, seed, bybit_accounts, timeout_s, weights))


def _register_orchestrator_commands() -> None:
    """db, keygen, config, accounts, pools, review, pause, resume (their modules import only click)."""
    from orchestrator.commands import commands

    for cmd in commands():
        main.add_command(cmd)


_register_orchestrator_commands()


if __name__ == "__main__":
    main()
