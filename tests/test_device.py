"""Devices: one that does not exist here is one line, not a traceback."""

import pytest
import torch


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
