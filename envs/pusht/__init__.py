"""lewm/PushT-v0: the env (pymunk), its renderer, and its scripted expert."""
