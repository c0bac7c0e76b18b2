"""Rollout videos (lewm_agent.evaluation.video, `lewm eval --video`) and plots (`lewm plot`)."""
import json

import numpy as np
import pytest
from conftest import DotEnv

from lewm_agent.cli import main
from lewm_agent.data.rollouts import RolloutFile
from lewm_agent.evaluation.evaluate import EvalConfig, evaluate, make_eval_env
from lewm_agent.evaluation.pairs import run_pairs, sample_pairs
from lewm_agent.evaluation.plot import load_log
from lewm_agent.evaluation.rows import replay_policy
from lewm_agent.evaluation.video import GoalVideo, compose_frame, write_video

# The `video` and `plot` extras (lewm_agent.evaluation.video and .plot import them lazily).
iio = pytest.importorskip("imageio.v2")
pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("PIL")
pytest.importorskip("matplotlib")


def decode(path):
    reader = iio.get_reader(path, format="FFMPEG")
    frames = [f for f in reader]  # list(reader) asks len(), which is inf for a stream
    reader.close()
    return frames


# ------------------------------------------------------------------ video
def test_video_decodes_to_the_frames_written_padded_to_16_px(tmp_path):
    # Flat grey levels 0, 30, ... let the decoded order and content be checked through compression.
    frames = [np.full((40, 70, 3), 30 * i, np.uint8) for i in range(7)]
    path = write_video(tmp_path / "sub" / "v.mp4", iter(frames), fps=5)
    decoded = decode(path)
    assert len(decoded) == 7 and decoded[0].shape == (48, 80, 3)  # padded to H.264 macroblocks
    for i, f in enumerate(decoded):
        assert abs(float(f[:40, :70].mean()) - 30 * i) < 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["v.mp4"]  # no temp file left


def test_video_bad_input_leaves_no_file(tmp_path):
    good = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"frames\[2\]: shape \(16, 32, 3\) differs"):
        write_video(tmp_path / "v.mp4", [good, good, np.zeros((16, 32, 3), np.uint8)])
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "v.mp4", [])
    with pytest.raises(ValueError, match=r"frames\[0\]: expected a uint8 \(H, W, 3\)"):
        write_video(tmp_path / "v.mp4", [good.astype(np.float32)])
    with pytest.raises(ValueError, match=".mp4"):
        write_video(tmp_path / "v.gif", [good])
    assert list(tmp_path.iterdir()) == []  # atomic: a failed write leaves nothing, not even a temp file


