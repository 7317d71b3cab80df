"""``python -m bot`` is the ``accessbot`` command."""

from bot.cli import main

main()
