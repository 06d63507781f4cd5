"""``python -m invguard.gateway serve --config gateway.yaml`` (the same as ``invguard serve``)."""

import sys

from invguard.cli.gateway import gateway_main

if __name__ == "__main__":
    sys.exit(gateway_main())
