"""Reliability (issue 28): nonsense refused before any work, clear one-line errors at the edges
(refused or truncated files, a full or read-only cache, unknown names, truncated DICOM, bad indices),
every cache entry checksummed, and an HTML explorer that survives any text it embeds. Each error is a
CTInvError (or a ValueError subclass of it) in one line naming the offending thing and the fix."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ctinv_utils import atomic
from ctinv_utils.errors import BadArgumentError, CacheNotWritableError, CTInvError, DicomFileError, UntrainedError
from ctinv_utils.models import GaussRI
from ctinv_utils.units import hu_to_norm


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert len(msg.splitlines()) == 1, msg
    assert isinstance(exc, CTInvError), type(exc)
    return msg


class NeverCalled(nn.Module):
    """A denoiser that fails the test when it runs: a refusal must come before any work."""

    def forward(self, x):
        pytest.fail("the denoiser ran before the bad argument was refused")


@pytest.fixture
def x():
    """A normalized 32 px slice: soft tissue around -540 HU with 150 HU of texture."""
    return 0.3 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))


# -- 1. the API refuses nonsense before any work ---------------------------------------------------------
@pytest.mark.parametrize("lr", [0.0, 0, -1e-3, float("nan"), float("inf"), "0.01", True])
def test_invariance_refuses_a_learning_rate_that_cannot_move_the_image(x, lr):
    from ctinv_utils.synthesis.invariances import Invariance

    with pytest.raises(BadArgumentError) as err:
        Invariance(x, NeverCalled(), "mse", 0.1, lr=lr)
    msg = one_line(err.value)
    assert msg.startswith("lr must be a finite number > 0") and repr(lr) in msg, msg
    inv = Invariance(x, GaussRI(), "mse", 0.1)
    with pytest.raises(BadArgumentError, match="lr must be a finite number > 0"):
        inv.synthesize(3, lr=0.0, progress=False)
    assert inv.iteration == 0


@pytest.mark.parametrize("alpha,values,single", [
    (torch.tensor(0.05), [float(np.float32(0.05))], True),
    (np.float32(0.05), [float(np.float32(0.05))], True),
    (np.float64(0.05), [0.05], True),
    (np.array(0.05), [0.05], True),
    (np.int64(0), [0.0], True),
    (torch.tensor([0.05, 0.2], dtype=torch.float64), [0.05, 0.2], False),
    (np.array([0.05, 0.2]), [0.05, 0.2], False),
    ([torch.tensor(0.05, dtype=torch.float64), np.float64(0.2), 1], [0.05, 0.2, 1.0], False),
    ((0.05,), [0.05], False),
])
def test_alpha_in_any_numeric_form_is_accepted(x, alpha, values, single):
    from ctinv_utils.synthesis.invariances import Invariance

    inv = Invariance(x, GaussRI(), "mse", alpha)
    assert inv.alpha_values == values and inv.single_alpha is single
    assert torch.equal(inv.alphas, torch.tensor(values, dtype=torch.float32))
    assert inv.result.shape == (len(values), 1, 32, 32)


@pytest.mark.parametrize("alpha,words", [
    (float("nan"), "alpha must be finite and >= 0"), (float("inf"), "alpha must be finite and >= 0"),
    (-0.1, "alpha must be finite and >= 0"), (True, "the boolean True"), (np.bool_(True), "the boolean True"),
    (torch.tensor(True), "the boolean True"), ("0.1", "got the string '0.1'"), ([0.1, "x"], "got the string 'x'"),
    ([], "empty sequence"), (torch.tensor([[0.1]]), "array of shape (1, 1)"), (None, "got None"),
])
def test_bad_alpha_is_refused_naming_the_value(x, alpha, words):
    from ctinv_utils.synthesis.invariances import Invariance

    with pytest.raises(BadArgumentError) as err:
        Invariance(x, NeverCalled(), "mse", alpha)
    assert words in one_line(err.value), str(err.value)


def test_alpha_that_cannot_give_an_invariance_is_refused_with_the_reason(x):
    """Every distance is at most 1: from alpha = 100 on the whole output term is within the 1 %
    convergence tolerance of a loss near -alpha, so such a run 'converges' whatever the output does."""
    from ctinv_utils.synthesis.invariances import MAX_ALPHA, Invariance

    for alpha in (100, [0.05, 1e3], 1e9):
        with pytest.raises(BadArgumentError) as err:
            Invariance(x, NeverCalled(), "mse", alpha)
        msg = one_line(err.value)
        assert "at most 1" in msg and f"use alpha < {MAX_ALPHA:g}" in msg and "HU range's bounds" in msg, msg
    # what the presets, notebooks and tests use stays accepted
    Invariance(x, GaussRI(), "mse", [0.0005, 0.002, 0.2, 0.5, 1.0, 5.0, 99.0])


def test_zero_start_noise_that_cannot_move_is_refused(x):
    from ctinv_utils.synthesis.invariances import Invariance

    with pytest.raises(BadArgumentError) as err:
        Invariance(x, NeverCalled(), "mse", 0.1, init_noise_std=0)
    msg = one_line(err.value)
    assert "init_noise_std=0" in msg and "zero gradient" in msg and "init_noise_std > 0" in msg
    with pytest.raises(BadArgumentError, match="init_noise_std must be a finite number >= 0"):
        Invariance(x, NeverCalled(), "mse", 0.1, init_noise_std=-0.1)


def test_image_in_hu_is_refused_naming_hu_to_norm():
    from ctinv_utils.synthesis.adversarial import BIM
    from ctinv_utils.synthesis.invariances import Invariance

    image_hu = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 30 + 40
    for make in (lambda im: Invariance(im, NeverCalled(), "mse", 0.1), lambda im: BIM(im, NeverCalled())):
        with pytest.raises(BadArgumentError) as err:
            make(image_hu)
        msg = one_line(err.value)
        assert "ctinv_utils.units.hu_to_norm" in msg and "looks like HU" in msg and "1 unit = 502 HU" in msg, msg
    with pytest.raises(BadArgumentError, match="hu_to_norm"):
        Invariance(torch.full((1, 1, 32, 32), -1000.0), NeverCalled())  # air in HU
    # real CT in normalized units passes: lung and air at -1000 HU, padding at -3024 HU, bone at 3071 HU
    ramp = torch.linspace(-3024.0, 3071.0, 32 * 32).reshape(1, 1, 32, 32)
    Invariance(hu_to_norm(ramp), GaussRI(), "mse", 0.1)
    Invariance(hu_to_norm(torch.full((1, 1, 32, 32), -1000.0)), GaussRI(), "mse", 0.1)


def test_untrained_natural_generator_is_refused_naming_train():
    from ctinv_utils.synthesis.natural import NaturalInvariance

    small = dict(channels=(8, 8, 8), critic_width=0.125, patch_size=32, margin=2)
    nat = NaturalInvariance(nn.Identity(), **small)
    x = 0.3 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(UntrainedError) as err:
        nat.sample(x, 2)
    msg = str(err.value)
    assert "never trained" in msg and ".train(" in msg and "train_or_load_natural" in msg and "\n" not in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nat.sample(x, 2, untrained=True)  # meant: silent
        nat.train(0.3 * torch.randn(8, 1, 32, 32), 1, batch_size=4, progress=False)
        nat.sample(x, 2)  # trained: silent


@pytest.mark.parametrize("kwargs,smallest,multiple", [
    ({"patch_size": 16}, 32, 16), ({"patch_size": 8}, 32, 16), ({"patch_size": 40}, 32, 16),
    ({"patch_size": 24, "channels": (8, 8, 8), "margin": 2}, 32, 4),
    ({"patch_size": 36, "channels": (8, 8, 8), "margin": 20}, 44, 4),
])
def test_too_small_patch_size_names_patch_size_and_its_minimum(kwargs, smallest, multiple):
    from ctinv_utils.synthesis.natural import NaturalInvariance, min_patch_size

    with pytest.raises(ValueError) as err:
        NaturalInvariance(NeverCalled(), **kwargs)
    msg = str(err.value)
    assert msg.startswith(f"patch_size {kwargs['patch_size']} does not work"), msg
    assert f"multiple of {multiple}" in msg and f"at least {smallest}" in msg and "margin" not in msg.split(":")[0]
    stages = len(kwargs.get("channels", (1,) * 5))
    assert min_patch_size(stages, kwargs.get("margin", 8)) == smallest
    NaturalInvariance(nn.Identity(), **{**kwargs, "patch_size": smallest})  # the minimum works


# -- 2. clear errors at the edges ------------------------------------------------------------------------
class _Evil:
    """Pickles as a call of os.mkdir: a file that would run code when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _refused_message(exc: BaseException, path: Path) -> str:
    msg = one_line(exc)
    assert str(path) in msg and "refused: not a plain tensor file" in msg, msg
    assert "truncated" not in msg and "weights_only" not in msg, msg  # never torch's advice to switch it off
    return msg


