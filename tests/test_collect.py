import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

from lewm_agent.cli import main
from lewm_agent.data.collect import CollectConfig, collect
from lewm_agent.data.rollouts import RolloutFile

COLUMNS = ("pixels", "action", "observation", "state", "episode_index", "step_index", "goal_state", "is_success")


def run(tmp_path, env_id="lewm/TwoRoom-v0", episodes=6, name="d.h5", **kw):
    out = tmp_path / name
    summary = collect(CollectConfig(env_id, episodes, str(out), progress=False, **kw))
    return out, summary


def test_file_has_every_contract_column_and_the_recipe(tmp_path):
    out, summary = run(tmp_path, env_kwargs={"image_size": 32})
    assert summary["episodes"] == 6 and summary["env_steps"] > 0 and summary["mean_expert_success"] == 1.0
    with RolloutFile(out) as rf:
        for c in COLUMNS:
            assert rf.column(c).shape[0] == rf.num_frames, c
        assert rf.image_shape == (32, 32)
        assert rf.env_id == "lewm/TwoRoom-v0" and rf.env_kwargs == {"image_size": 32}
        assert rf.attr("seed") == 0 and rf.attr("collector").endswith("TwoRoomExpert")
        assert rf.attr("summary")["episodes"] == 6 and rf.attr("max_episode_steps") == 200
        assert rf.column("episode_expert_success").shape == (6,)
        last = rf.episode_ends - 1
        assert np.isnan(rf.column("action")[:][last]).all()
        assert rf.column("is_success")[:][last].all()  # the expert's episodes end on success


def test_same_seed_same_file_whatever_the_worker_count(tmp_path):
    a, _ = run(tmp_path, name="a.h5", episodes=4)
    b, _ = run(tmp_path, name="b.h5", episodes=4, workers=2)
    c, _ = run(tmp_path, name="c.h5", episodes=4, seed=1)
    with RolloutFile(a) as ra, RolloutFile(b) as rb, RolloutFile(c) as rc:
        for col in ("pixels", "action", "state"):
            np.testing.assert_array_equal(ra.column(col)[:], rb.column(col)[:])
        assert ra.num_frames != rc.num_frames or not np.array_equal(ra.column("state")[:], rc.column("state")[:])


@pytest.mark.parametrize("env_id, kwargs, steps", [("lewm/TwoRoom-v0", {}, 40),
                                                   ("lewm/PushT-v0", {"image_size": 32}, 40),
                                                   ("lewm/Cube-v0", {"image_size": 32}, 8)])
def test_replaying_recorded_actions_reproduces_recorded_states(tmp_path, env_id, kwargs, steps):
    if env_id == "lewm/Cube-v0":
        pytest.importorskip("ogbench")
    out, _ = run(tmp_path, env_id=env_id, episodes=2, env_kwargs=kwargs, max_steps=steps)
    with RolloutFile(out) as rf:
        env = gym.make(env_id, **rf.env_kwargs, max_episode_steps=1000).unwrapped
        for e in range(rf.num_episodes):
            ep = rf.episode(e, ("pixels", "action", "state", "goal_state"))
            env.reset(options={"state": ep["state"][0], "goal_state": ep["goal_state"][0]})
            for t, a in enumerate(ep["action"][:-1]):
                obs, *_ = env.step(a)
                np.testing.assert_array_equal(env.get_state(), ep["state"][t + 1])
                np.testing.assert_array_equal(obs["pixels"], ep["pixels"][t + 1])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_collection_leaves_a_valid_file(tmp_path, sig):
    out = tmp_path / "i.h5"
    cmd = [sys.executable, "-m", "lewm_agent.cli", "collect", "--env", "lewm/TwoRoom-v0", "--episodes", "100000",
           "--out", str(out), "--no-progress"]
    log = open(tmp_path / "log.txt", "w")  # a file, not a pipe: a full pipe would block the child
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and out.stat().st_size > 200_000):
        time.sleep(0.2)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    log.close()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, (tmp_path / "log.txt").read_text()[-3000:]
    with RolloutFile(out) as rf:
        assert rf.num_episodes > 0
        ends = rf.episode_ends
        assert (rf.column("episode_index")[:ends[-1]] == np.repeat(np.arange(len(ends)), rf.episode_lengths)).all()
        assert rf.column("is_success")[:][ends - 1].all()  # every kept episode is complete


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    assert main(["collect", "--env", "lewm/Nope-v0", "--episodes", "1", "--out", str(tmp_path / "x.h5")]) == 2
    assert "unknown 'lewm/Nope-v0'" in capsys.readouterr().err
    out, _ = run(tmp_path, episodes=1)
    assert main(["collect", "--env", "lewm/TwoRoom-v0", "--episodes", "1", "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["collect", "--env", "lewm/TwoRoom-v0", "--episodes", "1", "--out", str(tmp_path / "y.h5"),
                 "--env-kwargs", "[1]"]) == 2
    assert "--env-kwargs: expected a JSON object" in capsys.readouterr().err
    for flag, cls in (("--env-kwargs", "TwoRoomEnv"), ("--expert-kwargs", "TwoRoomExpert")):
        assert main(["collect", "--env", "lewm/TwoRoom-v0", "--episodes", "1", "--out", str(tmp_path / "y.h5"),
                     flag, '{"bogus": 1}']) == 2
        assert f"{flag}: unknown key(s) ['bogus'] for {cls}; known: [" in capsys.readouterr().err
    assert not (tmp_path / "y.h5").exists()


