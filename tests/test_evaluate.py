import json

import numpy as np
import pytest

from lewm_agent.cli import main
from lewm_agent.config import PlannerConfig
from lewm_agent.data.collect import CollectConfig, collect
from lewm_agent.data.rollouts import RolloutFile
from lewm_agent.evaluation.evaluate import EvalConfig, eval_markdown, evaluate, summarize, wilson
from lewm_agent.evaluation.pairs import Pair, sample_pairs


def test_wilson_interval():
    lo, hi = wilson(45, 50)
    assert 0.78 < lo < 0.8 and 0.95 < hi < 0.97
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_honest_and_paper_protocol_columns_by_hand():
    # seed 0: 3 of 4 played pairs succeed, 1 start was already solved; seed 1: 1 of 4, 3 skipped
    row = summarize({0: np.array([1, 1, 1, 0], bool), 1: np.array([0, 0, 1, 0], bool)}, {0: 1, 1: 3})
    assert row["success"] == 4 / 8 and row["per_seed"] == {0: 0.75, 1: 0.25} and row["skipped"] == 4
    paper = row["paper"]  # skipped starts count as drawn pairs that succeeded
    assert paper["per_seed"] == {0: 4 / 5, 1: 4 / 7} and paper["success"] == 8 / 12 and paper["n"] == 12
    assert paper["mean"] == pytest.approx((4 / 5 + 4 / 7) / 2)
    assert paper["std"] == pytest.approx(np.std([4 / 5, 4 / 7], ddof=1))
    assert paper["ci95"] == list(wilson(8, 12))
    report = {"env_id": "e", "episodes_per_seed": 4, "seeds": [0, 1], "goal_offset": 5, "budget": 9,
              "held_out": "x", "rows": {"lewm": {**row, "seconds_per_episode": 1.0}},
              "planning": {"median_s_per_solve": None}}
    text = eval_markdown(report)
    assert "paper protocol" in text and "| 68.6 ± 16.2% [39.1, 86.2] |" in text
    none_skipped = summarize({0: np.array([1, 0], bool)}, {0: 0})
    report["rows"] = {"lewm": {**none_skipped, "seconds_per_episode": 1.0}}
    assert "paper protocol" not in eval_markdown(report)  # nothing was skipped: one column says it all
    report["planner"] = {**PlannerConfig(num_samples=40, num_elites=4, probe_weight=7.0).to_dict()}
    assert "Planner: CEM 40 samples x 30 iterations, 4 elites" in eval_markdown(report)
    assert "cost probe" not in eval_markdown(report)
    report["cost_probe"] = {"quantity": "cube_xyz", "data": "train.h5"}  # the planner weighed a cost probe in
    assert "cost probe of cube_xyz fitted on train.h5 at weight 7." in eval_markdown(report)


def test_pairs_come_from_the_given_episodes_at_the_offset_and_are_seeded(two_room_data):
    with RolloutFile(two_room_data) as rf:
        held = np.array([1, 3, 5, 7, 9, 11])
        states = rf.column("state")[:]
        pairs, skipped = sample_pairs(rf, held, 10, 25, seed=0, solved=lambda p: False)
        assert len(pairs) == 10 and skipped == 0
        for p in pairs:
            assert p.episode in held and p.start + 25 < rf.episode_lengths[p.episode]
            row = rf.episode_starts[p.episode] + p.start
            np.testing.assert_array_equal(p.state, states[row])
            np.testing.assert_array_equal(p.goal_state, states[row + 25])
            assert len(p.actions) == 25 and np.isfinite(p.actions).all()
        again, _ = sample_pairs(rf, held, 10, 25, seed=0, solved=lambda p: False)
        other, _ = sample_pairs(rf, held, 10, 25, seed=1, solved=lambda p: False)
        assert [(p.episode, p.start) for p in again] == [(p.episode, p.start) for p in pairs]
        assert [(p.episode, p.start) for p in other] != [(p.episode, p.start) for p in pairs]


