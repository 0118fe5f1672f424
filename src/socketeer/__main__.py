"""``python -m socketeer``: the same as the ``socketeer`` command."""

from socketeer.cli import main

main()
