"""`lewm/PushT-v0` with physics="reference" against the public reference's Push-T, and the default
physics against itself before the option existed.

tests/fixtures/reference_pusht/trajectories.npz (make_fixture.py beside it; stable-worldmodel 0.1.1,
pymunk 7.3.1, numpy 2.4.6, versions stored) holds 10 trajectories of 40 steps from fixed states:
pushes on the stem and on a bar end, into a wall and a corner, a disc sent out of the arena, five
pushes from random sides; the T moves 31-271 px and turns 3-87 degrees. With physics="reference"
our states follow them within POSITION_TOL px and ANGLE_TOL rad (measured: at most 7.1e-13 px and
5.3e-15 rad, rounding where the reference keeps the angle unwrapped; T velocities within 2.3e-12);
with the default physics the T ends 19-239 px away.
tests/fixtures/pusht_lewm_physics/trajectories.npz was recorded before the option (commit 253240e):
the default must replay it bit for bit.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import lewm_envs  # noqa: F401  registers lewm/ envs
from lewm_envs import check_dynamics_settings, dynamics_settings
from lewm_envs.pusht.env import PushTEnv
from lewm_envs.pusht.reference_physics import from_reference_state as ours
from lewm_envs.pusht.render import wrap_angle

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "reference_pusht"
POSITION_TOL = 1e-6   # px, agent and T; the arena is 512 px
ANGLE_TOL = 1e-8      # rad
VELOCITY_TOL = 1e-4   # px/s and rad/s, of speeds up to a few hundred px/s


@pytest.fixture(scope="module")
def traj():
    with np.load(REFERENCE / "trajectories.npz") as f:
        return {k: f[k] for k in f.files}



def play(env: PushTEnv, start: np.ndarray, actions: np.ndarray, render_at: int | None = None) -> np.ndarray:
    """Our states (T, 10) after each action from the reference's start; with `render_at` the goal is
    changed (its image rendered) before that step, as a collector does mid-episode."""
    env.reset(options={"state": ours(start), "goal_state": ours(start)})
    states = []
    for t, a in enumerate(actions):
        if t == render_at:
            env.set_goal_state(ours(start) + np.r_[10.0, 0, 0, 0, 0.2, np.zeros(5)])
        env.step(a)
        states.append(env.get_state())
    return np.array(states)


def errors(states: np.ndarray, ref_states: np.ndarray) -> tuple[float, float]:
    """Largest position error (px, agent and T) and angle error (rad) along one trajectory."""
    pos = np.abs(states[:, :4] - ref_states[:, :4]).max()
    return float(pos), float(np.abs(wrap_angle(states[:, 4] - ref_states[:, 4])).max())


def test_fixture_is_small_and_records_versions(traj):
    assert "'pymunk': '7.3.1'" in str(traj["versions"]) and "stable-worldmodel" in str(traj["versions"])
    total = sum(p.stat().st_size for p in REFERENCE.glob("*.npz"))
    assert total < 150_000
    assert (traj["n_contacts"] > 0).sum(1).min() >= 5  # every trajectory pushes the T


def test_reference_physics_follows_the_reference(traj):
    env = gym.make("lewm/PushT-v0", physics="reference", terminate_on_success=False).unwrapped
    for i, (start, actions, ref_states) in enumerate(zip(traj["start"], traj["actions"], traj["states"])):
        states = play(env, start, actions)
        pos, ang = errors(states, ref_states)
        assert pos < POSITION_TOL and ang < ANGLE_TOL, (i, pos, ang)
        np.testing.assert_allclose(states[:, 5:7], ref_states[:, 5:7], atol=VELOCITY_TOL)
        np.testing.assert_allclose(states[:, 7:10], traj["block_velocity"][i], atol=VELOCITY_TOL)


def test_a_goal_rendered_mid_episode_keeps_the_reference_space(traj):
    """render_state() sets the goal's state and back: that must not restart the pymunk space (its
    contact warm-start), or the rest of the push drifts from the reference."""
    env = PushTEnv(physics="reference", terminate_on_success=False)
    i = int((traj["n_contacts"] > 0).sum(1).argmax())
    pos, ang = errors(play(env, traj["start"][i], traj["actions"][i], render_at=20), traj["states"][i])
    assert pos < POSITION_TOL and ang < ANGLE_TOL


def test_simulate_mid_episode_leaves_the_episode_on_the_reference(traj):
    """The oracle's simulate() plays other actions from the current state in a space of its own."""
    env = PushTEnv(physics="reference", terminate_on_success=False)
    i = int((traj["n_contacts"] > 0).sum(1).argmax())
    start, actions = traj["start"][i], traj["actions"][i]
    env.reset(options={"state": ours(start), "goal_state": ours(start)})
    states = []
    for t, a in enumerate(actions):
        if t == 20:
            assert len(env.simulate(env.get_state(), -actions[:5], every=1)) == 5
        env.step(a)
        states.append(env.get_state())
    pos, ang = errors(np.array(states), traj["states"][i])
    assert pos < POSITION_TOL and ang < ANGLE_TOL


