"""Bad input to the API (presets, training arguments, checkpoints, devices, distances) and faults
(a full disk): each gives one error of a named type whose message names the offending thing and the
fix, before any work is done, and leaves nothing behind. (Bad data trees: tests/test_bad_inputs_data.py.)"""

from __future__ import annotations

import ast
import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from ctinv_utils.pipeline import presets
from ctinv_utils.errors import CTInvError, PresetError
from ctinv_utils.models import CNN10, load_denoiser
from ctinv_utils.models.checkpoints import CheckpointError, read_checkpoint
from ctinv_utils.settings import DeviceError, SettingsError, check_device
from ctinv_utils.synthesis.distances import get_distance
from ctinv_utils.training.loop import Trainer, TrainingDiverged, TrainingSettingsError, seeded_init
from ctinv_utils.training.methods import TrainConfig, build_method, denoiser_trainer

REPO = Path(__file__).resolve().parents[1]


# -- a tiny method and source for the training loop (no data set needed) ------------------------------
class ToyMethod:
    name = "toy"

    def __init__(self, width: int = 4, poison_at: int | None = None):
        self.config = {"toy": width}
        with seeded_init(0) as rng:
            self.net = nn.Linear(width, 1)
        self.generator = rng.generator
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01)
        self.poison_at = poison_at

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"net": self.opt}

    def step(self, next_batch, iteration):
        (x,) = next_batch()
        loss = self.net(x).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": float("nan") if iteration == self.poison_at else loss.item()}


class ToySource:
    def __init__(self, width: int = 4):
        self.width, self.calls = width, 0

    def next_batch(self, n):
        self.calls += 1
        return (torch.ones(n, self.width),)

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, d):
        self.calls = d["calls"]


# -- presets --------------------------------------------------------------------------------------------
def _preset(tmp_path, text: str, name: str = "bad") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _load_bad(tmp_path, text: str) -> str:
    path = _preset(tmp_path, text)
    with pytest.raises(PresetError) as err:
        presets.load_preset("bad", preset_dir=tmp_path)
    msg = str(err.value)
    assert str(path) in msg, msg  # the preset file is named
    assert len(msg.splitlines()) == 1, msg
    return msg


def test_shipped_presets_pass():
    assert set(presets.available_presets()) >= {"paper", "quick", "smoke"}
    for name in presets.available_presets():
        preset = presets.load_preset(name)
        assert preset["name"] == name


@pytest.mark.parametrize("text,names", [
    # a typo under common:
    ("common:\n  simulaton: {image_size: 128}\n", ["common.simulaton", "did you mean 'simulation'"]),
    # a typo inside a settings mapping under common:
    ("common:\n  simulation: {image_sise: 128}\n", ["common.simulation.image_sise", "image_size"]),
    # a typo inside a notebook's section, and one inside a nested training mapping
    ("notebooks:\n  03_image_domain_invariances: {max_itr: 3}\n",
     ["notebooks.03_image_domain_invariances.max_itr", "max_iter"]),
    ("notebooks:\n  02_denoiser_training:\n    cnn10: {iteratons: 3}\n",
     ["notebooks.02_denoiser_training.cnn10.iteratons", "iterations"]),
    # a section for a notebook that does not exist (05_figures was renamed 06_figures)
    ("notebooks:\n  05_figures: {panel_alpha: 0.5}\n", ["notebooks.05_figures", "06_figures"]),
    # a top-level typo
    ("seed: 0\nnotebook: {}\n", ["'notebook'", "notebooks"]),
    # a runtime parameter the runner would silently override
    ("common:\n  device: cuda\n", ["common.device", "--device"]),
])
def test_unknown_preset_key_is_named(tmp_path, text, names):
    msg = _load_bad(tmp_path, text)
    for name in names:
        assert name in msg, msg


