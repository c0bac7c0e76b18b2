"""The commands' CPU thread count on a shared machine (lewm_agent.threads)."""
import torch

from lewm_agent import threads


def test_threads_for_uses_the_free_cores():
    assert threads_for_all(busy=0.0) == 2          # idle: torch's own count
    assert threads_for_all(busy=1.0) == 1          # one core taken by other work
    assert threads_for_all(busy=3.9) == 1          # oversubscribed: never below one
    assert threads.threads_for(0.0, cores=8, current=2) == 2  # never above torch's current count


def threads_for_all(busy: float) -> int:
    return threads.threads_for(busy, cores=2, current=2)


def test_fit_threads_lowers_torch_threads_when_cores_are_busy(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads, "busy_cores", lambda cores: 1.2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert threads.fit_threads() == 1
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setattr(threads, "busy_cores", lambda cores: 0.1)
        assert threads.fit_threads() is None and torch.get_num_threads() == 2   # idle: left alone
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        monkeypatch.setattr(threads, "busy_cores", lambda cores: 2.0)
        assert threads.fit_threads() is None and torch.get_num_threads() == 2   # the user's choice wins
    finally:
        torch.set_num_threads(before)


def test_busy_cores_reads_proc_stat(monkeypatch):
    samples = iter([(100, 1000), (150, 1100)])   # 50 of 100 jiffies busy over the sample
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    assert abs(threads.busy_cores(2) - 1.0) < 1e-9