def test_pickled_files_are_refused_not_called_truncated(tmp_path):
    from ctinv_utils.models import load_denoiser
    from ctinv_utils.models.checkpoints import CheckpointError, load_file
    from ctinv_utils.models.vgg import VGGWeightsError, load_vgg
    from ctinv_utils.synthesis.natural import NaturalInvariance

    marker = tmp_path / "the-payload-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _Evil(marker)}, evil)
    with pytest.raises(CheckpointError) as err:
        load_file(evil)
    msg = _refused_message(err.value, evil)
    assert "posix.mkdir" in msg and "re-download" in msg, msg
    with pytest.raises(CheckpointError) as err:
        load_denoiser("cnn10", evil)
    _refused_message(err.value, evil)
    with pytest.raises(CheckpointError) as err:
        NaturalInvariance.load(evil, nn.Identity())
    msg = _refused_message(err.value, evil)
    assert "saved NaturalInvariance" in msg and "train again" in msg
    with pytest.raises(VGGWeightsError) as err:
        load_vgg("vgg16", path=evil)
    msg = _refused_message(err.value, evil)
    assert "VGG16 weights file" in msg and "download" in msg
    assert not marker.exists()  # nothing ran


def test_truncated_files_say_truncated(tmp_path):
    from ctinv_utils.models.checkpoints import CheckpointError, load_file
    from ctinv_utils.models.vgg import VGGWeightsError, load_vgg
    from ctinv_utils.synthesis.natural import NaturalInvariance

    whole = tmp_path / "whole.pt"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for load in (load_file, lambda p: NaturalInvariance.load(p, nn.Identity()), lambda p: load_vgg("vgg16", path=p)):
        with pytest.raises((CheckpointError, VGGWeightsError)) as err:
            load(cut)
        msg = one_line(err.value)
        assert str(cut) in msg and "truncated" in msg and "refused" not in msg and "weights_only" not in msg, msg


