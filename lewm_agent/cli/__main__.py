"""`python -m lewm_agent.cli ...`: the same CLI as `lewm`."""
import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
