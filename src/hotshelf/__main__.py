"""``python -m hotshelf`` runs the CLI."""

from hotshelf.cli import main

main()