def test_default_physics_differs_from_the_reference(traj):
    env = PushTEnv(terminate_on_success=False)
    assert env.physics == "lewm"
    worst = max(errors(play(env, s, a), r)[0] for s, a, r in zip(traj["start"], traj["actions"], traj["states"]))
    assert worst > 10.0


def test_default_physics_is_unchanged():
    """Bit-identical resets and steps to those recorded before the physics option."""
    env = gym.make("lewm/PushT-v0", terminate_on_success=False).unwrapped
    with np.load(FIXTURES / "pusht_lewm_physics" / "trajectories.npz") as f:
        for seed, (start, goal, actions, states) in enumerate(zip(f["start"], f["goal"], f["actions"], f["states"])):
            env.reset(seed=seed)
            assert np.array_equal(env.get_state(), start) and np.array_equal(env.goal_state, goal)
            for a, s in zip(actions, states):
                env.step(a)
                assert np.array_equal(env.get_state(), s)


def test_bad_physics_is_one_line():
    with pytest.raises(ValueError, match=r"^physics: expected one of \['lewm', 'reference'\], got 'pymunk'$"):
        gym.make("lewm/PushT-v0", physics="pymunk")


def test_against_the_installed_reference():
    """Where the reference's Push-T imports (not beside this package's venv): other pushes, live."""
    for name in ("stable_worldmodel", "pygame", "pymunk", "cv2", "loguru", "shapely"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"the reference's Push-T needs {name} (see {REFERENCE / 'make_fixture.py'})")
    sys.path.insert(0, str(REFERENCE))
    import make_fixture
    theirs, env = make_fixture.reference_pusht()(resolution=96), PushTEnv(physics="reference")
    for start, actions in make_fixture.trajectory_cases(seed=11)[-3:]:
        full = np.array([*start, 0.0, 0.0])
        obs, _ = theirs.reset(seed=0, options={"state": full, "goal_state": full})
        ref_states = np.array([theirs.step(a)[0]["state"] for a in actions])
        pos, ang = errors(play(env, obs["state"], actions), ref_states)
        assert pos < POSITION_TOL and ang < ANGLE_TOL, (pos, ang)


def test_physics_is_a_dynamics_setting():
    """Data simulated with other physics than a checkpoint's is refused where its episodes are played
    (eval --data) or imitated (train-policy), as other pixels are; defaults fill in what is not given."""
    from types import SimpleNamespace

    from lewm_agent.evaluation.evaluate import EvalConfig, _env_of
    from lewm_agent.training.train_policy import check_rollout_env
    assert dynamics_settings("lewm/PushT-v0", {}) == {"physics": "lewm"}
    assert dynamics_settings("lewm/TwoRoom-v0", {"image_size": 32}) == {}
    check_dynamics_settings("lewm/PushT-v0", {"physics": "lewm"}, {}, "x")
    reference = {"render_style": "reference", "physics": "reference"}
    meta = SimpleNamespace(env_id="lewm/PushT-v0", env_kwargs=reference, model=SimpleNamespace(action_dim=2))
    rf = SimpleNamespace(env_id="lewm/PushT-v0", env_kwargs={"render_style": "reference"}, action_dim=2)
    message = r"^--data: x\.h5 simulates lewm/PushT-v0 with physics='lewm' \(the checkpoint's: 'reference'\);"
    with pytest.raises(ValueError, match=message):
        _env_of(EvalConfig(checkpoint="c", data="x.h5"), meta, rf)
    with pytest.raises(ValueError, match=message):
        check_rollout_env(rf, meta, "x.h5")
    rf.env_kwargs = reference
    assert _env_of(EvalConfig(checkpoint="c", data="x.h5"), meta, rf)[1]["physics"] == "reference"
    check_rollout_env(rf, meta, "x.h5")
