import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from conftest import dot_episode, write_dot_dataset

from lewm_agent.data.rollouts import RolloutFile, RolloutWriter


def test_round_trip_has_every_contract_column(tmp_path):
    path = write_dot_dataset(tmp_path / "d.h5", episodes=3, length=10, size=16)
    with RolloutFile(path) as rf:
        assert rf.num_episodes == 3 and rf.num_frames == 30
        for c in ("pixels", "action", "observation", "state", "episode_index", "step_index"):
            assert rf.column(c).shape[0] == 30
        assert rf.column("pixels").dtype == np.uint8 and rf.column("pixels").compression == "gzip"
        ep = rf.episode(1, ("action", "step_index"))
        assert np.isnan(ep["action"][-1]).all() and np.isfinite(ep["action"][:-1]).all()
        assert list(ep["step_index"]) == list(range(10))
        assert list(rf.column("episode_index")[10:20]) == [1] * 10
        assert rf.env_id == "test/Dot-v0" and rf.env_kwargs == {"image_size": 16}
        assert rf.attr("format_version") == 1 and rf.attr("num_episodes") == 3
        assert rf.image_shape == (16, 16)


def test_same_seed_same_content(tmp_path):
    a = write_dot_dataset(tmp_path / "a.h5", episodes=2, length=8, size=16, seed=3)
    b = write_dot_dataset(tmp_path / "b.h5", episodes=2, length=8, size=16, seed=3)
    with RolloutFile(a) as ra, RolloutFile(b) as rb:
        for c in ("pixels", "action", "state"):
            np.testing.assert_array_equal(ra.column(c)[:], rb.column(c)[:])


def test_writer_validates_and_never_overwrites(tmp_path):
    rng = np.random.default_rng(0)
    px, act, obs, st = dot_episode(rng, 6, 16)
    with RolloutWriter(tmp_path / "w.h5", {"env_id": "x"}) as w:
        with pytest.raises(ValueError, match="actions: expected 5 rows"):
            w.add_episode(px, act[:3], obs, st)
        with pytest.raises(ValueError, match="pixels: expected uint8"):
            w.add_episode(px.astype(np.float32), act, obs, st)
        bad = act.copy()
        bad[2, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            w.add_episode(px, bad, obs, st)
        w.add_episode(px, act, obs, st)
    with pytest.raises(FileExistsError):
        RolloutWriter(tmp_path / "w.h5", {"env_id": "x"})


def test_exception_mid_collection_keeps_complete_episodes(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(RuntimeError):
        with RolloutWriter(tmp_path / "e.h5", {"env_id": "x"}) as w:
            w.add_episode(*dot_episode(rng, 6, 16))
            w.add_episode(*dot_episode(rng, 7, 16))
            raise RuntimeError("collector crashed")
    with RolloutFile(tmp_path / "e.h5") as rf:
        assert rf.num_episodes == 2 and rf.num_frames == 13


WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import dot_episode
    from lewm_agent.data.rollouts import RolloutWriter
    rng = np.random.default_rng(0)
    w = RolloutWriter({path!r}, {{"env_id": "x"}})
    i = 0
    while True:
        w.add_episode(*dot_episode(rng, 20, 16))
        i += 1
        if i == 3:
            print("ready", flush=True)
""")


def test_killed_writer_leaves_a_valid_file(tmp_path):
    path = tmp_path / "k.h5"
    code = WRITER.format(tests=os.path.dirname(__file__), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with RolloutFile(path) as rf:  # opens although the writer never closed it
        n = rf.num_episodes
        assert n >= 3 and rf.num_frames == 20 * n
        assert np.isnan(rf.column("action")[rf.num_frames - 1]).all()
        assert list(rf.column("episode_index")[rf.num_frames - 20:rf.num_frames]) == [n - 1] * 20


def test_reader_rejects_malformed_files(tmp_path):
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.attrs["format_version"] = 1
        for c in ("pixels", "action", "observation", "state", "episode_index", "step_index"):
            f.create_dataset(c, shape=(0, 4, 4, 3) if c == "pixels" else (0, 2), dtype="u1" if c == "pixels" else "f4")
    with pytest.raises(ValueError, match="no complete episode"):
        RolloutFile(empty)
    path = write_dot_dataset(tmp_path / "d.h5", episodes=2, length=6, size=16)
    with h5py.File(path, "r+") as f:
        del f["state"]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['state'\]"):
        RolloutFile(path)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        RolloutFile(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError):
        RolloutFile(tmp_path / "missing.h5")


def _damage_episode(path, episode: int) -> None:
    """Overwrite a few bytes inside every pixel chunk (one frame each) of `episode` on disk."""
    import h5py
    with h5py.File(path, "r") as f:
        ends = f["episode_ends"][:]
        first, stop = (int(ends[episode - 1]) if episode else 0), int(ends[episode])
        chunks = [f["pixels"].id.get_chunk_info_by_coord((row, 0, 0, 0)) for row in range(first, stop)]
    with open(path, "r+b") as fh:
        for info in chunks:
            fh.seek(info.byte_offset + info.size // 2)
            fh.write(b"\xde\xad\xbe\xef" * 4)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_damaged_pixels_are_named_by_file_column_and_episode(tmp_path, compression, capsys):
    from lewm_agent.cli import main
    from lewm_agent.data.collect import CollectConfig, collect
    data = tmp_path / "d.h5"
    collect(CollectConfig("lewm/TwoRoom-v0", 4, str(data), env_kwargs={"image_size": 32}, compression=compression,
                          progress=False))
    _damage_episode(data, 2)
    with RolloutFile(data) as rf:
        rf.read("pixels", 0, int(rf.episode_ends[1]))  # episodes 0 and 1 still read
        with pytest.raises(ValueError, match=r"d\.h5: column 'pixels', episode 2 \(rows \d+-\d+\): damaged data"):
            rf.read("pixels")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--preset", "tiny", "--steps", "2",
                 "--batch-size", "4", "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "column 'pixels', episode 2" in err[-1]
    assert not out.exists()  # no empty run folder left behind
    for episode in (0, 1, 3):  # every episode damaged: the streamed windows must meet one
        _damage_episode(data, episode)
    assert main(["train", "--data", str(data), "--out", str(out), "--preset", "tiny", "--steps", "10",
                 "--batch-size", "4", "--data-mode", "stream", "--workers", "1", "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]  # read in a worker process
    assert len(err) == 1 and "column 'pixels', episode " in err[-1] and not out.exists()
