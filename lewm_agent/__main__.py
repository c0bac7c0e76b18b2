"""`python -m lewm_agent ...`: the same CLI as `lewm` (also what torchrun launches)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