def test_already_solved_starts_are_skipped_and_counted(two_room_data):
    with RolloutFile(two_room_data) as rf:
        verdicts = iter([True, True, True] + [False] * 100)
        pairs, skipped = sample_pairs(rf, np.arange(rf.num_episodes), 5, 10, seed=0,
                                      solved=lambda p: next(verdicts))
        assert len(pairs) == 5 and skipped == 3
        with pytest.raises(ValueError, match="usable start/goal pairs"):
            sample_pairs(rf, np.array([0]), 10_000, 10, seed=0, solved=lambda p: False)
        with pytest.raises(ValueError, match="--goal-offset 5000"):
            sample_pairs(rf, np.arange(rf.num_episodes), 5, 5000, seed=0, solved=lambda p: False)


def test_protocol_end_to_end_replay_succeeds_on_a_deterministic_env(two_room_data, two_room_ck):
    planner = dict(num_samples=16, num_iterations=2, num_elites=4)
    report = evaluate(EvalConfig(checkpoint=str(two_room_ck), data=str(two_room_data), episodes=4, seeds=(0, 1),
                                 budget=30, goal_offset=20, planner=planner))
    assert report["held_out"].startswith("validation split")
    rows = report["rows"]
    assert rows["replay"]["success"] == 1.0  # replaying the recording reaches the goal frame exactly
    assert set(rows) == {"lewm", "random", "replay"} and rows["lewm"]["n"] == 8
    assert report["planning"]["solves"] >= 2 and report["planning"]["median_s_per_solve"] > 0
    assert "| replay | 100.0 ± 0.0%" in eval_markdown(report)
    env_report = evaluate(EvalConfig(checkpoint=str(two_room_ck), env_id="lewm/TwoRoom-v0", episodes=3, seeds=(0,),
                                     planner=planner, budget=10))
    assert set(env_report["rows"]) == {"lewm", "random"}


def test_bad_input_gives_a_message_and_exit_status(two_room_data, two_room_ck, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "none"), "--data", str(two_room_data)]) == 2
    assert "no such folder, and not a shipped checkpoint name" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(two_room_ck), "--env", "lewm/PushT-v0"]) == 2
    assert "trained on lewm/TwoRoom-v0, not lewm/PushT-v0" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(two_room_ck), "--env", "lewm/Nope-v0"]) == 2
    assert "unknown env id" in capsys.readouterr().err
    other = tmp_path / "tr96.h5"
    collect(CollectConfig("lewm/TwoRoom-v0", 3, str(other), env_kwargs={"image_size": 48}, progress=False))
    assert main(["eval", "--checkpoint", str(two_room_ck), "--data", str(other)]) == 2
    assert "with image_size=48 (the checkpoint's: 32)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exactly one"):
        EvalConfig(checkpoint="x")
    with pytest.raises(ValueError, match="--episodes"):
        EvalConfig(checkpoint="x", env_id="lewm/TwoRoom-v0", episodes=0)
    assert isinstance(Pair(np.zeros(2), np.ones(2)), Pair)


def test_eval_card_writes_the_table_into_the_model_card(two_room_data, two_room_ck, tmp_path):
    import json
    import shutil
    folder = tmp_path / "shipped"
    shutil.copytree(two_room_ck, folder)
    card = (folder / "README.md").read_text()
    assert '"seed": 0' in card and "TwoRoomExpert" in card  # the data recipe travels with the model
    args = ["eval", "--checkpoint", str(folder), "--data", str(two_room_data), "--episodes", "2", "--seeds", "0",
            "--num-samples", "8", "--num-iterations", "2", "--num-elites", "2", "--budget", "5",
            "--goal-offset", "5", "--card"]
    assert main(args) == 0
    assert main(args) == 0  # a rerun replaces its section
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: mit") and "# LeWM checkpoint" in card and card.count("## Evaluation") == 1
    assert "| lewm |" in card and "--card" in card
    report = json.loads((folder / "eval.json").read_text())
    assert report["episodes_per_seed"] == 2 and set(report["rows"]) == {"lewm", "random", "replay"}
    # A second test file gets its own JSON and card section; the headline ones stay as they were.
    assert main([*args, "--card-name", "eval_hard", "--budget", "3"]) == 0
    card = (folder / "README.md").read_text()
    assert card.count("## Evaluation\n") == 1 and card.count("## Evaluation: eval hard") == 1
    assert json.loads((folder / "eval.json").read_text())["budget"] == 5
    assert json.loads((folder / "eval_hard.json").read_text())["budget"] == 3
    assert main([*args, "--card-name", "../x"]) == 2


