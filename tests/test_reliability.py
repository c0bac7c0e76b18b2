"""What is on disk stays loadable through kills and bad files; bad data is refused by name."""
import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import fields, replace

import h5py
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lewm_agent.checkpoint as ckpt_mod
from lewm_agent import ModelConfig, PlannerConfig, WorldModel, preset
from lewm_agent.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from lewm_agent.data.windows import check_actions
from lewm_agent.lock import LOCK_FILE, RunLock
from lewm_agent.training.train import TrainConfig, train


def meta_of(model):
    return CheckpointMeta(model.cfg, [0.0, 0.0], [1.0, 1.0], [-1, -1], [1, 1], env_id="test/Dot-v0")


def test_a_save_killed_between_its_weights_and_its_config_rolls_forward(tmp_path, monkeypatch):
    old, new = WorldModel(preset("tiny")), WorldModel(preset("tiny", latent_dim=48))
    save_checkpoint(tmp_path / "ck", old, meta_of(old))
    real_replace = os.replace

    def killed(src, dst):  # the process dies right before the config is renamed into place
        if str(src).endswith(ckpt_mod.NEXT_CONFIG):
            raise KeyboardInterrupt
        real_replace(src, dst)
    monkeypatch.setattr(ckpt_mod.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ck", new, meta_of(new))
    monkeypatch.setattr(ckpt_mod.os, "replace", real_replace)
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["model"]["latent_dim"] == 32  # torn state
    model, meta = load_checkpoint(tmp_path / "ck")  # finishes the save: the new weights with their config
    assert model.cfg.latent_dim == 48 and meta.model.latent_dim == 48
    assert not (tmp_path / "ck" / ckpt_mod.NEXT_CONFIG).exists()
    for k, v in new.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_unloadable_weights_are_one_clear_error(tmp_path):
    model = WorldModel(preset("tiny"))
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_checkpoint(tmp_path / "nan", model, meta_of(model))
    with pytest.raises(ValueError, match="NaN or inf in"):
        load_checkpoint(tmp_path / "nan")
    save_checkpoint(tmp_path / "torn", model, meta_of(model))
    weights = tmp_path / "torn" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "torn")


def test_a_run_before_its_first_checkpoint_says_so(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"step": 50, "train/loss": 1.0}\n')
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        load_checkpoint(tmp_path)


def small(data, out, **kw):
    return TrainConfig(data=str(data), out=str(out), preset="tiny", steps=20, batch_size=16, lr=3e-3,
                       warmup_steps=5, eval_interval=10, ckpt_interval=10, log_interval=5, val_windows=32,
                       num_projections=32, progress=False, **kw)


def test_resume_drops_a_torn_last_log_line(dot_dataset, tmp_path):
    out = tmp_path / "run"
    train(small(dot_dataset, out))
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 21, "train/lo')  # killed mid-write
    train(replace(small(dot_dataset, out), steps=30))  # resumes from step 20
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 30 and not (out / LOCK_FILE).exists()


def test_a_second_trainer_is_refused_and_a_stale_lock_is_recovered(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(FileExistsError, match=f"another trainer holds it \\(pid {os.getpid()} on"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                                  "started": "earlier"}))
    with RunLock(tmp_path) as lock:  # its holder is gone: taken over
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid() and lock.held
    (tmp_path / LOCK_FILE).write_text("")  # killed between creating and writing it
    with RunLock(tmp_path):
        pass


def test_non_finite_or_absurd_actions_are_refused_by_row(dot_dataset, tmp_path):
    ends = np.array([3, 6])
    ok = np.array([[0.1, 0.2], [0.3, -0.4], [np.nan, np.nan], [1, 1], [-1, 0], [np.nan, np.nan]])
    check_actions(ok, ends, [-1, -1], [1, 1])  # NaN only on each episode's last row: the format
    with pytest.raises(ValueError, match=r"action: row 1 is \[0.3, inf\]"):
        check_actions(np.array([[0.1, 0.2], [0.3, np.inf], [np.nan, np.nan]]), np.array([3]), [-1, -1], [1, 1])
    with pytest.raises(ValueError, match="row 0 .* over 100x the action bounds"):
        check_actions(np.array([[1e30, 0.0], [np.nan, np.nan]]), np.array([2]), [-1, -1], [1, 1])
    bad = tmp_path / "bad.h5"
    bad.write_bytes(dot_dataset.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["action"][5] = [np.nan, 0.0]
    with pytest.raises(ValueError, match="action: row 5"):
        train(small(bad, tmp_path / "o"))


def test_a_device_that_does_not_exist_here_is_one_line(capsys, tmp_path):
    from lewm_agent.cli import main
    from lewm_agent.device import resolve_device
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device: expected auto, cpu, cuda, cuda:N or mps, got 'bogus'"):
        resolve_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda")
    assert main(["eval", "--checkpoint", "two_room", "--env", "lewm/TwoRoom-v0", "--device", "bogus"]) == 2
    assert "device: expected" in capsys.readouterr().err


def test_planner_and_model_json_share_one_convention_and_refuse_unknown_keys(capsys, tmp_path):
    from lewm_agent.cli import main
    out = tmp_path / "ev"
    assert main(["eval", "--checkpoint", "two_room", "--env", "lewm/TwoRoom-v0", "--episodes", "2", "--seeds", "0",
                 "--no-baselines", "--no-progress",
                 "--planner", '{"num_samples": 8, "num_elites": 4, "num_iterations": 2}',
                 "--num-iterations", "1", "--out", str(out)]) == 0
    planner = json.loads((out / "eval.json").read_text())["planner"]
    assert planner["num_samples"] == 8 and planner["num_iterations"] == 1  # JSON, then the flag over it
    assert main(["eval", "--checkpoint", "two_room", "--env", "lewm/TwoRoom-v0", "--planner", '{"samples": 8}']) == 2
    assert "--planner: unknown key(s) ['samples']" in capsys.readouterr().err
    assert main(["train", "--data", "x.h5", "--out", str(tmp_path / "t"), "--model", '{"latent": 3}']) == 2
    assert "--model: unknown key(s) ['latent']" in capsys.readouterr().err


# Values of the wrong JSON type for any config field: each must be refused by name, never as a TypeError.
_WRONG = st.one_of(st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
                   st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not math.isfinite(x)))


