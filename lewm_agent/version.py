"""The package version (one place: `lewm --version` and `lewm_agent.__version__`)."""
__version__ = "0.1.0"
