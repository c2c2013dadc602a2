"""``python -m cdcsync`` = the ``cdcsync`` command."""

from cdcsync.cli import main

main()