@pytest.mark.parametrize("text,names", [
    # a string where a number belongs
    ("notebooks:\n  03_image_domain_invariances: {max_iter: '150'}\n",
     ["notebooks.03_image_domain_invariances.max_iter", "an integer", "'150'"]),
    ("notebooks:\n  04_natural_invariances: {alpha: 'half'}\n", ["04_natural_invariances.alpha", "a number"]),
    ("common:\n  simulation: {n_views: '180'}\n", ["common.simulation.n_views", "int"]),
    ("notebooks:\n  03_image_domain_invariances: {alphas: [0.1, '0.2']}\n",
     ["03_image_domain_invariances.alphas[1]", "a number"]),
    # a list where a mapping belongs, and the other way round
    ("notebooks:\n  02_denoiser_training: {cnn10: [1500, 16]}\n", ["02_denoiser_training.cnn10", "a mapping"]),
    ("common:\n  simulation: [128, 180]\n", ["common.simulation", "a mapping"]),
    ("notebooks:\n  03_image_domain_invariances: [1, 2]\n", ["notebooks.03_image_domain_invariances", "a mapping"]),
    ("notebooks:\n  04_natural_invariances: {natural_denoisers: {cnn10: 1}}\n",
     ["04_natural_invariances.natural_denoisers", "a list"]),
    # null where the parameter does not offer it; a bool where a number belongs; a bad top-level type
    ("notebooks:\n  03_image_domain_invariances: {max_iter: null}\n", ["max_iter", "got null"]),
    ("notebooks:\n  04_natural_invariances: {beta: true}\n", ["04_natural_invariances.beta", "a number"]),
    ("seed: '0'\n", ["seed", "an integer"]),
    # a value a settings dataclass refuses
    ("notebooks:\n  02_denoiser_training:\n    cnn10: {iterations: -5}\n",
     ["02_denoiser_training.cnn10", "iterations must be an integer >= 1"]),
])
def test_wrong_preset_type_names_key_and_expected_type(tmp_path, text, names):
    msg = _load_bad(tmp_path, text)
    for name in names:
        assert name in msg, msg


def test_null_where_the_notebook_offers_it_is_accepted(tmp_path):
    _preset(tmp_path, "notebooks:\n  03_image_domain_invariances: {crop: null}\n"
                      "  01_data: {noise_slices_per_patient: null}\n", "ok")
    assert presets.load_preset("ok", preset_dir=tmp_path)["notebooks"]["03_image_domain_invariances"]["crop"] is None


def test_bad_preset_fails_before_any_notebook_starts(tmp_path, monkeypatch):
    from ctinv_utils.pipeline import run

    _preset(tmp_path, "notebooks:\n  03_image_domain_invariances: {max_iter: '150'}\n", "typo")
    monkeypatch.setattr(run, "load_preset", functools.partial(presets.load_preset, preset_dir=tmp_path))
    monkeypatch.setattr(run, "execute_notebook", lambda *a, **k: pytest.fail("a notebook started"))
    with pytest.raises(PresetError, match="max_iter"):
        run.run("typo", device="cpu", progress=False, output_root=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- training arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,name", [
    ({"iterations": -1}, "iterations"), ({"iterations": 0}, "iterations"), ({"batch_size": 0}, "batch_size"),
    ({"checkpoint_every": 0}, "checkpoint_every"), ({"iterations": 2.5}, "iterations"),
    ({"batch_size": True}, "batch_size"),
])
def test_trainer_arguments_fail_before_any_work(tmp_path, kwargs, name):
    ckpt = tmp_path / "t.ckpt"
    ckpt.write_bytes(b"")  # would be a CheckpointError if it were read first
    source = ToySource()
    args = {"iterations": 3, "batch_size": 2, "checkpoint_every": 1, **kwargs}
    with pytest.raises(TrainingSettingsError, match=rf"^{name} must be an integer >= 1, got "):
        Trainer(ToyMethod(), source, ckpt, args["iterations"], args["batch_size"], args["checkpoint_every"])
    assert source.calls == 0 and ckpt.read_bytes() == b""


