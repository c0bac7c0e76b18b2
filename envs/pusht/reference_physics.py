"""The dynamics of the public reference's Push-T (stable-worldmodel 0.1.1, `swm/PushT-v1`) for
`PushTEnv(physics="reference")`: a model trained on the reference's data then plans against the
physics its data came from. Both run pymunk 7.3.1; what the reference does differently from this
package's default (read from its source and its live env, checked by the fixture test):

- The T turns about (0, 45) in its body frame with moment of inertia 3000 (mass 1): the reference
  sets both by hand (its moment adds the bar's moment about the origin to itself, 2 x 1500). Ours
  lets pymunk derive them from uniform density: (0, 40.71), 1931.6.
- Every friction is 0: it sets `friction` on the bodies, an attribute pymunk ignores, so its shapes
  keep pymunk's default. Ours gives the disc and the T friction 1 (disc on T: 1; T on wall: 0 both).
- Walls: four segments of radius 2 on the lines x, y = 5 and 506 (inner faces 7 and 504, rounded
  ends), not thick boxes with inner faces 7 and 505.
- The disc's target, agent_xy + 100 a, is not clipped to the arena (ours: to [22, 490]^2).
- Its PD law runs in float32: numpy 2 turns python floats met with the float32 action into float32,
  so the target, the acceleration and the disc velocity are rounded to float32 each substep.
- One pymunk space lives through the episode, so each contact's impulse from the previous env step
  warm-starts the solver. Rebuilding the space every step (as the default physics does) loses that
  and drifts up to ~1 px and 0.01 rad from the reference in 40 pushing steps; so the space is kept
  here, and rebuilt only when the env is set to a state other than the one this space holds.
Same in both: no gravity, damping 0, 10 solver iterations and pymunk's other space defaults, a
kinematic disc of radius 15, 10 substeps of 0.01 s per step with kp = 100, kd = 20, elasticity 0.
Not reproduced: the reference's reset runs one physics step after placing the goal state and one
after placing the start state; a reset here places the given state exactly, as for every physics.
"""
from __future__ import annotations

import numpy as np
import pymunk

from .render import AGENT_RADIUS, wrap_angle

DT, SUBSTEPS, KP, KD, ACTION_SCALE = 0.01, 10, 100.0, 20.0, 100.0
WALL_RADIUS = 2.0
WALL_SEGMENTS = (((5.0, 506.0), (5.0, 5.0)), ((5.0, 5.0), (506.0, 5.0)),
                 ((506.0, 5.0), (506.0, 506.0)), ((5.0, 506.0), (506.0, 506.0)))
# The T's two rectangles with the vertices in the reference's order: pymunk numbers contact
# features by vertex, and that order decides how the solver visits contacts.
BAR = ((-60.0, 30.0), (60.0, 30.0), (60.0, 0.0), (-60.0, 0.0))
STEM = ((-15.0, 30.0), (-15.0, 120.0), (15.0, 120.0), (15.0, 30.0))
T_MASS, T_MOMENT, T_COG = 1.0, 3000.0, (0.0, 45.0)


def from_reference_state(state: np.ndarray) -> np.ndarray:
    """The reference's 7-number state (agent xy, block xy, angle, agent velocity) as this env's 10
    (the same, then the block's velocity and spin, which the reference's state leaves out: at rest)."""
    state = np.asarray(state, np.float64)
    if state.shape != (7,):
        raise ValueError(f"state: expected the reference's 7 numbers, got shape {state.shape}")
    return np.array([*state[:5], *state[5:7], 0.0, 0.0, 0.0])


class ReferencePhysics:
    """Steps a Push-T state (the env's 10-vector) as the reference's env would, keeping its pymunk
    space between steps; `step` rebuilds the space when handed a state other than its last result."""

    def __init__(self) -> None:
        self._space: pymunk.Space | None = None
        self._agent: pymunk.Body | None = None
        self._block: pymunk.Body | None = None
        self._held: np.ndarray | None = None   # the state `_space` holds, as `step` returned it

    def _build(self, state: np.ndarray) -> None:
        """A space in the reference's layout, added in its order (walls, disc, T)."""
        ax, ay, bx, by, ba, avx, avy, bvx, bvy, bw = (float(v) for v in state)
        space = pymunk.Space()
        space.gravity, space.damping = (0.0, 0.0), 0.0
        space.add(*(pymunk.Segment(space.static_body, a, b, WALL_RADIUS) for a, b in WALL_SEGMENTS))
        agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        space.add(agent, pymunk.Circle(agent, AGENT_RADIUS))
        block = pymunk.Body(T_MASS, T_MOMENT)
        shapes = (pymunk.Poly(block, BAR), pymunk.Poly(block, STEM))  # no density: keeps the mass and moment given
        block.center_of_gravity = T_COG
        space.add(block, *shapes)
        agent.velocity, agent.position = (avx, avy), (ax, ay)
        block.angle = ba            # angle before position: pymunk rotates about the centre of gravity
        block.position = (bx, by)
        block.velocity, block.angular_velocity = (bvx, bvy), bw
        self._space, self._agent, self._block = space, agent, block

    def step(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The state after one env step (10 substeps) with the clipped action (2,)."""
        if self._held is None or not np.array_equal(state, self._held):
            self._build(state)
        agent, block, f32 = self._agent, self._block, np.float32
        # The reference's arithmetic, float32 wherever its float32 action makes numpy 2 round.
        target = np.array(agent.position).astype(f32) + np.asarray(action, f32) * f32(ACTION_SCALE)
        for _ in range(SUBSTEPS):
            p, v = np.array(agent.position), np.array(agent.velocity)
            accel = (target - p.astype(f32)) * f32(KP) + ((0.0 - v) * KD).astype(f32)
            agent.velocity = tuple(float(c) for c in v.astype(f32) + accel * f32(DT))
            self._space.step(DT)
        (ax, ay), (avx, avy) = agent.position, agent.velocity
        (bx, by), (bvx, bvy) = block.position, block.velocity
        out = np.array([ax, ay, bx, by, float(wrap_angle(block.angle)), avx, avy, bvx, bvy,
                        block.angular_velocity], dtype=np.float64)
        self._held = out.copy()
        return out

