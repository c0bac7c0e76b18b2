"""Scripted pushing expert for lewm/PushT-v0, driven by the simulator state.

Each step it plans where and which way to push. Candidate contacts are points on the T's
outline (every ~6 px) where the disc fits; a push there, along the inward normal or up to
0.6 rad off it (inside the friction cone, so the contact sticks), moves the block to first
order like one impulse on a free body (the env's block keeps no momentum: damping 0), which
predicts the change of the block's origin and angle per px of push. The (contact, direction)
whose best push most reduces |goal_xy - block_xy|^2 + (L * angle error)^2
(L = `rotation_scale` px/rad), discounted by the distance the disc must travel to get there,
is chosen, with hysteresis so the current push goes on while it still helps. Phases:
  approach  go to a pre-contact point `gap` px off the contact, around the block when the
            straight path would touch it (follow the T's outline at a clearance); a contact
            that cannot be reached (walled in) is skipped for a while;
  push      push by the predicted best length (at most `push_speed` px per step), replanning
            each step; switch contact (re-approach) when another is clearly better, or when
            the block no longer moves (e.g. pressed against a wall);
  final     once the block is within (pos_tol, ang_tol) of its goal pose, go around it to
            the goal's agent position.
Noise for coverage: Gaussian N(0, noise^2) on each action component, and with probability
`explore` a contact choice drawn among the good candidates instead of the best.

Pace (`max_speed`): a human pushes slowly; the disc is steered toward a waypoint at most
`max_speed` px ahead each step, so an episode lasts ~200 frames at 5-6 px/step (the pace of
the paper's human Push-T data) instead of ~60 at full speed. Off-expert segments (`detour`):
with probability `detour` per step the expert hands over to a random segment of 3-10 steps
(one random direction and speed, the displacement a planner's random sample would command),
so the data also shows what happens after actions the expert would not take.

Paper pace (`PAPER_PACED`): human demonstrators reach the block quickly and push slowly, so
their disc touches the block most of the time. `approach_speed` paces the steps that do not push
apart from `max_speed`; with far, strongly rotated goals (the env kwargs below) the episodes last
as long as the paper's human Push-T data (125 frames on average; 132 in a 3000-episode file and
122 in a 300-episode one) and the disc is in contact on about half of the frames (50.2%, 50.7%),
against 18% for the paced expert alone.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .env import ACTION_SCALE, AGENT_HI, AGENT_LO
from .render import AGENT_RADIUS, T_AREA, T_COG, T_OUTLINE, t_sdf, t_sdf_local, to_world, wrap_angle

# The paper-paced, pushing-rich recipe: `lewm collect --expert-kwargs` and `--env-kwargs` values.
PAPER_PACED = {"expert_kwargs": {"max_speed": 8.5, "approach_speed": 40, "noise": 0.05, "detour": 0.01},
               "env_kwargs": {"goal_shift": [60, 200], "goal_rotation": 3.14159}}

R = AGENT_RADIUS
MASS = 1.0
# Moment of the uniform T about its centre of gravity (bar 120x30 and stem 30x90, parallel axes).
MOMENT = sum(m * ((w * w + h * h) / 12.0 + (cy - T_COG[1]) ** 2)
             for m, w, h, cy in ((3600.0 / T_AREA, 120.0, 30.0, 15.0), (2700.0 / T_AREA, 30.0, 90.0, 75.0)))


def _candidates(gap: float, spacing: float = 6.0):
    """Body-frame contact points, outward normals and edge ids where the disc fits off the T."""
    pts, normals, edges = [], [], []
    n = len(T_OUTLINE)
    for i in range(n):
        a, b = np.array(T_OUTLINE[i]), np.array(T_OUTLINE[(i + 1) % n])
        length = float(np.linalg.norm(b - a))
        t = (b - a) / length
        normal = np.array([t[1], -t[0]])  # outline runs clockwise on screen: outward is to the left
        for s in np.linspace(2.0, length - 2.0, max(1, round((length - 4.0) / spacing)) + 1):
            pts.append(a + t * s)
            normals.append(normal)
            edges.append(i)
    pts, normals = np.array(pts), np.array(normals)
    # The disc, `gap` px off the contact, must not touch another part of the T (concave corners).
    ok = t_sdf_local(pts + normals * (R + gap)) >= R + gap - 0.5
    return pts[ok], normals[ok], np.array(edges)[ok]


# One 0.1 s step of the critically damped PD law (kp=100, kd=20: omega*dt = 1) from position p
# and velocity v (px/step) toward target p + e ends at p + _GAIN*e + _COAST*v with velocity
# _COAST*e px/step (whatever v was). Holding the target there for one more step then coasts
# _COAST^2*e px to rest, so commanding e = (w - p - _COAST*v) / _REACH brings the disc to rest at w.
_COAST = math.exp(-1.0)
_GAIN = 1.0 - 2.0 * math.exp(-1.0)
_REACH = _GAIN + _COAST ** 2


def _perp(v: np.ndarray) -> np.ndarray:
    return np.stack([-v[..., 1], v[..., 0]], axis=-1)


class PushTExpert:
    """Contact-planning pushing expert. Args:
        noise: std of the Gaussian added to each action component (default 0.1).
        explore: probability that a new contact is drawn among the good ones (default 0.2).
        rotation_scale: px that one radian of angle error counts as (default 60).
        pos_tol, ang_tol: block error (px, rad) under which the expert places the agent (8, 0.15).
        gap: pre-contact clearance in px (default 6).
        push_speed: largest push step in px (the disc advances ~0.7x that per step; default 12).
        travel_scale: px of approach travel that halve a contact's score (default 150).
        max_speed: largest waypoint distance per step in px, the pace (default None: full speed).
        detour: probability per step of starting an off-expert random segment (default 0).
        approach_speed: the pace in px per step while the disc is not pushing (approach, going
            around the block, the final placement); default None: `max_speed` throughout.
    """

    collect_env_kwargs: dict[str, Any] = {}

    def __init__(self, noise: float = 0.1, explore: float = 0.2, rotation_scale: float = 60.0,
                 pos_tol: float = 8.0, ang_tol: float = 0.15, gap: float = 6.0, push_speed: float = 12.0,
                 travel_scale: float = 150.0, max_speed: float | None = None, detour: float = 0.0,
                 approach_speed: float | None = None):
        for name, v, lo, hi in (("noise", noise, 0.0, 10.0), ("explore", explore, 0.0, 1.0),
                                ("rotation_scale", rotation_scale, 1.0, 1000.0), ("pos_tol", pos_tol, 1.0, 19.0),
                                ("ang_tol", ang_tol, 0.01, math.pi / 9), ("gap", gap, 1.0, 50.0),
                                ("push_speed", push_speed, 2.0, 100.0), ("travel_scale", travel_scale, 1.0, 1e4),
                                ("max_speed", 100.0 if max_speed is None else max_speed, 1.0, 100.0),
                                ("detour", detour, 0.0, 0.5),
                                ("approach_speed", 100.0 if approach_speed is None else approach_speed, 1.0, 100.0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"{name}: expected a number in [{lo}, {hi}], got {v!r}")
        self.noise, self.explore, self.rotation_scale = float(noise), float(explore), float(rotation_scale)
        self.pos_tol, self.ang_tol = float(pos_tol), float(ang_tol)
        self.gap, self.push_speed = float(gap), float(push_speed)
        self._cand_p, self._cand_n, self._cand_e = _candidates(self.gap)
        self._betas = np.linspace(-0.6, 0.6, 5)      # push directions off the inward normal, rad
        self.travel_scale = float(travel_scale)
        self.max_speed = None if max_speed is None else float(max_speed)
        self.detour = float(detour)
        self.approach_speed = None if approach_speed is None else float(approach_speed)
        self._env: Any = None
        self._rng = np.random.default_rng(0)
        self._reset_episode()

    def _reset_episode(self) -> None:
        self._mode = "approach"
        self._contact = -1          # index of the chosen candidate
        self._sense = 0             # direction of travel around the block (+1/-1), 0 = not detouring
        self._flips = 0             # times the detour met a wall and turned back (for this contact)
        self._approach_steps = 0    # steps spent approaching the current contact
        self._banned = np.zeros(len(self._cand_p), dtype=np.int64)  # step until which a contact is skipped
        self._stuck = 0
        self._last_pose = None
        self._steps = self._contacts = 0
        self._reached = False
        self._detour_left, self._detour_action = 0, np.zeros(2)
        self._detour_steps = 0

    def reset(self, env: Any, rng: np.random.Generator) -> None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        self._env, self._rng = env, rng
        self._reset_episode()

    # ------------------------------------------------------------ geometry helpers
    @staticmethod
    def _success(env: Any) -> bool:
        s, g = env.get_state(), env.goal_state
        return bool(env.compute_reward(s[:5], g[:5], None) == 0.0)

    def _path_clear(self, p: np.ndarray, q: np.ndarray, pose, start_sdf: float) -> np.ndarray:
        """Whether straight moves from p to each q keep the disc off the block (q: (2,) or (K, 2))."""
        q = np.atleast_2d(q)
        frac = np.linspace(0.0, 1.0, 12)[1:]
        pts = p + (q[:, None, :] - p) * frac[None, :, None]
        limit = min(R + 3.0, start_sdf - 1.0)   # a touching disc may slide along the face it touches
        return (t_sdf(pts, *pose) >= limit).all(axis=1)

    def _nav(self, p: np.ndarray, q: np.ndarray, pose) -> np.ndarray:
        """Next target point for the disc heading to q without touching the block."""
        s, g = t_sdf(p, *pose, with_grad=True)
        s = float(s)
        if float(t_sdf(q, *pose)) < R + 2.0 or self._path_clear(p, q, pose, s)[0]:
            self._sense = 0
            return q
        if s < R + 3.0:                          # touching: step straight out first
            return p + g * (R + 12.0 - s)
        cog = to_world(np.array(T_COG), *pose)
        if self._sense == 0:
            cross = (p[0] - cog[0]) * (q[1] - cog[1]) - (p[1] - cog[1]) * (q[0] - cog[0])
            self._sense = 1 if cross >= 0 else -1
        for _ in range(2):
            target = p + self._sense * _perp(g) * 30.0 + g * (R + 14.0 - s)
            if (target >= AGENT_LO - 3.0).all() and (target <= AGENT_HI + 3.0).all():
                break
            self._sense = -self._sense           # the arena wall blocks this way round
            self._flips += 1
        return target

    # ------------------------------------------------------------ contact planning
    def _plan(self, state: np.ndarray, goal: np.ndarray):
        """Score every (contact, push direction): returns score (N, D), push length (N, D) in px,
        the world contact points (N, 2), outward normals (N, 2) and push directions (N, D, 2).

        With friction the disc can push up to ~45 deg off the inward normal without sliding;
        the contact point then moves with the disc, so the block's velocity follows from one
        impulse J at the contact (v = J/m, w = perp(r).J/I) with the contact velocity equal to
        the push direction d:  (Id/m + perp(r) perp(r)^T / I) J = d.
        """
        x, y, th = (float(v) for v in state[2:5])
        c, s = math.cos(th), math.sin(th)
        rot = np.array([[c, -s], [s, c]])
        pw = self._cand_p @ rot.T + (x, y)
        nw = self._cand_n @ rot.T
        u = -nw
        cog = np.array(T_COG) @ rot.T + (x, y)
        pr = _perp(pw - cog)                                    # (N, 2)
        d = np.cos(self._betas)[None, :, None] * u[:, None, :] \
            + np.sin(self._betas)[None, :, None] * _perp(u)[:, None, :]   # (N, D, 2)
        # Inverse of K = Id/m + pr pr^T / I, applied to every direction.
        k = np.eye(2) / MASS + pr[:, :, None] * pr[:, None, :] / MOMENT   # (N, 2, 2)
        det = k[:, 0, 0] * k[:, 1, 1] - k[:, 0, 1] * k[:, 1, 0]
        kinv = np.stack([np.stack([k[:, 1, 1], -k[:, 0, 1]], -1), np.stack([-k[:, 1, 0], k[:, 0, 0]], -1)], 1)
        jmp = np.einsum("nij,ndj->ndi", kinv / det[:, None, None], d)     # impulse per px of push
        j_n = np.einsum("ndi,ni->nd", jmp, u)
        j_t = np.abs(np.einsum("ndi,ni->nd", jmp, _perp(u)))
        sticks = (j_n > 0) & (j_t <= 0.8 * j_n)                 # inside the friction cone (mu = 1)
        d_th = np.einsum("ndi,ni->nd", jmp, pr) / MOMENT
        d_org = jmp / MASS + d_th[..., None] * _perp(np.array([x, y]) - cog)
        e_o = goal[2:4] - state[2:4]
        e_th = float(wrap_angle(goal[4] - th))
        L2 = self.rotation_scale ** 2
        num = d_org @ e_o + L2 * e_th * d_th
        den = (d_org ** 2).sum(axis=-1) + L2 * d_th ** 2
        gain = np.where(sticks, np.maximum(num, 0.0) ** 2 / den, 0.0)
        pre = pw + nw * (R + self.gap)
        agent = state[:2]
        inside = ((pre >= AGENT_LO + 2.0) & (pre <= AGENT_HI - 2.0)).all(axis=1)
        travel = np.linalg.norm(pre - agent, axis=1)
        start_sdf = float(t_sdf(agent, x, y, th))
        blocked = ~self._path_clear(agent, pre, (x, y, th), start_sdf)
        travel = travel + blocked * (100.0 + 50.0 * np.abs(wrap_angle(
            np.arctan2(pre[:, 1] - cog[1], pre[:, 0] - cog[0]) - math.atan2(agent[1] - cog[1], agent[0] - cog[0]))))
        ok = inside & (self._banned <= self._steps)
        score = np.where(ok[:, None], gain / (1.0 + travel / self.travel_scale)[:, None], 0.0)
        return score, num / den, pw, nw, d

    def _choose(self, score: np.ndarray) -> int:
        best = score.max(axis=1)
        if self._rng.random() < self.explore:
            return int(self._rng.choice(np.flatnonzero(best >= 0.5 * best.max())))
        return int(np.argmax(best))

    # ------------------------------------------------------------ protocol
    def act(self, env: Any, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self._env is None:
            raise RuntimeError("call reset(env, rng) before act()")
        state, goal = env.get_state(), env.goal_state
        self._reached = self._reached or self._success(env)
        self._contacts += env.contact()
        self._steps += 1
        if self._detour_left == 0 and self.detour > 0 and self._rng.random() < self.detour:
            self._start_detour()
        if self._detour_left > 0:
            self._detour_left -= 1
            self._detour_steps += 1
            if self._detour_left == 0:
                self._mode, self._contact = "approach", -1   # re-plan from wherever the segment ended
            return self._detour_action.copy()
        agent, pose = state[:2], tuple(float(v) for v in state[2:5])
        pos_err = float(np.linalg.norm(goal[2:4] - state[2:4]))
        ang_err = abs(float(wrap_angle(goal[4] - state[4])))
        loose = 1.8 if self._mode == "final" else 1.0     # hysteresis around the final phase
        if pos_err < self.pos_tol * loose and ang_err < self.ang_tol * loose:
            self._mode, self._contact = "final", -1
            target = self._nav(agent, goal[:2], pose)
        else:
            if self._mode == "final":
                self._mode = "approach"
            target = self._push_target(state, goal)
        return self._action(state, target)

    def _start_detour(self) -> None:
        """A random segment: one direction and speed held for 3-10 steps."""
        speed = self.max_speed if self.max_speed is not None else 30.0
        phi = self._rng.uniform(-math.pi, math.pi)
        a = self._rng.uniform(0.2, 1.5) * speed * np.array([math.cos(phi), math.sin(phi)]) / (_REACH * ACTION_SCALE)
        self._detour_action = np.clip(a, -1.0, 1.0).astype(np.float32)
        self._detour_left = int(self._rng.integers(3, 11))

    def _push_target(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        agent, pose = state[:2], tuple(float(v) for v in state[2:5])
        self._update_stuck(pose)
        score, length, pw, nw, dirs = self._plan(state, goal)
        cur = self._contact
        if self._mode == "push" and cur >= 0:
            # The disc may have slid along the face: continue from the candidate it now touches.
            same = np.flatnonzero(self._cand_e == self._cand_e[cur])
            cur = self._contact = int(same[np.argmin(np.linalg.norm(pw[same] + nw[same] * R - agent, axis=1))])
        keep = cur >= 0 and self._banned[cur] <= self._steps and score[cur].max() > 0
        if keep:
            # Hysteresis: stay with the current contact while it is not much worse than the best.
            keep = score[cur].max() * (1.5 if self._mode == "approach" else 2.0) >= 0.6 * score.max()
        if not keep:
            new = self._choose(score)
            if not (self._mode == "push" and cur >= 0 and self._cand_e[new] == self._cand_e[cur]
                    and np.linalg.norm(self._cand_p[new] - self._cand_p[cur]) <= 10.0):
                self._mode = "approach"          # another part of the outline: go around to it
            self._contact, self._stuck, self._flips, self._approach_steps = new, 0, 0, 0
        i = self._contact
        if self._mode == "approach":
            self._approach_steps += 1
            if self._flips >= 2 or self._approach_steps > 30:
                # Walled in (e.g. a pocket of the T against the arena wall): skip that region a while.
                pre_local = self._cand_p + self._cand_n * (R + self.gap)
                near = np.linalg.norm(pre_local - pre_local[i], axis=1) < 30.0
                self._banned[near] = self._steps + 40
                self._contact = -1
                return self._push_target(state, goal)
            pre = pw[i] + nw[i] * (R + self.gap)
            if np.linalg.norm(pre - agent) < 5.0:
                self._mode = "push"
            else:
                return self._nav(agent, pre, pose)
        if float(t_sdf(agent, *pose)) > R + self.gap + 6.0:
            self._mode = "approach"              # lost the block: go back to the contact
        j = int(np.argmax(score[i]))
        step = float(np.clip(length[i, j], 2.0, self.push_speed))
        return pw[i] + nw[i] * (R - 1.0) + dirs[i, j] * step

    def _update_stuck(self, pose) -> None:
        """Ban a contact whose pushes no longer move the block (e.g. it is against a wall)."""
        if self._mode == "push" and self._last_pose is not None:
            moved = math.hypot(pose[0] - self._last_pose[0], pose[1] - self._last_pose[1]) \
                + 40.0 * abs(float(wrap_angle(pose[2] - self._last_pose[2])))
            self._stuck = self._stuck + 1 if moved < 0.5 else 0
            if self._stuck >= 4:
                self._banned[self._contact] = self._steps + 20
                self._contact, self._stuck, self._mode = -1, 0, "approach"
        self._last_pose = pose

    def _action(self, state: np.ndarray, waypoint: np.ndarray) -> np.ndarray:
        """Action bringing the disc to rest at `waypoint` in two steps (full speed toward it when far)."""
        v_step = state[5:7] * 0.1
        pace = self.max_speed
        if self.approach_speed is not None and self._mode != "push":
            pace = self.approach_speed       # human demonstrators reach the block quickly, push slowly
        if pace is not None:                 # the pace: never steer further than `pace` px ahead
            ahead = np.asarray(waypoint, dtype=np.float64) - state[:2]
            dist = float(np.linalg.norm(ahead))
            if dist > pace:
                waypoint = state[:2] + ahead * (pace / dist)
        e = (np.asarray(waypoint, dtype=np.float64) - state[:2] - _COAST * v_step) / _REACH
        a = e / ACTION_SCALE
        a = a / max(1.0, float(np.abs(a).max()))          # keep the direction when out of range
        a = a + self._rng.normal(0.0, self.noise, 2)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def episode_info(self) -> dict[str, float]:
        """expert_success: the goal was reached at some step; contact_fraction: share of frames
        (the start, and each step's result) in which the disc touches the block."""
        if self._env is None:
            raise RuntimeError("call reset(env, rng) before episode_info()")
        reached = self._reached or self._success(self._env)
        return {"expert_success": float(reached),
                "contact_fraction": (self._contacts + self._env.contact()) / (self._steps + 1),
                "detour_fraction": self._detour_steps / max(1, self._steps)}
