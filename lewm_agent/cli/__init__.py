"""The `lewm` command line (`lewm_agent.cli:main`); nothing in the package imports it."""
from .main import DEMO_CHECKPOINT, main

__all__ = ["DEMO_CHECKPOINT", "main"]
