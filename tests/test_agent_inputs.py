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
