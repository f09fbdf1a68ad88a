"""``python -m saga`` runs the ``saga`` command."""

from saga.cli import main

main()
