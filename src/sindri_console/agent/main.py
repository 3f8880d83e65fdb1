"""Entry point of ``sindri-console agent`` (40-agent-protocol §10)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from sindri_console import __version__
from sindri_console.agent.config import EXIT_CONFIG, ConfigError, load_config
from sindri_console.agent.log import setup_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sindri-console agent",
        description="Run the Sindri Console agent on this instance (configured through the environment).",
    )
    parser.add_argument("--version", action="store_true", help="print the agent version and exit")
    parser.add_argument(
        "--print-config", action="store_true", help="print the effective configuration (key redacted) and exit"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        print(f"sindri-console-agent {__version__}")
        return 0
    try:
        config = load_config()
    except ConfigError as exc:
        print(json.dumps({"level": "error", "msg": f"invalid configuration: {exc}", "variable": exc.variable}),
              file=sys.stderr)
        return EXIT_CONFIG
    if args.print_config:
        print(json.dumps(config.redacted(), indent=2, sort_keys=True))
        return 0
    setup_logging(config.log_level)
    # Imported here so --version and --print-config stay fast and never touch the network stack.
    from sindri_console.agent.connection import Agent

    return asyncio.run(Agent(config).run())


if __name__ == "__main__":
    sys.exit(main())
