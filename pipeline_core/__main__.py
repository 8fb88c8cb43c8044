"""`python -m pipeline_core`: see `pipeline_core.cli`."""

from pipeline_core.cli import main

raise SystemExit(main())