def test_the_headline_card_section_refuses_a_file_of_another_recipe(two_room_data, two_room_ck, tmp_path, capsys):
    import shutil

    from lewm_agent.data.collect import CollectConfig, collect
    folder, other = tmp_path / "shipped", tmp_path / "other.h5"
    shutil.copytree(two_room_ck, folder)
    collect(CollectConfig("lewm/TwoRoom-v0", 3, str(other), env_kwargs={"image_size": 32},
                          expert_kwargs={"noise": 0.2}, progress=False))
    args = ["eval", "--checkpoint", str(folder), "--data", str(other), "--episodes", "2", "--seeds", "0",
            "--num-samples", "8", "--num-iterations", "2", "--num-elites", "2", "--budget", "3", "--card"]
    before = (folder / "README.md").read_text()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data: its expert_kwargs" in err[0] and '"noise": 0.2' in err[0]
    assert (folder / "README.md").read_text() == before and not (folder / "eval.json").exists()
    assert main([*args, "--card-name", "eval_other"]) == 0  # under its own name it is a row like any other


def test_card_writes_refuse_a_shipped_checkpoint_and_a_smaller_run_unless_forced(two_room_data, two_room_ck,
                                                                                 tmp_path, capsys):
    import shutil

    from lewm_agent.checkpoint import shipped_checkpoints
    shipped = shipped_checkpoints()["two_room"]
    before = (shipped / "README.md").read_text()
    base = ["eval", "--data", str(two_room_data), "--seeds", "0", "--num-samples", "8", "--num-iterations", "1",
            "--num-elites", "2", "--budget", "3", "--goal-offset", "5", "--card", "--card-name", "eval_other"]
    assert main([*base, "--checkpoint", "two_room", "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a shipped checkpoint" in err[0] and "--force" in err[0]
    assert (shipped / "README.md").read_text() == before and not (shipped / "eval_other.json").exists()
    folder = tmp_path / "mine"
    shutil.copytree(two_room_ck, folder)
    args = [*base, "--checkpoint", str(folder)]
    assert main([*args, "--episodes", "2"]) == 0
    card = (folder / "README.md").read_text()
    assert main([*args, "--episodes", "1"]) == 2  # 1 pair x 1 seed would replace 2 x 1
    assert "holds 2 pairs x 1 seeds; this run has 1 x 1" in capsys.readouterr().err
    assert (folder / "README.md").read_text() == card
    assert main([*args, "--episodes", "1", "--force"]) == 0
    assert json.loads((folder / "eval_other.json").read_text())["episodes_per_seed"] == 1


def test_env_goals_are_the_experts_k_steps_on_and_goal_offset_belongs_to_data_pairs(two_room_ck, capsys):
    import gymnasium as gym

    from lewm_agent.evaluation.pairs import env_pairs
    env = gym.make("lewm/TwoRoom-v0", image_size=32)
    near, _ = env_pairs(env, 6, 0, goal_steps=5)
    far, _ = env_pairs(env, 6, 0, goal_steps=40)
    gap = [float(np.linalg.norm(p.state[:2] - p.goal_state[:2])) for p in near + far]
    assert max(gap[:6]) < min(max(gap[6:]), 1e9) and np.mean(gap[:6]) < np.mean(gap[6:])  # K steps of travel
    cfg = EvalConfig(checkpoint="x", env_id="lewm/TwoRoom-v0")
    assert (cfg.goal_steps, cfg.goal_offset) == (25, None)
    assert EvalConfig(checkpoint="x", data="d.h5").goal_offset == 25
    with pytest.raises(ValueError, match="^--goal-offset: applies to --data pairs"):
        EvalConfig(checkpoint="x", env_id="lewm/TwoRoom-v0", goal_offset=10)
    with pytest.raises(ValueError, match="^--goal-steps: applies to --env"):
        EvalConfig(checkpoint="x", data="d.h5", goal_steps=10)
    args = ["eval", "--checkpoint", str(two_room_ck), "--env", "lewm/TwoRoom-v0", "--episodes", "2", "--seeds", "0",
            "--num-samples", "8", "--num-iterations", "1", "--num-elites", "2", "--budget", "4"]
    assert main([*args, "--goal-offset", "10"]) == 2
    assert "--goal-offset: applies to --data" in capsys.readouterr().err
    assert main([*args, "--goal-steps", "8", "--no-baselines"]) == 0
    assert "goal: 8 expert steps on from a start along the env's expert episodes" in capsys.readouterr().out


def test_env_pairs_are_windows_of_the_experts_episodes_as_a_collected_file_poses_them():
    import gymnasium as gym

    from lewm_agent.evaluation.pairs import env_pairs, recipe_expert
    from lewm_envs import make_expert
    env = gym.make("lewm/TwoRoom-v0", image_size=32)
    pairs, _ = env_pairs(env, 8, 3, goal_steps=10, max_steps=60)
    assert [p.start for p in pairs] == [p.start for p in env_pairs(env, 8, 3, goal_steps=10, max_steps=60)[0]]
    assert any(p.start > 0 for p in pairs)  # not only from resets: anywhere along an episode
    for p in pairs[:3]:  # replay the episode each pair names: its start and goal are 10 steps apart on it
        env_seed, expert_seed, _ = np.random.SeedSequence([3, p.episode]).generate_state(3)
        env.reset(seed=int(env_seed))
        states = env.unwrapped.expert_episode(make_expert("lewm/TwoRoom-v0"), np.random.default_rng(expert_seed), 60)
        np.testing.assert_array_equal(states[p.start], p.state)
        np.testing.assert_array_equal(states[p.start + 10], p.goal_state)
    with pytest.raises(ValueError, match="^--goal-steps 60: the expert's episodes end by 60 steps"):
        env_pairs(env, 1, 0, goal_steps=60, max_steps=60)
    with pytest.raises(ValueError, match="unknown key"):  # the expert kwargs reach the expert
        env_pairs(env, 1, 0, goal_steps=5, expert_kwargs={"nope": 1})

    class Meta:
        training = {"data_recipe": {"collector": "lewm_agent.collect/TwoRoomExpert", "expert_kwargs": {"noise": 0.1},
                                    "max_episode_steps": 90}}
    assert recipe_expert(Meta(), "lewm/TwoRoom-v0") == ({"noise": 0.1}, 90)
    assert recipe_expert(Meta(), "lewm/PushT-v0") == ({}, None)  # another env's data: its expert's defaults


def test_an_interrupted_evaluation_resumes_after_its_last_seed_with_the_same_numbers(two_room_data, two_room_ck,
                                                                                     tmp_path):
    from lewm_agent.evaluation.evaluate import EvalConfig, evaluate
    planner = {"num_samples": 8, "num_iterations": 1, "num_elites": 2}
    kw = dict(checkpoint=str(two_room_ck), data=str(two_room_data), episodes=3, seeds=(0, 1, 2), budget=6,
              goal_offset=5, planner=planner, progress=False)
    whole = evaluate(EvalConfig(**kw))
    partial = tmp_path / "eval.json.partial"
    played = []

    def crash_after_seed_0(row, seed, rate):
        played.append((row, seed))
        if seed == 1:
            raise KeyboardInterrupt  # killed while seed 1 plays
    with pytest.raises(KeyboardInterrupt):
        evaluate(EvalConfig(**kw, resume_file=str(partial)), on_seed=crash_after_seed_0)
    kept = json.loads(partial.read_text())
    assert set(kept["seeds"]) == {"0"}                        # only the finished seed
    played.clear()
    resumed = evaluate(EvalConfig(**kw, resume_file=str(partial)), on_seed=lambda r, s, x: played.append((r, s)))
    assert {s for _, s in played} == {1, 2}                   # seed 0 is not played again
    assert not partial.exists()
    for name in whole["rows"]:
        a, b = whole["rows"][name], resumed["rows"][name]
        assert [a[k] for k in ("per_seed", "skipped", "mean", "ci95")] == [b[k] for k in ("per_seed", "skipped", "mean",
                                                                                       "ci95")]
    assert resumed["planning"]["solves"] == whole["planning"]["solves"]


def test_a_second_evaluation_into_the_same_out_is_refused_naming_the_holder(two_room_data, two_room_ck, tmp_path,
                                                                            capsys):
    import os
    out = tmp_path / "ev"
    out.mkdir()
    (out / "eval.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "now"}))
    assert main(["eval", "--checkpoint", str(two_room_ck), "--data", str(two_room_data), "--episodes", "1",
                 "--seeds", "0", "--out", str(out)]) == 2
    assert f"{out}: another evaluation holds it (pid {os.getpid()}" in capsys.readouterr().err
