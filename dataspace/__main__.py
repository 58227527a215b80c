"""`python -m dataspace`: the dataspace control plane (see dataspace/server.py)."""

from .server import main

raise SystemExit(main())
