"""``python -m surrogate_cell.training``: entry point with one subcommand per task."""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, str] = {
    "simulate": "surrogate_cell.data.generate",
    "train": "surrogate_cell.training.train",
    "ensemble": "surrogate_cell.training.ensemble",
    "calibrate": "surrogate_cell.training.calibrate",
    "evaluate": "surrogate_cell.training.evaluate",
    "ship": "surrogate_cell.training.ship",
}
"""Subcommand name -> module providing ``COMMAND_HELP``, ``COMMAND_DESCRIPTION``,
``add_arguments`` and ``run``."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="python -m surrogate_cell.training",
        description="Make training data for, train and evaluate neural-network surrogates of "
                    "NEURON cells.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(
            name, help=module.COMMAND_HELP, description=module.COMMAND_DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the chosen subcommand."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