def test_uncompressed_file_holds_the_same_data(tmp_path):
    packed, _ = run(tmp_path, episodes=2, name="gzip.h5", env_kwargs={"image_size": 32})
    plain, _ = run(tmp_path, episodes=2, name="plain.h5", env_kwargs={"image_size": 32}, compression="none")
    with RolloutFile(packed) as a, RolloutFile(plain) as b:
        assert a.column("pixels").compression == "gzip" and b.column("pixels").compression is None
        assert np.array_equal(a.column("pixels")[:], b.column("pixels")[:])
        assert np.array_equal(a.column("state")[:], b.column("state")[:])
    with pytest.raises(ValueError, match="--compression"):
        CollectConfig("lewm/TwoRoom-v0", 1, str(tmp_path / "z.h5"), compression="zstd")


def test_a_file_size_limit_stops_collection_cleanly_with_complete_episodes(tmp_path):
    import resource
    out, limit = tmp_path / "d.h5", 1_600_000  # bytes: room for a few dozen 32 px episodes
    run = subprocess.run(
        [sys.executable, "-m", "lewm_agent", "collect", "--env", "lewm/TwoRoom-v0", "--episodes", "400",
         "--image-size", "32", "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert run.returncode == 1, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "file-size limit (ulimit -f)" in lines[0] and "complete episodes" in lines[0]
    with RolloutFile(out) as rf:
        assert 1 <= rf.num_episodes < 400 and rf.episode_ends[-1] == rf.num_frames
        assert rf.column("pixels")[rf.num_frames - 1].shape == (32, 32, 3)
        assert rf.attr("summary")["stopped"].startswith("file-size limit")


def test_the_next_episode_is_reserved_on_disk_and_a_full_disk_stops_cleanly(tmp_path, monkeypatch):
    import lewm_agent.data.collect as collect_mod
    path = tmp_path / "r.bin"
    path.write_bytes(b"x" * 100)
    assert collect_mod.reserve(str(path), 8 << 20)
    if collect_mod._FALLOCATE is not None:  # Linux: blocks held for the next writes, size unchanged
        assert path.stat().st_size == 100 and path.stat().st_blocks * 512 >= 8 << 20
    # Another process fills the disk after the free-space check: the reservation fails, not a write.
    calls = []

    def full(p, n):
        calls.append(n)
        return len(calls) < 3
    monkeypatch.setattr(collect_mod, "reserve", full)
    out = tmp_path / "full.h5"
    summary = collect(CollectConfig("lewm/TwoRoom-v0", 10, str(out), env_kwargs={"image_size": 32}, progress=False))
    assert summary["episodes"] == 2 and summary["stopped"].startswith("disk full: could not reserve")
    with RolloutFile(out) as rf:
        assert rf.num_episodes == 2 and rf.episode_ends[-1] == rf.num_frames


def _stop_before_the_first_episode(monkeypatch, how):
    import lewm_agent.data.collect as collect_mod
    if how == "interrupted":
        def episodes(cfg):
            raise KeyboardInterrupt
            yield  # a generator, as the real one
        monkeypatch.setattr(collect_mod, "_episodes", episodes)
    else:
        monkeypatch.setattr(collect_mod, "room_left", lambda path, size: (0, "disk full"))


@pytest.mark.parametrize("how,code", [("interrupted", 130), ("disk full", 1)])
def test_a_stop_before_any_episode_says_nothing_was_written_and_leaves_no_file(tmp_path, monkeypatch, capsys,
                                                                                  how, code):
    _stop_before_the_first_episode(monkeypatch, how)
    out = tmp_path / "new" / "d.h5"
    args = ["collect", "--env", "lewm/TwoRoom-v0", "--episodes", "3", "--out", str(out), "--no-progress"]
    assert main(args) == code
    captured = capsys.readouterr()
    assert captured.out == ""  # no "wrote ..." line
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lewm collect: nothing written: stopped before the first episode")
    assert f"({how}" in err[0] and f"no file at {out}" in err[0]
    assert not out.parent.exists()  # not even an empty folder or a lock


def test_overwrite_that_writes_nothing_leaves_the_old_file_and_says_so(tmp_path, monkeypatch, capsys):
    old, _ = run(tmp_path, episodes=2, env_kwargs={"image_size": 32})
    before = old.read_bytes()
    _stop_before_the_first_episode(monkeypatch, "disk full")
    assert main(["collect", "--env", "lewm/TwoRoom-v0", "--episodes", "3", "--out", str(old), "--overwrite",
                 "--no-progress"]) == 1
    assert f"{old} from before is unchanged" in capsys.readouterr().err
    assert old.read_bytes() == before and not (tmp_path / "d.h5.lock").exists()


def test_a_second_collector_on_the_same_file_is_refused_naming_the_holder(tmp_path, capsys):
    import json as _json
    out = tmp_path / "d.h5"
    (tmp_path / "d.h5.lock").write_text(_json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                                     "started": "now"}))
    args = ["collect", "--env", "lewm/TwoRoom-v0", "--episodes", "1", "--out", str(out), "--overwrite",
            "--no-progress"]
    assert main(args) == 2
    assert f"{out}: another collector holds it (pid {os.getpid()}" in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "d.h5.lock").write_text(_json.dumps({"pid": 2 ** 22 + 7, "host": os.uname().nodename,
                                                     "started": "then"}))  # a dead holder's lock
    assert main(args) == 0 and out.exists() and not (tmp_path / "d.h5.lock").exists()