@pytest.mark.parametrize("kwargs,name", [
    ({"lr": 0}, "lr"), ({"lr": -1e-4}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": "1e-4"}, "lr"),
    ({"iterations": -1}, "iterations"), ({"batch_size": 0}, "batch_size"),
    ({"checkpoint_every": 0}, "checkpoint_every"),
    ({"adam_betas": [0.9]}, "adam_betas"),
])
def test_train_config_refuses_no_op_and_wrong_settings(kwargs, name):
    with pytest.raises(SettingsError) as err:  # TrainingSettingsError, or the settings type check
        TrainConfig.from_dict({"method": "cnn10", **kwargs})
    assert f"{name} must be" in str(err.value), str(err.value)
    with pytest.raises(TrainingSettingsError, match=rf"{name}"):
        TrainConfig(**kwargs)


def test_wganvgg_that_would_never_train_adversarially_is_refused():
    with pytest.raises(TrainingSettingsError, match=r"iterations \(5\) must exceed pretrain_iterations"):
        TrainConfig.from_dict({"method": "wganvgg", "iterations": 5, "pretrain_iterations": 5})
    with pytest.raises(SettingsError, match=r"gan_lr must be float or None, got '2e-5' \(str\)"):
        TrainConfig.from_dict({"method": "wganvgg", "gan_lr": "2e-5"})
    with pytest.raises(TrainingSettingsError, match="gan_lr must be a finite number > 0 or None"):
        TrainConfig.from_dict({"method": "wganvgg", "gan_lr": -1.0})


def test_untrained_model_is_never_cached(monkeypatch):
    from ctinv_utils.training import model_cache

    cfg = TrainConfig(iterations=3, batch_size=2, patch_size=40)
    cfg.iterations = 0  # changed after the config was checked
    with pytest.raises(TrainingSettingsError, match="iterations must be an integer >= 1, got 0.*untrained"):
        model_cache.train_or_load(cfg, None, "no-data", progress=False)
    final = model_cache.model_cache_path(cfg, "no-data")
    assert not final.exists() and not final.with_suffix(".ckpt").exists()
    t = Trainer(ToyMethod(), ToySource(), Path(os.environ["CTINV_CACHE"]) / "toy-zero.ckpt", 2, 1)
    t.iterations = 0  # set on the object (as NaturalInvariance.train does) after the checks
    with pytest.raises(TrainingSettingsError, match="iterations"):
        t.fit(progress=False)
    assert not t.checkpoint_path.exists()


# -- checkpoints -----------------------------------------------------------------------------------------
def _cnn10_file(tmp_path, nan: bool = False) -> Path:
    state = CNN10().state_dict()
    if nan:
        state["layers.2.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / ("nan.pt" if nan else "good.pt")
    torch.save(state, path)
    return path


def test_zero_length_checkpoint_is_one_line_naming_file_and_fix(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        load_denoiser("cnn10", path)
    msg = str(err.value)
    assert str(path) in msg and "empty (0 bytes)" in msg and "delete it" in msg and "re-download" in msg
    assert len(msg.splitlines()) == 1 and err.value.__cause__ is None  # no torch traceback attached


@pytest.mark.parametrize("keep", [0.5, 0.98, 10])
def test_truncated_checkpoint_is_one_line_naming_file_and_fix(tmp_path, keep):
    good = _cnn10_file(tmp_path).read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(good[:int(len(good) * keep)] if keep < 1 else good[:keep])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "truncated" in msg and "delete it" in msg, msg
    assert len(msg.splitlines()) == 1


def test_nan_weights_in_a_checkpoint_are_refused(tmp_path):
    path = _cnn10_file(tmp_path, nan=True)
    with pytest.raises(CheckpointError) as err:
        load_denoiser("cnn10", path)
    msg = str(err.value)
    assert str(path) in msg and "NaN" in msg and "layers.2.weight" in msg and "delete it" in msg
    load_denoiser("cnn10", _cnn10_file(tmp_path))  # a good one still loads


@pytest.mark.parametrize("damage", ["empty", "truncated", "nan", "foreign"])
def test_damaged_training_checkpoint_is_named_on_resume(tmp_path, damage):
    path = tmp_path / "toy.ckpt"
    Trainer(ToyMethod(), ToySource(), path, 2, 1, checkpoint_every=1).fit(progress=False)
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "nan":
        ck = torch.load(path, weights_only=True)
        ck["modules"]["net"]["weight"][0, 0] = float("nan")
        torch.save(ck, path)
    else:
        torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError) as err:
        Trainer(ToyMethod(), ToySource(), path, 4, 1, checkpoint_every=1)
    msg = str(err.value)
    assert str(path) in msg and "delete it" in msg and len(msg.splitlines()) == 1, msg


def test_every_torch_load_is_weights_only():
    """No torch.load in the package without weights_only=True (a checkpoint is untrusted input)."""
    offenders = []
    for py in (REPO / "ctinv_utils").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    offenders.append(f"{py.relative_to(REPO)}:{node.lineno}")
    assert offenders == [], offenders


# -- device ----------------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(DeviceError, match=r"'cuda' was asked for.*no CUDA GPU.*device='cpu'"):
        check_device("cuda")
    with pytest.raises(DeviceError, match="'cuda'"):
        build_method(TrainConfig(iterations=2, batch_size=2, patch_size=40), "cuda")
    with pytest.raises(DeviceError, match="'cuda:0'"):
        denoiser_trainer(TrainConfig(iterations=2, batch_size=2, patch_size=40), None, tmp_path / "c.ckpt", "cuda:0")
    with pytest.raises(DeviceError, match="Trainer device 'cuda'"):
        Trainer(ToyMethod(), ToySource(), tmp_path / "t.ckpt", 2, 1, device="cuda")
    from ctinv_utils.synthesis.adversarial import BIM
    from ctinv_utils.synthesis.invariances import Invariance
    from ctinv_utils.synthesis.natural import NaturalInvariance

    x, f = torch.zeros(1, 1, 32, 32), CNN10()
    with pytest.raises(DeviceError, match="Invariance device 'cuda'"):
        Invariance(x, f, "mse", 0.1, device="cuda")
    with pytest.raises(DeviceError, match="NaturalInvariance device 'cuda'"):
        NaturalInvariance(f, device="cuda")
    with pytest.raises(DeviceError, match="attack device 'cuda'"):
        BIM(x, f, eps_hu=10, step_hu=1, device="cuda")
    with pytest.raises(DeviceError, match="load_denoiser device 'cuda'"):
        load_denoiser("gauss_ri", device="cuda")
    assert isinstance(DeviceError("x"), CTInvError)
    with pytest.raises(ValueError, match="'gpu' is not a device"):
        check_device("gpu")
    assert check_device("auto") == "cpu" and check_device(torch.device("cpu")) == "cpu"


# -- distances -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,size,minimum", [("dssim", 10, 11), ("vgg", 15, 16)])
@pytest.mark.filterwarnings("ignore:VGG. random init")
def test_distance_on_too_small_images_says_the_minimum(name, size, minimum):
    d = get_distance(name, vgg_allow_random=True)
    small = torch.zeros(1, 1, size, size)
    with pytest.raises(ValueError, match=rf"at least {minimum}x{minimum} px.*got {size}x{size}"):
        d(small, small)
    with pytest.raises(ValueError, match=rf"at least {minimum}x{minimum} px"):
        from ctinv_utils.synthesis.distances import against
        against(d, small)  # when an invariance is set up, not mid-run
    ok = torch.zeros(1, 1, minimum, minimum)
    assert d(ok, ok).shape == (1,)


def test_distance_shape_errors_name_the_shapes():
    d = get_distance("mse")
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\), got \(32, 32\)"):
        d(torch.zeros(32, 32), torch.zeros(32, 32))
    with pytest.raises(ValueError, match=r"one shape, got \(1, 1, 32, 32\) and \(1, 1, 32, 30\)"):
        d(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 30))
    with pytest.raises(ValueError, match="win_size must be an odd integer"):
        from ctinv_utils.synthesis.distances import DSSIM
        DSSIM(win_size=10)


