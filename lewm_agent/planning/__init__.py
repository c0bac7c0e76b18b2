"""Planning with a trained model: CEM, CUDA-graph capture, cost probe, the LeWMAgent, env helpers."""
