"""``python -m zbroker`` is the ``zbroker`` command."""
from zbroker.cli import main

main()
