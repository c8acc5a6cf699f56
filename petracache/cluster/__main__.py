"""``python -m petracache.cluster`` runs ``petracache-cluster``."""

import sys

from petracache.cluster.cli import main

if __name__ == "__main__":
    sys.exit(main())
