"""``python -m petracache`` runs the server, as the ``petracache`` script does."""

import sys

from petracache.cli import main

if __name__ == "__main__":
    sys.exit(main())