# -- divergence ------------------------------------------------------------------------------------------
def test_divergence_names_only_a_checkpoint_that_exists(tmp_path):
    path = tmp_path / "toy.ckpt"
    # no checkpoint written before the NaN
    with pytest.raises(TrainingDiverged) as err:
        Trainer(ToyMethod(poison_at=1), ToySource(), path, 5, 1, checkpoint_every=4).fit(progress=False)
    assert str(path) not in str(err.value) and "no checkpoint was written yet" in str(err.value)
    assert not path.exists()
    # a checkpoint written, then removed by someone else before the NaN
    t = Trainer(ToyMethod(poison_at=3), ToySource(), path, 5, 1, checkpoint_every=2)
    orig = t._save_checkpoint

    def save_then_lose():
        orig()
        path.unlink()

    t._save_checkpoint = save_then_lose
    with pytest.raises(TrainingDiverged) as err:
        t.fit(progress=False)
    assert str(path) not in str(err.value) and not path.exists()
    # a checkpoint that exists is named with its iteration
    with pytest.raises(TrainingDiverged, match=r"last good checkpoint \(iteration 2\) is kept at .*toy\.ckpt"):
        Trainer(ToyMethod(poison_at=3), ToySource(), path, 5, 1, checkpoint_every=2).fit(progress=False)
    assert torch.load(path, weights_only=True)["iteration"] == 2


