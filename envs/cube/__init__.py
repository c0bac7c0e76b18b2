"""lewm/Cube-v0: the env (OGBench, MuJoCo), its render-mesh simplification, and its scripted expert."""
