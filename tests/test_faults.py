"""Issue 14's fault test for a training run (the shared Trainer loop, through the natural-invariance
generator, which trains on plain tensors) and a synthesis: each is SIGKILLed in a subprocess at a
seeded random point, then run again; the result equals an uninterrupted run, no temporary file is
left, and no child process survives. (Data generation: tests/test_bad_inputs_data.py.)"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

TRAIN = r"""
import sys, time, torch
from pathlib import Path
from ctinv_utils.synthesis.natural import NaturalInvariance
out = Path(sys.argv[1])
torch.manual_seed(0)
f = torch.nn.Conv2d(1, 1, 3, padding=1)
patches = 1.0 + 0.2 * torch.randn(32, 1, 32, 32, generator=torch.Generator().manual_seed(0))
nat = NaturalInvariance(f, "mse", alpha=0.5, beta=0.01, patch_size=32, seed=0, channels=(8, 8, 8),
                        critic_width=0.125, margin=2)
print("START", flush=True)
nat.train(patches, 400, batch_size=4, checkpoint=out / "nat.ckpt", checkpoint_every=20, progress=False)
nat.save(out / "nat.pt")
print("DONE", flush=True)
"""

SYNTH = r"""
import sys, torch
from pathlib import Path
from ctinv_utils.synthesis.invariances import Invariance
out = Path(sys.argv[1])
torch.manual_seed(0)
f = torch.nn.Conv2d(1, 1, 5, padding=2)
x = 1.0 + 0.2 * torch.randn(1, 1, 48, 48, generator=torch.Generator().manual_seed(1))
inv = Invariance(x, f.eval(), "mse", alpha=[0.01, 0.1], seed=0, lr=0.03)
print("START", flush=True)
for _ in range(8):  # saved after every chunk, as a long job would checkpoint
    inv.synthesize(25, progress=False, lr_schedule="constant")
    inv.save(out / "inv.pt")
print("DONE", flush=True)
"""


def _run(script, out: Path, kill_after: float | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        out_text, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "DONE" in out_text, err[-2000:]
        return proc
    assert proc.stdout.readline().strip() == "START", proc.stderr.read()[-2000:]
    time.sleep(kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc


def _reference_and_killed(script: str, tmp_path: Path, kill_after: float):
    """Run ``script`` to the end in ``ref/`` and SIGKILL a second run of it in ``hurt/`` after
    ``kill_after`` s: (ref, hurt, the killed process)."""
    ref, hurt = tmp_path / "ref", tmp_path / "hurt"
    ref.mkdir(), hurt.mkdir()
    _run(script, ref)
    return ref, hurt, _run(script, hurt, kill_after=kill_after)


def _no_leftovers(folder: Path):
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp" in p.name]


@pytest.mark.reproduction
@pytest.mark.parametrize("seed", [3])
def test_training_killed_at_a_random_point_resumes_to_the_same_weights(tmp_path, seed):
    ref, hurt, killed = _reference_and_killed(TRAIN, tmp_path, random.Random(seed).uniform(0.5, 3.0))
    assert killed.returncode == -signal.SIGKILL
    _run(TRAIN, hurt)  # the same command again: resumes from the checkpoint
    a, b = (torch.load(d / "nat.pt", weights_only=True) for d in (ref, hurt))
    for k in a["generator"]:
        assert torch.equal(a["generator"][k], b["generator"][k]), k
    _no_leftovers(hurt)


@pytest.mark.reproduction
@pytest.mark.parametrize("seed", [3])
def test_synthesis_killed_at_a_random_point_leaves_a_whole_file_and_reruns_identically(tmp_path, seed):
    ref, hurt, _ = _reference_and_killed(SYNTH, tmp_path, random.Random(seed).uniform(0.2, 2.0))
    if (hurt / "inv.pt").exists():  # whatever was saved before the kill is a whole, loadable file
        state = torch.load(hurt / "inv.pt", weights_only=True)
        assert state["iteration"] % 25 == 0
    _no_leftovers(hurt)
    _run(SYNTH, hurt)
    a, b = (torch.load(d / "inv.pt", weights_only=True) for d in (ref, hurt))
    assert torch.equal(a["param"], b["param"]) and a["iteration"] == b["iteration"] == 200
