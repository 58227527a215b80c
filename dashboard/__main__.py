"""`python -m dashboard`: the city operations page (see dashboard/server.py)."""

from .server import main

raise SystemExit(main())