@settings(max_examples=60, deadline=None)
@given(cls=st.sampled_from([ModelConfig, PlannerConfig]), data=st.data())
def test_config_fields_of_the_wrong_type_are_refused_by_name(cls, data):
    field = data.draw(st.sampled_from([f.name for f in fields(cls)]))
    value = data.draw(_WRONG)
    base = preset("tiny").to_dict() if cls is ModelConfig else PlannerConfig().to_dict()
    if isinstance(value, list) and field == "cnn_channels" and value and all(v >= 1 for v in value):
        return  # a valid channel list
    with pytest.raises(ValueError, match=field):
        cls.from_dict({**base, field: value})


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(["model", "planner", "action_mean", "action_std", "env_id", "env_kwargs"]),
       value=st.one_of(st.none(), st.text(max_size=4), st.integers(), st.lists(st.text(max_size=2), max_size=3)))
def test_a_config_json_with_wrong_types_is_one_line(tmp_path_factory, key, value):
    model = WorldModel(preset("tiny", action_dim=2))
    folder = tmp_path_factory.mktemp("ck")
    save_checkpoint(folder, model, meta_of(model))
    cfg = json.loads((folder / "config.json").read_text())
    if key == "env_id" and (value is None or isinstance(value, str)):
        return  # both are valid
    if key == "planner" and value is None:
        return  # unchanged default
    cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=f"config.json: .*{key}"):
        load_checkpoint(folder)


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


def test_a_failure_between_any_two_file_writes_leaves_a_loadable_folder_that_resumes(dot_dataset, tmp_path,
                                                                                    monkeypatch):
    """Every rename the trainer makes is a step from one state to the next; fail each one in turn."""
    real_replace = os.replace
    calls = []
    monkeypatch.setattr(os, "replace", lambda s, d: (calls.append(d), real_replace(s, d))[1])
    train(replace(small(dot_dataset, tmp_path / "count"), steps=10, ckpt_interval=5, eval_interval=5))
    n_writes = len(calls)
    assert n_writes >= 6  # state, config staging, weights, config, card... at two checkpoints
    for k in range(n_writes):
        out, seen = tmp_path / f"fail{k}", []

        def failing(src, dst):
            seen.append(dst)  # noqa: B023  (this iteration's list: the patch is undone before the next)
            if len(seen) == k + 1:  # noqa: B023
                raise OSError(28, "injected: no space left on device")
            real_replace(src, dst)
        monkeypatch.setattr(os, "replace", failing)
        cfg = replace(small(dot_dataset, out), steps=10, ckpt_interval=5, eval_interval=5)
        with pytest.raises(OSError, match="injected"):
            train(cfg)
        monkeypatch.setattr(os, "replace", real_replace)
        try:
            load_checkpoint(out)
        except FileNotFoundError as e:  # only before the first complete checkpoint
            assert "no checkpoint yet" in str(e) and k < n_writes // 2
        train(cfg)  # the same command resumes (or restarts) and finishes
        model, meta = load_checkpoint(out)
        assert meta.training["steps"] == 10 and not (out / LOCK_FILE).exists()


@pytest.mark.parametrize("delay", [2.0, 4.0, 6.5])
def test_a_trainer_killed_at_a_random_moment_leaves_a_loadable_folder(dot_dataset, tmp_path, delay):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "lewm_agent", "train", "--data", str(dot_dataset), "--out", str(out), "--preset",
            "tiny", "--steps", "400", "--batch-size", "16", "--ckpt-interval", "7", "--eval-interval", "7",
            "--log-interval", "3", "--val-windows", "32", "--num-projections", "32", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
    try:
        load_checkpoint(out)
    except FileNotFoundError as e:
        # killed before its first checkpoint (or before making the folder): said so, not a traceback
        assert "no checkpoint yet" in str(e) or "no such folder" in str(e)
    args[args.index("--steps") + 1] = "20"  # resume to a short end
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(out)[1].training["steps"] >= 20


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
