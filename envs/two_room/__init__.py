"""lewm/TwoRoom-v0: the env (pure numpy) and its scripted expert."""
