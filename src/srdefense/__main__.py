"""``python -m srdefense`` (and ``torchrun -m srdefense``): the command-line interface."""

from .cli.main import main

main()
