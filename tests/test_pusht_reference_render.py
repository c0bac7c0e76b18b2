"""`lewm/PushT-v0` with render_style="reference" against the public reference's Push-T.

The fixture (tests/fixtures/reference_pusht/frames.npz, made by make_fixture.py beside it with
stable-worldmodel 0.1.1, pygame 2.6.1, pymunk 7.3.1, OpenCV 5.1; the versions are stored in it)
holds the reference's frames, steps and success verdicts on fixed states. Tolerance: frames are
bit-identical, except that where bodies touch the reference also draws pymunk's red contact ticks,
which are not drawn here. Measured: the fixture's one state in contact differs in 1 pixel at 96 px
(3 at 224; mean abs error 0.0065 / 0.0027 of 255); against the installed reference on 200 random
states (many overlapping, so in contact after its reset) 193 of 200 frames were bit-identical at
96 px, 187 at 224, the worst with 2 / 14 pixels differing and mean abs error 0.014 of 255.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import lewm_envs  # noqa: F401  registers lewm/ envs
from lewm_envs import check_pixel_settings
from lewm_envs.pusht.env import ACTION_SCALE, AGENT_HI, AGENT_LO, PushTEnv
from lewm_envs.pusht.reference_physics import from_reference_state as ours
from lewm_envs.pusht.reference_render import ReferencePushTRenderer
from lewm_envs.pusht.render import wrap_angle

FIXTURE = Path(__file__).parent / "fixtures" / "reference_pusht"
SIZES = (96, 224)
CONTACT_TICK_PIXELS = {96: 4, 224: 16}  # most differing pixels allowed on a frame in contact
MEAN_ERROR = 0.02                       # most mean abs error (of 255) on any frame


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURE / "frames.npz") as f:
        return {k: f[k] for k in f.files}



def test_fixture_records_versions_and_stays_small(ref):
    versions = str(ref["versions"])
    for name in ("stable-worldmodel", "pygame", "pymunk", "opencv"):
        assert name in versions
    assert (FIXTURE / "frames.npz").stat().st_size < 200_000


@pytest.mark.parametrize("size", SIZES)
def test_frames_match_the_reference(ref, size):
    env = PushTEnv(image_size=size, render_style="reference")
    exact = 0
    for i, state in enumerate(ref["state"]):
        frame = env.render_state(ours(state))
        err = np.abs(frame.astype(int) - ref[f"frame_{size}"][i])
        assert err.mean() <= MEAN_ERROR, (i, err.mean())
        assert err.any(-1).sum() <= CONTACT_TICK_PIXELS[size], (i, err.any(-1).sum())
        exact += not err.any()
    assert exact >= len(ref["state"]) - 1  # only the state in contact differs (the tick)


def test_canvas_matches_before_resizing(ref):
    """At 512 px the only difference is the contact tick, in the reference's tick colour."""
    renderer = ReferencePushTRenderer(96)
    for i, state in enumerate(ref["state"]):
        differ = (renderer.canvas(state[:2], state[2:5]) != ref["canvas"][i]).any(-1)
        assert differ.sum() <= 6, (i, differ.sum())
        assert (ref["canvas"][i][differ] == (231, 76, 60)).all()


def test_default_style_is_unchanged_and_differs():
    lewm, reference = PushTEnv(), PushTEnv(render_style="reference")
    assert lewm.render_style == "lewm"
    s = lewm.reset(seed=0)[0]["observation"]
    assert lewm.render_state(lewm.get_state()).shape == reference.render_state(lewm.get_state()).shape == (96, 96, 3)
    assert not np.array_equal(lewm.render_state(lewm.get_state()), reference.render_state(lewm.get_state()))
    assert s.shape == (5,)


def test_bad_render_style_is_one_line():
    with pytest.raises(ValueError, match=r"^render_style: expected one of \['lewm', 'reference'\], got 'pygame'$"):
        gym.make("lewm/PushT-v0", render_style="pygame")


def test_render_style_is_a_pixel_setting():
    check_pixel_settings("lewm/PushT-v0", {"render_style": "reference"}, {"render_style": "reference"}, "x")
    with pytest.raises(ValueError, match="render_style='lewm'"):
        check_pixel_settings("lewm/PushT-v0", {}, {"render_style": "reference"}, "the env")


def test_state_layout_and_action_scale_agree(ref):
    """From the same state and action: the same agent position (target = agent + 100 a, the same PD
    law; the reference computes its target in float32, hence the tolerance); with no contact the
    block stays where both say it is."""
    env = PushTEnv(render_style="reference")
    env.reset(seed=0)
    checked = 0
    for state, action, nxt, contacts in zip(ref["state"], ref["action"], ref["next_state"], ref["n_contacts"]):
        target = state[:2] + ACTION_SCALE * np.asarray(action)
        if ((target < AGENT_LO) | (target > AGENT_HI)).any():
            continue  # ours clips the target to keep the disc inside the walls; the reference does not
        env.unwrapped.set_state(ours(state))
        env.step(np.asarray(action, np.float32))
        s = env.unwrapped.get_state()
        np.testing.assert_allclose(s[:2], nxt[:2], atol=1e-4)
        np.testing.assert_allclose(s[5:7], nxt[5:7], atol=1e-4)
        if contacts == 0:
            np.testing.assert_allclose(s[2:4], nxt[2:4], atol=1e-9)
            assert abs(float(wrap_angle(s[4] - nxt[4]))) < 1e-9
        checked += 1
    assert checked >= len(ref["state"]) - 1


def test_success_check_agrees(ref):
    env = gym.make("lewm/PushT-v0", render_style="reference").unwrapped
    verdicts = [env.reset(options={"state": ours(s), "goal_state": ours(g)})[1]["is_success"]
                for s, g in zip(ref["pair_state"], ref["pair_goal"])]
    np.testing.assert_array_equal(verdicts, ref["pair_success"])
    assert 0 < ref["pair_success"].sum() < len(verdicts)  # the pairs straddle the thresholds


def test_against_the_installed_reference():
    """Where the reference's Push-T imports (it does not beside this package's venv), random states live."""
    for name in ("stable_worldmodel", "pygame", "pymunk", "cv2", "loguru", "shapely"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"the reference's Push-T needs {name} (see {FIXTURE / 'make_fixture.py'})")
    sys.path.insert(0, str(FIXTURE))
    import make_fixture
    PushT = make_fixture.reference_pusht()
    theirs, env = PushT(resolution=96), PushTEnv(render_style="reference")
    for s in make_fixture.random_states(10, seed=7):
        obs, _ = theirs.reset(seed=0, options={"state": np.array([*s, 0.0, 0.0])})
        err = np.abs(env.render_state(ours(obs["state"])).astype(int) - theirs.render())
        assert err.mean() <= MEAN_ERROR and err.any(-1).sum() <= CONTACT_TICK_PIXELS[96]
    assert math.isclose(theirs.action_scale, ACTION_SCALE)