def _fake_generate(exc: OSError):
    def generate(cfg, out_root, **kw):  # as pydicom's save_as fails half-way through the data set
        (Path(out_root) / "LDCT-and-Projection-data").mkdir(parents=True)
        (Path(out_root) / "LDCT-and-Projection-data" / "half.dcm").write_bytes(b"\0" * 64)
        raise exc
    return generate


@pytest.mark.parametrize("code,error,words", [
    (errno.ENOSPC, atomic.DiskFullError, ["no space left", "free some space"]),
    (errno.EDQUOT, atomic.DiskFullError, ["no space left"]),
    (errno.EROFS, CacheNotWritableError, ["is not writable", "make it writable"]),
    (errno.EACCES, CacheNotWritableError, ["is not writable"]),
])
def test_full_or_read_only_cache_names_ctinv_cache(tmp_path, monkeypatch, code, error, words):
    from ctinv_utils.data import simulated

    monkeypatch.setenv("CTINV_CACHE", str(tmp_path))
    failure = OSError(code, os.strerror(code), str(tmp_path / "simulated" / "x.dcm"))
    monkeypatch.setattr(simulated, "generate", _fake_generate(failure))
    cfg = simulated.SimulationConfig(image_size=64, n_views=32, patients_per_region=1, min_slices=1, max_slices=2)
    with pytest.raises(error) as err:
        simulated.simulated_data_root(cfg, progress=False)
    msg = one_line(err.value)
    assert "CTINV_CACHE" in msg and "simulated data set" in msg and str(tmp_path) in msg, msg
    for w in words:
        assert w in msg, msg
    assert err.value.errno == code and isinstance(err.value, OSError)
    assert not list((tmp_path / "simulated").glob(".*.tmp")) and not (tmp_path / "simulated" / cfg.hash).exists()


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_natural_training_without_checkpoint_keeps_its_temporary_in_the_cache(tmp_path, monkeypatch):
    """A killed training's folder (its process is gone) is removed when the next training starts;
    a live process's and another host's are left alone; a finished object removes its own."""
    import gc
    import tempfile

    from ctinv_utils.synthesis import natural
    from ctinv_utils.synthesis.natural import NaturalInvariance

    monkeypatch.setenv("CTINV_CACHE", str(tmp_path / "cache"))
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    tmp_path = tmp_path / "cache"
    parent = tmp_path / "natural" / natural.TRAINING_DIR
    host = natural._host()
    killed = parent / f"{host}-{_dead_pid()}-0000aaaa"
    alive = parent / f"{host}-{os.getppid()}-0000bbbb"
    foreign = parent / f"other_host-{_dead_pid()}-0000cccc"
    for d in (killed, alive, foreign):
        d.mkdir(parents=True)
        (d / "natural.ckpt").write_bytes(b"x")
    seen = []
    orig = natural.Trainer.fit

    def fit(self, progress=True):
        seen.append(Path(self.checkpoint_path))
        return orig(self, progress)

    monkeypatch.setattr(natural.Trainer, "fit", fit)
    nat = NaturalInvariance(nn.Identity(), channels=(8, 8, 8), critic_width=0.125, patch_size=32, margin=2)
    nat.train(0.3 * torch.randn(8, 1, 32, 32), 2, batch_size=4, checkpoint_every=1, progress=False)
    own = seen[0].parent
    assert own.parent == parent and own.name.startswith(f"{host}-{os.getpid()}-") and own.is_dir()
    assert not killed.exists() and alive.exists() and foreign.exists()
    del nat
    gc.collect()
    assert not own.exists()  # removed with its object
    assert list(system_tmp.iterdir()) == []  # nothing in $TMPDIR


