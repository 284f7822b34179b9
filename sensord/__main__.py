"""``python -m sensord``: the same as the ``sensord`` command."""

import sys

from sensord.cli.main import main

if __name__ == "__main__":  # importing this module (e.g. to walk the package) runs nothing
    sys.exit(main())
