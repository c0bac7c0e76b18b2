"""compile="cudagraph" replays whole CEM solves and plans exactly as the eager agent (CUDA only)."""
import numpy as np
import pytest
import torch

from lewm_agent.planning.agent import LeWMAgent

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
FAST = dict(num_samples=32, num_iterations=3, num_elites=4)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graph_replays_plan_like_eager(trained_checkpoint, precision):
    eager = LeWMAgent.from_pretrained(trained_checkpoint, device="cuda", precision=precision, seed=3, **FAST)
    graphed = LeWMAgent.from_pretrained(trained_checkpoint, device="cuda", precision=precision, seed=3,
                                        compile="cudagraph", **FAST)
    rng = np.random.default_rng(0)
    s, a = eager.cfg.image_size, eager.cfg.action_block_dim
    for tc, n in [(1, 2), (3, 2), (3, 2), (1, 5)]:  # new shapes capture, a repeated shape replays
        context = rng.integers(0, 256, (n, tc, s, s, 3), dtype=np.uint8)
        goal = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
        blocks = rng.normal(size=(n, tc - 1, a)).astype(np.float32) if tc > 1 else None
        init = rng.normal(size=(n, eager.planner_cfg.horizon, a)).astype(np.float32)
        for warm in (None, init):
            np.testing.assert_allclose(graphed.plan(context, goal, blocks, warm),
                                       eager.plan(context, goal, blocks, warm),
                                       rtol=1e-4, atol=1e-4)
    assert len(graphed._solve_latent._captured) == 6  # (tc, n) in {(1, 2), (3, 2), (1, 5)} x warm start or not
