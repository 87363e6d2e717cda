"""Command line for making training data and (later) training and evaluating surrogates.

``python -m surrogate_cell.training COMMAND ...``; see ``--help``. Each subcommand lives
in its own module, which provides ``COMMAND_HELP`` (one line), ``COMMAND_DESCRIPTION``, ``add_arguments(parser)``
and ``run(args) -> exit status``; :data:`surrogate_cell.training.__main__.SUBCOMMANDS`
lists them.
"""
