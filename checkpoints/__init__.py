"""The shipped checkpoints as package data: `lewm_agent.resolve_checkpoint("pusht")` finds them."""