def test_frame_shows_both_views_upscaled_and_the_outcome():
    rng = np.random.default_rng(0)
    pixels, goal = (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    frame = compose_frame(pixels, goal, 3, False, "label", total_steps=50)
    assert frame.dtype == np.uint8 and frame.shape[0] % 16 == 0 and frame.shape[1] % 16 == 0
    # Layout constants: header 52 px, margin 8 px; 32 px views are upscaled x8 to 256 px.
    np.testing.assert_array_equal(frame[52:52 + 256, 8:8 + 256], pixels.repeat(8, 0).repeat(8, 1))
    np.testing.assert_array_equal(frame[52:52 + 256, 8 + 256 + 8:8 + 512 + 8], goal.repeat(8, 0).repeat(8, 1))

    def border(f):  # a pixel of the line framing the current view
        return tuple(f[50, 100])
    assert border(compose_frame(pixels, goal, 9, True)) == (60, 200, 90)          # green: success
    assert border(compose_frame(pixels, goal, 50, False, done=True)) == (220, 70, 60)  # red: failed
    assert border(frame) == (150, 150, 150)
    assert not np.array_equal(frame[:52], compose_frame(pixels, goal, 4, False, "label", 50)[:52])  # step text
    with pytest.raises(ValueError, match="goal: shape"):
        compose_frame(pixels, goal[:16], 0, False)
    with pytest.raises(ValueError, match="pixels: expected a uint8"):
        compose_frame(pixels[..., 0], goal, 0, False)


def test_wrapper_writes_one_file_per_episode(tmp_path):
    env = GoalVideo(DotEnv(image_size=16, max_steps=6), tmp_path, name_prefix="dot",
                    episode_trigger=lambda k: k != 1)
    lengths = []
    for k in range(3):
        env.reset(seed=k)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps, done = steps + 1, terminated or truncated
        lengths.append(steps)
    env.reset(seed=9)
    env.step(env.action_space.sample())
    env.close()  # mid-episode: written as unfinished
    names = [p.name for p in env.paths]
    assert len(names) == 3 and names[0].startswith("dot-0_") and names[1].startswith("dot-2_")
    assert names[2] in ("dot-3_unfinished.mp4", "dot-3_success.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert [len(decode(p)) for p in env.paths] == [lengths[0] + 1, lengths[2] + 1, 2]  # reset + each step
    with pytest.raises(ValueError, match="'pixels' and 'goal'"):
        GoalVideo(_NoPixels(), tmp_path)


class _NoPixels(DotEnv):
    def __init__(self):
        super().__init__()
        self.observation_space = self.observation_space["observation"]


# ------------------------------------------------------------ eval --video
def test_recording_hook_follows_each_pair_until_its_success(two_room_data):
    with RolloutFile(two_room_data) as rf:
        pairs, _ = sample_pairs(rf, np.arange(rf.num_episodes), 3, 8, seed=0, solved=lambda p: False)
    envs = [make_eval_env("lewm/TwoRoom-v0", {"image_size": 32}, 20) for _ in pairs]
    record = {0: [], 2: []}
    success = run_pairs(replay_policy(pairs, 2), pairs, envs, 20, record)
    assert success.all()  # replaying the recording reaches the goal frame
    for snaps in record.values():
        assert [s.step for s in snaps] == list(range(len(snaps))) and len(snaps) <= 8 + 1
        assert snaps[-1].success and not any(s.success for s in snaps[:-1])  # ends at the first success
        assert snaps[0].pixels.shape == (32, 32, 3) and np.array_equal(snaps[0].goal, snaps[-1].goal)


def test_eval_video_writes_the_first_pairs_of_each_seed(two_room_data, two_room_ck, tmp_path, capsys):
    vids = tmp_path / "vids"
    vids.mkdir()
    stale = [vids / "TwoRoom-v0_seed0_pair0_success.mp4", vids / "TwoRoom-v0_seed0_pair0_fail.mp4"]
    for p in stale:
        p.write_bytes(b"old run")
    args = ["eval", "--checkpoint", str(two_room_ck), "--data", str(two_room_data), "--episodes", "3",
            "--seeds", "0", "1", "--goal-offset", "5", "--budget", "6", "--num-samples", "8", "--num-iterations", "1",
            "--num-elites", "2", "--video", str(vids), "--video-episodes", "2", "--out", str(tmp_path / "ev")]
    assert main(args) == 0
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    written = sorted(report["videos"])
    err = capsys.readouterr().err
    assert len(written) == 4 and all(f"video: {p}\n" in err for p in written)
    names = sorted(p.name for p in vids.iterdir())
    assert names == sorted(p.rsplit("/", 1)[-1] for p in written)
    for seed in (0, 1):
        for i in (0, 1):
            hits = [n for n in names if n.startswith(f"TwoRoom-v0_seed{seed}_pair{i}_")]
            assert len(hits) == 1 and hits[0].endswith(("_success.mp4", "_fail.mp4"))  # stale twin removed
    for p in written:
        n = len(decode(p))
        assert n == 6 + 1 if p.endswith("_fail.mp4") else 2 <= n <= 6 + 1  # reset + steps until success
    assert main(args[:-6] + ["--video", str(vids), "--video-episodes", "0"]) == 2
    assert "--video-episodes: must be >= 1" in capsys.readouterr().err


def test_eval_without_video_reports_no_videos(two_room_data, two_room_ck):
    report = evaluate(EvalConfig(checkpoint=str(two_room_ck), data=str(two_room_data), episodes=2, seeds=(0,),
                                 goal_offset=5, budget=3, baselines=False,
                                 planner={"num_samples": 8, "num_iterations": 1, "num_elites": 2}))
    assert "videos" not in report and report["rows"]["lewm"]["n"] == 2


# ------------------------------------------------------------------- plot
def _png_ok(path):
    img = iio.imread(path)
    return img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200 and img.std() > 10  # drawn, not blank


def test_plot_training_log_and_eval_report(trained_checkpoint, tmp_path, capsys):
    series = load_log(trained_checkpoint / "log.jsonl")
    # 200 steps logged every 10, validation at 100 and 200 (the conftest run).
    assert len(series["train/pred_loss"][0]) == 20 and list(series["val/pred_loss"][0]) == [100, 200]
    assert main(["plot", str(trained_checkpoint), "--out", str(tmp_path / "p")]) == 0
    printed = capsys.readouterr().out.split()
    names = ["pred_loss.png", "sigreg_loss.png", "collapse.png", "lr.png", "training.png"]
    assert [p.rsplit("/", 1)[-1] for p in printed] == names
    assert all(_png_ok(p) for p in printed)

    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "log.jsonl").write_text((trained_checkpoint / "log.jsonl").read_text() + '{"step": 21')  # cut short
    report = {"env_id": "lewm/TwoRoom-v0", "episodes_per_seed": 10, "seeds": [0, 1],
              "rows": {"lewm": {"success": 0.45, "ci95": [0.31, 0.6], "per_seed": {"0": 0.4, "1": 0.5}},
                       "replay": {"success": 1.0, "ci95": [0.83, 1.0], "per_seed": {"0": 1.0, "1": 1.0}}}}
    (run / "eval" / "eval.json").write_text(json.dumps(report))
    assert main(["plot", str(run)]) == 0  # eval/eval.json found on its own; output in RUN_DIR/plots
    printed = capsys.readouterr().out.split()
    assert printed[-1] == str(run / "plots" / "success.png") and len(printed) == 6 and _png_ok(printed[-1])


def test_plot_bad_input(tmp_path, trained_checkpoint, capsys):
    assert main(["plot", str(tmp_path / "none")]) == 2
    assert "no training log" in capsys.readouterr().err
    (tmp_path / "log.jsonl").write_text("")
    assert main(["plot", str(tmp_path)]) == 2
    assert "log is empty" in capsys.readouterr().err
    (tmp_path / "log.jsonl").write_text('{"step": 1, "lr": 0.1}\nnot json\n{"step": 2, "lr": 0.2}\n')
    assert main(["plot", str(tmp_path)]) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err
    (tmp_path / "log.jsonl").write_text('{"lr": 0.1}\n')
    assert main(["plot", str(tmp_path)]) == 2
    assert "integer 'step'" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"rows": {"lewm": {"success": 0.5}}}))
    log = str(trained_checkpoint / "log.jsonl")
    assert main(["plot", log, "--out", str(tmp_path / "p"), "--eval", str(tmp_path / "bad.json")]) == 2
    assert "rows.lewm: expected 'success'" in capsys.readouterr().err
    assert main(["plot", log, "--out", str(tmp_path / "p"), "--eval", str(tmp_path / "missing.json")]) == 2
    assert "missing.json does not exist" in capsys.readouterr().err


