"""``python -m ecmpi``: the ``ecmpi`` command (see :mod:`ecmpi.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
