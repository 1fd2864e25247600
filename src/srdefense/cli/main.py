"""Entry point of the ``srdefense`` command."""

from __future__ import annotations

import importlib
import pkgutil

from ._app import app


def _load_commands() -> None:
    # Every module of this package except the private ones registers its commands on `app`.
    from .. import cli

    for mod in pkgutil.iter_modules(cli.__path__):
        if not mod.name.startswith("_") and mod.name != "main":
            importlib.import_module(f"{cli.__name__}.{mod.name}")


def main() -> None:
    """Run the command-line interface."""
    from .._malloc import tune_malloc

    tune_malloc()  # process-wide allocator tuning: the command owns its process
    _load_commands()
    app()


if __name__ == "__main__":
    main()