def test_gymnasium_record_video_writes_a_readable_video(tmp_path):
    import gymnasium as gym
    import imageio.v3 as iio
    pytest.importorskip("moviepy")
    from gymnasium.wrappers import RecordVideo
    env = RecordVideo(gym.make("lewm/TwoRoom-v0", image_size=32, render_mode="rgb_array"), str(tmp_path),
                      episode_trigger=lambda episode: True, disable_logger=True)
    env.reset(seed=0)
    for _ in range(9):
        env.step(env.action_space.sample())
    env.close()
    (video,) = tmp_path.glob("*.mp4")
    frames = iio.imread(video)
    # the reset and 9 steps (moviepy's encoding may drop the last frame) of the 256 px view beside the
    # 256 px goal, whatever image_size
    assert frames.shape[0] in (9, 10) and frames.shape[1] == 256 and frames.shape[2] in (520, 528)
    assert frames[:, :, 256:264].min() > 200  # the white gap between view and goal


def test_plot_charts_an_eval_report_alone(tmp_path, capsys):
    from pathlib import Path
    shipped = Path(__file__).resolve().parent.parent / "checkpoints" / "two_room" / "eval.json"
    assert main(["plot", "--eval", str(shipped), "--out", str(tmp_path)]) == 0
    png = tmp_path / "success.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in capsys.readouterr().out
    assert main(["plot"]) == 2
    assert "give RUN_DIR" in capsys.readouterr().err
