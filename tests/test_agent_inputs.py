"""The agent's inputs: planner values and observation images refused by name."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


def test_from_pretrained_refuses_planner_values_of_the_wrong_type():
    from lewm_agent import LeWMAgent
    with pytest.raises(ValueError, match="num_samples: expected an int >= 1, got '32'"):
        LeWMAgent.from_pretrained("two_room", num_samples="32")
    with pytest.raises(ValueError, match="std: expected a finite number"):
        LeWMAgent.from_pretrained("two_room", std=float("nan"))


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), c=st.integers(1, 4))
def test_observation_images_are_square_rgb_or_refused(h, w, c):
    from lewm_agent.planning.agent import MIN_IMAGE_SIZE, _image_batch
    img = np.zeros((h, w, c), np.uint8)
    if h == w >= MIN_IMAGE_SIZE and c == 3:
        assert _image_batch({"pixels": img}, "pixels").shape == img.shape
    else:
        with pytest.raises(ValueError, match=r"obs\['pixels'\]"):
            _image_batch({"pixels": img}, "pixels")


def test_an_observation_of_another_env_is_refused_naming_the_key_and_both_shapes():
    import gymnasium as gym

    from lewm_agent import LeWMAgent
    agent = LeWMAgent.from_pretrained("two_room", device="cpu", num_samples=8, num_elites=2, num_iterations=1)
    two_room = gym.make("lewm/TwoRoom-v0")
    pusht = gym.make("lewm/PushT-v0", image_size=two_room.unwrapped.image_size)  # same image size
    theirs, _ = pusht.reset(seed=0)
    with pytest.raises(ValueError, match=r"^obs\['observation'\]: shape \(5,\), but lewm/TwoRoom-v0 "
                                         r"observations have \(2,\); is this the observation of another env\?"):
        agent.act(theirs)
    ours, _ = two_room.reset(seed=0)
    assert agent.act(ours).shape == (2,)
    assert agent.act({"pixels": ours["pixels"], "goal": ours["goal"]}).shape == (2,)  # images alone are fine
    batch = {k: np.stack([v, v]) for k, v in ours.items()}
    agent.reset()
    assert agent.act(batch).shape == (2, 2)
    batch["desired_goal"] = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"^obs\['desired_goal'\]: shape \(2, 5\), but .* have \(2, 2\)"):
        agent.act(batch)
