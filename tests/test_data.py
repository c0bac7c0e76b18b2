import numpy as np
import pytest
import torch

from lewm_agent.data.rollouts import RolloutFile
from lewm_agent.data.windows import (
    MemoryWindows,
    StreamWindows,
    WindowSpec,
    action_stats,
    split_episodes,
    window_starts,
)


def test_split_is_by_whole_episode_and_seeded():
    s = split_episodes(20, 0.2, seed=1)
    assert len(s.val_episodes) == 4 and len(s.train_episodes) == 16
    assert set(s.train_episodes).isdisjoint(s.val_episodes)
    assert set(s.train_episodes) | set(s.val_episodes) == set(range(20))
    assert np.array_equal(split_episodes(20, 0.2, seed=1).val_episodes, s.val_episodes)
    assert len(split_episodes(3, 0.01, seed=0).val_episodes) == 1  # at least one held out
    with pytest.raises(ValueError, match="val_fraction"):
        split_episodes(5, 1.0, 0)


def test_windows_stay_inside_episodes_and_skip_the_nan_row(dot_dataset):
    spec = WindowSpec(history=3, frameskip=5, batch_size=16, seed=0)
    with RolloutFile(dot_dataset) as rf:
        starts = window_starts(rf, np.arange(rf.num_episodes), spec.span)
        ep = rf.column("episode_index")[:]
        frames, acts = spec.frame_rows(starts), spec.action_rows(starts)
        assert (ep[frames] == ep[starts][:, None]).all()
        actions = rf.column("action")[:]
        assert np.isfinite(actions[acts]).all()
        assert len(starts) == rf.num_episodes * (40 - 15)


def test_memory_and_stream_sources_agree(dot_dataset):
    spec = WindowSpec(history=3, frameskip=5, batch_size=8, seed=0)
    with RolloutFile(dot_dataset) as rf:
        starts = window_starts(rf, np.arange(rf.num_episodes), spec.span)
        actions = rf.column("action")[:]
        pixels = rf.column("pixels")[:]
        mean, std = action_stats(actions, np.arange(rf.num_frames))
    norm = (actions - mean) / std
    mem = MemoryWindows(pixels, norm, starts, spec)
    stream = StreamWindows(dot_dataset, norm, starts, spec, range(10))
    for step in (0, 3):
        (pm, am), (ps, as_) = mem.batch(step), stream[step]
        assert pm.shape == (8, 4, 32, 32, 3) and am.shape == (8, 3, 10)
        assert torch.equal(pm, ps) and torch.allclose(am, as_)
    assert not torch.equal(mem.batch(0)[0], mem.batch(1)[0])  # batches differ, reproducibly
    assert torch.equal(mem.batch(1)[0], MemoryWindows(pixels, norm, starts, spec).batch(1)[0])
    # the action block of a window is the frameskip env actions taken from its frame
    s = np.array([starts[5]])
    np.testing.assert_allclose(mem.batch(0, s)[1][0, 1].numpy(), norm[s[0] + 5:s[0] + 10].reshape(-1), rtol=1e-6)


def test_action_stats_ignore_nan_rows():
    a = np.array([[1.0, 2.0], [3.0, 4.0], [np.nan, np.nan]], np.float32)
    mean, std = action_stats(a, np.arange(3))
    np.testing.assert_allclose(mean, [2.0, 3.0])
    np.testing.assert_allclose(std, [1.0, 1.0])
