"""``python -m invguard.cli ARGS`` (the same as ``invguard ARGS``)."""

import sys

from invguard.cli.parser import main

if __name__ == "__main__":
    sys.exit(main())
