"""Models made elsewhere, in: the public reference's LeWM checkpoints (read without running their code)."""
