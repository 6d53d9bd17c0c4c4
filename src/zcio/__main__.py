"""``python -m zcio``: the command line."""

from ._cli import main

main()
