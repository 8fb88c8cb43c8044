"""Pipeline Lab's tests, arranged like the code they test (`analysis/`, `profile/`,
`cli/`, `pages/`, `benchmarks/`; `e2e/` drives the dashboard in Chromium)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the repository root, for every test
