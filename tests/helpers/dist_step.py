"""One training step of a tiny world model, run as `torchrun --nproc_per_node N tests/helpers/dist_step.py OUT`
or as a plain script (one process): saves the loss, the SIGReg statistic and every gradient of the
step on a fixed global batch of 8 windows, so a test can compare N ranks with one process."""
import sys

import torch

from lewm_agent import WorldModel, pred_loss, preset, sigreg
from lewm_agent.distributed import barrier, setup, teardown, use_global_batchnorm


def main(out: str) -> None:
    ranks, _ = setup("cpu", timeout_s=60)
    try:
        step(ranks, out)  # returns before teardown: DDP and its gradients are gone when the group goes
        barrier(ranks)
    finally:
        teardown()


def step(ranks, out: str) -> None:
    torch.manual_seed(0)
    model = WorldModel(preset("tiny", action_dim=2))
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (8, 4, 32, 32, 3), dtype=torch.uint8, generator=g)
    actions = torch.randn(8, 3, 10, generator=g)
    net = model
    if ranks.world > 1:
        use_global_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(model)
    rows = ranks.shard(len(pixels))
    emb, pred = net(pixels[rows], actions[rows])
    p_loss = pred_loss(pred, emb[:, 1:])
    s_loss = sigreg(emb.transpose(0, 1), 64, generator=torch.Generator().manual_seed(2))
    (p_loss + 0.5 * s_loss).backward()
    p_mean = p_loss.detach().clone()
    if ranks.world > 1:
        torch.distributed.all_reduce(p_mean)
        p_mean /= ranks.world
    if ranks.main:
        torch.save({"pred_loss": p_mean, "sigreg": s_loss.detach(),
                    "grads": {k: p.grad for k, p in model.named_parameters()},
                    "running_mean": model.projector.norm.running_mean.clone()}, out)


if __name__ == "__main__":
    main(sys.argv[1])
