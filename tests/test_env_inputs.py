"""The envs' reset options and actions: accepted, or refused by name."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=3),
                  st.lists(st.floats(allow_nan=True, width=32), max_size=6))


@settings(max_examples=80, deadline=None)
@given(options=st.one_of(_JUNK, st.dictionaries(st.sampled_from(["state", "goal_state", "goal_steps", "seed", "x"]),
                                                _JUNK, max_size=3)),
       action=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=4))
@example(options={"state": ""}, action=[])          # found by CI: numpy's parse error escaped unnamed
@example(options={"goal_state": [[1.0], [1.0, 2.0]]}, action=[])
def test_env_reset_options_and_actions_are_accepted_or_refused_by_name(options, action):
    import gymnasium as gym
    env = gym.make("lewm/TwoRoom-v0", image_size=16).unwrapped
    try:
        env.reset(seed=0, options=options)
    except ValueError as e:
        assert str(e).startswith("options")
    else:
        assert options is None or options == {} or isinstance(options, dict)
    env.reset(seed=0)
    try:
        env.step(np.asarray(action, np.float32))
    except ValueError as e:
        assert str(e).startswith("action")


def test_the_constructors_goal_steps_is_every_resets_default():
    import gymnasium as gym
    env = gym.make("lewm/TwoRoom-v0", image_size=32, goal_steps=10)
    plain = gym.make("lewm/TwoRoom-v0", image_size=32)
    by_option = plain.reset(seed=3, options={"goal_steps": 10})[0]["desired_goal"]
    assert np.array_equal(env.reset(seed=3)[0]["desired_goal"], by_option)
    assert not np.array_equal(plain.reset(seed=3)[0]["desired_goal"], by_option)  # arbitrary without it
    far = env.reset(seed=3, options={"goal_steps": 40})[0]["desired_goal"]  # an option still wins
    assert not np.array_equal(far, by_option)
    with pytest.raises(ValueError, match=r"goal_steps: expected None or an int >= 1, got 0"):
        gym.make("lewm/TwoRoom-v0", goal_steps=0)