# -- a full disk -----------------------------------------------------------------------------------------
_DISK_FULL_SCRIPT = r'''
import json, os, sys, torch
from torch import nn
from ctinv_utils import atomic
from ctinv_utils.models.checkpoints import CheckpointWriteError, save_file
from ctinv_utils.training.loop import Trainer, seeded_init
d = sys.argv[1]
out = {}
def files():
    return sorted(os.listdir(d))
old = os.path.join(d, "model.pt")
save_file(old, {"w": torch.zeros(10)})               # a small checkpoint fits
before = open(old, "rb").read()
try:
    save_file(old, {"w": torch.zeros(600_000)})       # 2.4 MB into a 1 MiB disk
except CheckpointWriteError as e:
    out["save_file"] = {"type": type(e).__name__, "msg": str(e), "errno": e.errno}
out["old_intact"] = open(old, "rb").read() == before
try:
    atomic.torch_save(os.path.join(d, "raw.pt"), {"w": torch.zeros(600_000)})
except BaseException as e:
    chain, x = [], e
    while x is not None:
        chain.append(getattr(x, "errno", None)); x = x.__cause__ or x.__context__
    out["atomic"] = {"type": type(e).__name__, "msg": str(e).splitlines()[0], "errnos": chain}
class Big:
    name = "big"; config = {"big": 1}
    def __init__(self):
        with seeded_init(0) as rng:
            self.net = nn.Linear(600, 600)
        self.generator = rng.generator
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.0)
    def modules(self): return {"net": self.net}
    def optimizers(self): return {"net": self.opt}
    def step(self, next_batch, it): next_batch(); return {"loss": 0.0}
class Src:
    def next_batch(self, n): return (torch.zeros(n, 1),)
    def state_dict(self): return {}
    def load_state_dict(self, s): pass
try:
    Trainer(Big(), Src(), os.path.join(d, "train.ckpt"), 2, 1, checkpoint_every=1).fit(progress=False)
except CheckpointWriteError as e:
    out["trainer"] = {"type": type(e).__name__, "msg": str(e)}
out["files"] = files()
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def disk_full(tmp_path_factory):
    """Run the writes in a 1 MiB tmpfs, mounted in a private mount namespace (so nothing outlives the
    test); skipped where the machine allows neither."""
    if sys.platform != "linux" or shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs Linux with unshare and mount to make a small tmpfs")
    mnt = tmp_path_factory.mktemp("tmpfs")
    script = tmp_path_factory.mktemp("script") / "disk_full.py"
    script.write_text(_DISK_FULL_SCRIPT)
    py = f"exec {sys.executable} {script} {mnt}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    opts = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    proc = subprocess.run(["unshare", *opts, "sh", "-c", f"mount -t tmpfs -o size=1m ctinv-test {mnt} && {py}"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 and not lines and ("mount" in proc.stderr or "unshare" in proc.stderr):
        pytest.skip(f"this machine does not allow mounting a tmpfs: {proc.stderr.strip()[:200]}")
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][len("RESULT "):])


def test_disk_full_checkpoint_write_is_clear_and_leaves_nothing(disk_full):
    r = disk_full
    assert r["save_file"]["type"] == "CheckpointWriteError" and r["save_file"]["errno"] == 28
    msg = r["save_file"]["msg"]
    assert "model.pt" in msg and "no space left" in msg and "free some space" in msg and "nothing was written" in msg
    assert r["old_intact"]  # the previous checkpoint is untouched
    assert "train.ckpt" in r["trainer"]["msg"] and "no space left" in r["trainer"]["msg"]
    assert r["files"] == ["model.pt"], r["files"]  # no temporary or half-written file


def test_disk_full_through_atomic_leaves_no_temp_file(disk_full):
    """ctinv_utils.atomic itself removes its temporary file; the disk-full cause (errno 28) stays in the
    exception chain (torch re-raises it as a RuntimeError), which checkpoints.save_file turns into
    one clear line."""
    a = disk_full["atomic"]
    assert 28 in a["errnos"], a
    assert not any(f.startswith(".raw.pt") or f == "raw.pt" for f in disk_full["files"])


# -- the test session's own cache ------------------------------------------------------------------------
def test_session_cache_is_removed_when_the_session_ends(tmp_path):
    """A pytest session with our conftest removes its private cache at the end, and the next one
    removes the folder of a session that was killed (its pid is gone)."""
    project = tmp_path / "proj"
    project.mkdir()
    shutil.copy(REPO / "tests" / "conftest.py", project / "conftest.py")
    (project / "test_one.py").write_text(textwrap.dedent('''
        import os, pathlib
        def test_writes():
            cache = pathlib.Path(os.environ["CTINV_CACHE"])
            (cache / "x.bin").write_bytes(b"0" * 1000)
            (pathlib.Path(__file__).parent / "cache_path.txt").write_text(str(cache))
        '''))
    tmp = tmp_path / "systemp"
    tmp.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan = tmp / f"ctinv-test-cache-{dead}-killed"
    orphan.mkdir()
    foreign = tmp / "ctinv-test-cache-old0style"  # not ours to judge: left alone
    foreign.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    env.pop("CTINV_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cache = Path((project / "cache_path.txt").read_text())
    assert cache.parent == tmp and not cache.exists()
    assert not orphan.exists() and foreign.exists()


def test_cache_and_output_files_get_the_users_normal_permissions(tmp_path):
    """Temp-file-then-rename must not leave mkstemp's 0600 / mkdtemp's 0700: a group sharing a cache
    reads what another member wrote (umask 022 -> 0644 files, 0755 folders; 002 -> 0664/0775)."""
    import stat

    from ctinv_utils import atomic

    old = os.umask(0o022)
    try:
        for umask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o002, 0o664, 0o775)):
            os.umask(umask)
            f = atomic.write_bytes(tmp_path / f"f{umask}.bin", b"x")
            with atomic.atomic_directory(tmp_path / f"d{umask}") as d:
                (d / "a").write_text("a")
            assert stat.S_IMODE(f.stat().st_mode) == file_mode
            assert stat.S_IMODE((tmp_path / f"d{umask}").stat().st_mode) == dir_mode
    finally:
        os.umask(old)
