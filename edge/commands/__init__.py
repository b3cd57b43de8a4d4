"""One module per ``maskwatch`` subcommand of the device runtime.

Each module has ``configure(parser)``, which adds its arguments to the subcommand's parser and
sets ``handler``. :mod:`maskwatch.edge.cli` imports a module only when its subcommand runs.
"""
