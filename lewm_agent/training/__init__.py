"""The trainer: `lewm train` (single process or torchrun ranks)."""
