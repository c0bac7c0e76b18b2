"""The evaluation bar's work and its estimate of the work left, so that its ETA can be trusted.

The unit is a pair-step: one pair planned for and stepped once. A lockstep step costs in
proportion to the pairs still active (they are planned in one batch), and a seed ends when its
last pair succeeds. Counting the budget's lockstep steps instead (the earlier bar) charged every
step the same and counted steps that were never played: its ETA was 0.21-6.8x the real remaining
time on a Two-Room evaluation (README, Evaluation protocol), with pair-steps 0.65-1.40x.

After every step the total is revised: the work done, plus the expected rest of this seed, plus
each later seed at the mean work of the seeds finished so far (at this seed's projected work
while it is the first). This seed's rest comes from the finished seeds' play (how long the pairs
still active at this step went on), or, on the first seed, from the rate at which its pairs
succeeded over the last tenth of the budget, kept constant: a bound of every active pair playing
to the end until pairs start to succeed.
"""
from __future__ import annotations

import numpy as np

from ..progress import Progress


class PairSteps:
    """`step(planned, active)` after each lockstep step; `skip()` for a seed not played (resumed)."""

    def __init__(self, bar: Progress, seeds: int, pairs: int, budget: int):
        self.bar, self.seeds_left, self.pairs, self.budget, self.done = bar, seeds, pairs, budget, 0
        self.finished: list[np.ndarray] = []  # per finished seed: pairs planned at each lockstep step
        self.played: list[int] = []            # the same for the seed being played
        self.active = 0                         # its pairs still active after its last step

    def step(self, planned: int, active: int) -> None:
        """`planned` pairs were played this step, `active` of them have not succeeded yet."""
        self.played.append(planned)
        self.active, self.done = active, self.done + planned
        if active == 0 or len(self.played) == self.budget:
            self.finished.append(np.pad(np.asarray(self.played, float), (0, self.budget - len(self.played))))
            self.played, self.seeds_left = [], self.seeds_left - 1
        self._revise()
        self.bar.update(planned)  # after the revision: a line printed now shows the new total

    def skip(self) -> None:
        self.seeds_left -= 1
        self._revise()

    def _revise(self) -> None:
        rest = self._seed_rest() if self.played else 0.0
        later = self.seeds_left - (1 if self.played else 0)
        if later > 0:
            rest += later * self._seed_work()
        self.bar.set_total(self.done + int(round(rest)), estimated=self.seeds_left > 0)

    def _seed_work(self) -> float:
        """Expected pair-steps of a seed not yet started."""
        if self.finished:
            return float(np.mean([f.sum() for f in self.finished]))
        if self.played:
            return sum(self.played) + self._seed_rest()
        return float(self.pairs * self.budget)  # nothing seen yet: its bound

    def _seed_rest(self) -> float:
        """Expected pair-steps left in the seed being played."""
        t, k = len(self.played), self.active
        if self.finished:
            profile = np.stack(self.finished)
            reached = profile[:, t].sum()  # pairs of the finished seeds that were still playing at step t+1
            if reached > 0:
                return k * profile[:, t:].sum() / reached
        return k * _survival_sum(self._stay_rate(), self.budget - t)

    def _stay_rate(self) -> float:
        """Share of active pairs that stay active per step, over the last tenth of the budget."""
        m = max(1, min(len(self.played), self.budget // 10))
        return (self.active / self.played[-m]) ** (1.0 / m)  # played[-m]: the pairs m steps ago


def _survival_sum(q: float, steps: int) -> float:
    """1 + q + ... + q**(steps-1): the expected steps an active pair still plays at stay rate q."""
    if q >= 1.0:
        return float(steps)
    return (1.0 - q ** steps) / (1.0 - q)