def test_export_unknown_names_list_the_known_ones(tmp_path, capsys):
    from ctinv_utils.tools.export import main

    art = tmp_path / "art"
    art.mkdir()
    assert main(["--preset", "t", "--artifacts", str(art), "--out", str(tmp_path / "d"), "--denoiser", "nosuch"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown denoiser 'nosuch'" in err, err
    assert "cnn10" in err and "wganvgg" in err and "gauss_ri" in err and "ldctbench:redcnn" in err and "notebook" not in err
    assert main(["--preset", "t", "--artifacts", str(art), "--out", str(tmp_path / "d"), "--distance", "l2"]) == 1
    err = capsys.readouterr().err.strip()
    assert "unknown distance 'l2'" in err and "mse, dssim, vgg" in err, err
    assert main(["--preset", "nosuch", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown preset 'nosuch'" in err and "quick" in err and "--only" not in err, err
    assert not (tmp_path / "d").exists()


def _slice(path: Path) -> Path:
    from ctinv_utils.data.dicom_io import write_ct_slice

    return write_ct_slice(path, np.full((16, 16), 40.0), patient_id="L001", z_mm=0.0, pixel_mm=0.7, instance=1,
                          series_description="Full Dose Images", study_uid="1.2.3", series_uid="1.2.3.4")


def test_truncated_dicom_says_truncated(tmp_path):
    from ctinv_utils.data.dicom_io import read_slice_header, read_slice_hu

    whole = _slice(tmp_path / "whole.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    for keep in (0, 100, 132, 300, 400, 500, 700, len(whole) - 300, len(whole) - 2):
        cut.write_bytes(whole[:keep])
        for read in ((read_slice_hu,) if keep > len(whole) - 512 else (read_slice_header, read_slice_hu)):
            with pytest.raises(DicomFileError) as err:
                read(cut)
            msg = one_line(err.value)
            assert str(cut) in msg and "truncated" in msg and "re-download" in msg and "modality" not in msg, (keep, msg)


def test_reversed_hu_range_is_an_error_on_the_argument(tmp_path):
    from ctinv_utils.data.dataset import load_data
    from ctinv_utils.data.dicom_io import read_slice_hu

    for bad, words in (((4000, -3100), "swap them: hu_range=(-3100, 4000)"), ((0, 0), "widen it"),
                       ((0, float("nan")), "finite"), ("wide", "must be (low, high) in HU")):
        with pytest.raises(BadArgumentError) as err:
            load_data(tmp_path / "no-data-here", hu_range=bad)  # refused before the root is looked at
        msg = one_line(err.value)
        assert msg.startswith("hu_range") and words in msg and "header" not in msg, msg
    with pytest.raises(BadArgumentError, match="swap them"):
        read_slice_hu(_slice(tmp_path / "s.dcm"), hu_range=(4000, -3100))


def test_slice_index_out_of_range_names_the_patient_and_the_range(tmp_path):
    from ctinv_utils.data.dataset import PairedCTData
    from ctinv_utils.data.dicom_io import discover_patients, write_patient

    full = np.zeros((3, 16, 16), dtype=np.float32)
    write_patient(tmp_path, "L001", full + 5, full, np.arange(3, dtype=float), 0.7)
    data = PairedCTData(discover_patients(tmp_path), "test")
    assert data.slice_hu(0, 2)[0].shape == (16, 16) and data.slice_hu(0, -1)[0].shape == (16, 16)
    with pytest.raises(BadArgumentError) as err:
        data.slice_hu(0, 99)
    msg = one_line(err.value)
    assert "patient L001" in msg and "has 3 slices" in msg and "slice_index 99" in msg and "0..2" in msg, msg
    with pytest.raises(BadArgumentError, match=r"patient index 5 is outside 0\.\.0: the data holds 1 patients \(L001\)"):
        data.slice_hu(5, 0)
    with pytest.raises(BadArgumentError, match=r"data.index_of\('L001'\)"):
        data.slice_hu("L001", 0)


# -- 3. every cache entry is checksummed -----------------------------------------------------------------
def _damage(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_damaged_natural_generator_cache_entry_is_reported_and_retrained(tmp_path, monkeypatch):
    from ctinv_utils.synthesis.natural import NaturalInvariance, train_or_load_natural

    monkeypatch.setenv("CTINV_CACHE", str(tmp_path))
    patches = 0.3 * torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(1))

    def run():
        nat = NaturalInvariance(nn.Identity(), channels=(8, 8, 8), critic_width=0.125, patch_size=32, margin=2)
        return train_or_load_natural(nat, patches, "test-patches", 2, batch_size=4, progress=False)

    first, path, loaded = run()
    assert not loaded and path.is_file() and atomic.checksum_path(path).is_file()
    weights = {k: v.clone() for k, v in first.net.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact entry loads without a word
        again, _, loaded = run()
    assert loaded
    for damage, words in ((_damage, "SHA-256"), (lambda p: atomic.checksum_path(p).unlink(), "no checksum recorded")):
        damage(path)
        with pytest.warns(UserWarning) as record:
            retrained, _, loaded = run()
        msg = " ".join(str(r.message) for r in record)
        assert not loaded and str(path) in msg and words in msg and "trained again" in msg, msg
        assert atomic.checksum_problem(path) is None  # the new entry is recorded again
        for k, v in retrained.net.state_dict().items():
            assert torch.equal(v, weights[k])  # retrained to the same weights


def test_explorer_disk_cache_is_checksummed_and_a_damaged_entry_recomputed(tmp_path, x, monkeypatch):
    from ctinv_utils.synthesis.explorer import InvarianceExplorer
    from ctinv_utils.synthesis.invariances import Invariance

    def explorer():
        return InvarianceExplorer(x, {"gauss_ri": GaussRI()}, ["mse"], [0.1], max_iter=2, progress=False,
                                  cache_dir=tmp_path)

    first = explorer().result("gauss_ri", "mse", 0.3)
    (disk,) = tmp_path.glob("*/*/gauss_ri_mse_0.3.npy")
    assert atomic.checksum_problem(disk) is None
    with monkeypatch.context() as m:  # intact: read from disk, nothing computed, nothing said
        m.setattr(Invariance, "synthesize", lambda *a, **k: pytest.fail("recomputed an intact cached result"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.array_equal(explorer().result("gauss_ri", "mse", 0.3), first)
    for damage, words in ((_damage, "SHA-256"), (lambda p: atomic.checksum_path(p).unlink(), "no checksum recorded"),
                          (lambda p: p.write_bytes(b"not numpy"), "SHA-256")):
        damage(disk)
        with pytest.warns(UserWarning) as record:
            again = explorer().result("gauss_ri", "mse", 0.3)
        msg = str(record[0].message)
        assert str(disk) in msg and words in msg and "computed again" in msg, msg
        assert np.array_equal(again, first) and atomic.checksum_problem(disk) is None
    with pytest.raises(BadArgumentError, match="alpha 1000 cannot give an invariance"):
        explorer().result("gauss_ri", "mse", 1000.0)


# -- 4. the HTML explorer escapes what it embeds -----------------------------------------------------------
HOSTILE = "<!-- <script>alert('x')</script> & \u2028 </SCRIPT> ]]> é"


def _entries():
    x = np.zeros((16, 16))
    return {("cnn10", "mse"): {"x": x, "f_x": x, "x_inv": x[None] + 5, "f_x_inv": x[None] + 1, "alphas": [0.05]}}


def test_explorer_html_escapes_embedded_text_for_script_and_html(tmp_path):
    from ctinv_utils.figures.explorer_html import write_explorer_html

    path = write_explorer_html(_entries(), tmp_path / "e.html", title=f"t {HOSTILE}", caption=HOSTILE,
                               provenance={"preset": HOSTILE, "note": "<script>", "versions": {"a": "</script>"}})
    text = path.read_text(encoding="utf-8")
    data_block = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S).group(1)
    # nothing inside the data block can end it or open a comment or another script
    assert not re.search(r"[<>&]", data_block), data_block[:200]
    assert json.loads(data_block)["provenance"] == {"preset": HOSTILE, "note": "<script>", "versions": {"a": "</script>"}}
    # exactly the page's own two script elements, each closed once
    assert len(re.findall(r"<script\b", text, re.I)) == 2 and len(re.findall(r"</script", text, re.I)) == 2
    assert "<!--" not in text
    assert f"t {HOSTILE}".replace("<", "&lt;").split("&")[0] in text  # the title is text, escaped
    assert "&lt;!-- &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp;" in text
    # a banner shows until the script has drawn the page (and says why when the data cannot be read)
    assert 'id="load-error"' in text and '$("load-error").hidden = true' in text
    assert "its embedded data could not be read" in text


def _chromium() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("no Playwright")
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if exe is None:
        pytest.skip("no Chromium: apt-get install chromium")
    return exe


def test_explorer_html_with_hostile_provenance_draws_and_a_damaged_one_shows_a_banner(tmp_path):
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    from ctinv_utils.figures.explorer_html import write_explorer_html

    good = write_explorer_html(_entries(), tmp_path / "good.html", title="t", caption=HOSTILE,
                               provenance={"preset": HOSTILE})
    damaged = tmp_path / "damaged.html"
    text = good.read_text(encoding="utf-8")
    damaged.write_text(text.replace('"entries":[', '"entries":[{', 1), encoding="utf-8")  # not JSON any more
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(good.as_uri())
            assert page.inner_text("#alpha-label") == "α = 0.05" and not page.is_visible("#load-error"), errors
            assert page.evaluate("document.getElementById('canvas-x').width") == 16
            assert HOSTILE.split("\u2028")[0].strip() in page.inner_text("#provenance")
            assert errors == []
            page.goto(damaged.as_uri())
            assert page.is_visible("#load-error")
            assert "embedded data could not be read" in page.inner_text("#load-error")
        finally:
            browser.close()
