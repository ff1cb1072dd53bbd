"""ldct-benchmark's published denoisers rebuilt in ctinv, its hub files, its patient split.

Ground truth: ldct-benchmark's own network classes (``pip install --no-deps ldct-benchmark==0.0.15``;
those tests skip without it), its own ``checkpoints.json`` and ``info.yml``, and for TransCT (whose
module imports torchvision) a reference output recorded from ldct-benchmark's TransCT class with
torchvision's own blur code (see ``record_transct_reference`` at the end). Never touches the network.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import needs
import pytest
import torch

from ctinv_utils.models.ldctbench import hub
from ctinv_utils.data.ldctbench_split import LDCTBenchSplitError, ldctbench_split, ldctbench_test_ids
from ctinv_utils.models import load_denoiser
from ctinv_utils.models.ldctbench import (PUBLISHED, GaussianBlur, InputSizeError, PublishedModelError,
                                          build_published)
from ctinv_utils.names import display_name

REFERENCE = Path(__file__).parent / "data" / "ldctbench_transct_reference.npz"
METHODS = sorted(PUBLISHED)  # cnn10 dugan qae redcnn resnet transct wganvgg
IMPORTABLE = ["cnn10", "wganvgg", "redcnn", "resnet", "qae", "dugan"]  # without torchvision / CUDA extension
#: the input size each test uses: 64x64 where the network takes it, TransCT runs on 512x512 only
SIZE = {m: 64 for m in METHODS} | {"transct": 512}


def seeded_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A reproducible state dict for ``model``: weights N(0, 1/fan_in), biases N(0, 0.05^2), BatchNorm
    running variances in [0.75, 1.25] (QAE: W_g, W_b ten times smaller, b_g near 1, so that its
    quadratic layers stay finite); drawn key by key in state-dict order from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            out[k] = torch.full_like(v, 1000)  # num_batches_tracked
        elif k.endswith("running_var"):
            out[k] = 0.75 + 0.5 * torch.rand(v.shape, generator=g)
        elif v.ndim >= 2:
            scale = 0.1 if k.endswith(("W_g", "W_b")) else 1.0  # QAE's quadratic terms: small, as trained ones
            out[k] = scale * torch.randn(v.shape, generator=g) / (v.numel() / v.shape[0]) ** 0.5
        else:
            out[k] = (1.0 if k.endswith("b_g") else 0.0) + 0.05 * torch.randn(v.shape, generator=g)
    return out


def save_ldctbench_checkpoint(path: Path, state: dict) -> Path:
    """A file in ldct-benchmark's trainer format (``methods/base.py``: args, iteration, model_state_dict)."""
    torch.save({"args": argparse.Namespace(lr=1e-4, max_iterations=100_000, devices=None),
                "iteration": 12345, "model_state_dict": state}, path)
    return path


def seeded_input(size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed))


def ldctbench_file(relative: str) -> Path:
    """A file of the installed ldct-benchmark package (without importing its heavy modules)."""
    return needs.ldctbench_root() / relative


# ------------------------------------------------------------------------------------------ networks

@pytest.mark.parametrize("method", [m for m in METHODS if m != "transct"])
def test_each_network_loads_a_checkpoint_in_ldctbench_format_and_runs(method, tmp_path):
    state = seeded_state(build_published(method), seed=0)
    path = save_ldctbench_checkpoint(tmp_path / f"{method}.pt", state)
    model = load_denoiser(f"ldctbench:{method}", path)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    x = seeded_input(SIZE[method])
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y - x).abs().mean() > 1e-3  # the seeded network does something


@pytest.mark.parametrize("method", IMPORTABLE)
def test_outputs_equal_ldctbench_own_networks(method):
    """Same keys and shapes, and output difference exactly 0, against ldct-benchmark's class built the
    way its hub builds it (``Model(Namespace(**args), **kwargs)`` from its own checkpoints.json)."""
    network = pytest.importorskip(f"ldctbench.methods.{method}.network",
                                  reason="pip install --no-deps ldct-benchmark==0.0.15")
    cfg = json.loads(ldctbench_file("hub/checkpoints.json").read_text())[method]
    theirs = getattr(network, cfg["model_name"])(argparse.Namespace(**cfg["args"]), **cfg["kwargs"]).eval()
    ours = build_published(method).eval()
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    state = seeded_state(ours, seed=3)
    theirs.load_state_dict(state)
    ours.load_state_dict(state)
    for shape in [(1, 1, SIZE[method], SIZE[method]), (2, 1, 23, 30)]:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            expected, got = theirs(x), ours(x)
        assert got.abs().max() > 0
        assert torch.equal(got, expected), f"{method} {shape}: max |diff| {(got - expected).abs().max()}"


def test_transct_loads_and_matches_the_output_recorded_from_ldctbench_with_torchvisions_blur(tmp_path):
    """The generic load test for TransCT (512x512 only), with its output compared to the reference."""
    ref = np.load(REFERENCE)
    assert str(ref["torch_version"]).startswith("2.")
    state = seeded_state(build_published("transct"), int(ref["state_seed"]))
    model = load_denoiser("ldctbench:transct", save_ldctbench_checkpoint(tmp_path / "transct.pt", state))
    del state
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = seeded_input(512, int(ref["input_seed"]))
    with torch.no_grad():
        y = model(x)[0, 0].numpy()
    sub = y[::16, ::16]
    scale = np.abs(ref["output_sub16"]).max()
    assert scale > 0.1
    # float rounding differs between CPUs (AVX2 / AVX-512 convolution kernels): a tolerance, not 0
    assert np.abs(sub - ref["output_sub16"]).max() < 1e-4 * scale
    assert abs(y.mean() - ref["output_mean"]) < 1e-4 * scale and abs(y.std() - ref["output_std"]) < 1e-4 * scale


def test_gaussian_blur_matches_torchvision_recorded_output():
    """Our parameter-free blur against torchvision's ``gaussian_blur`` (11x11, sigma 1.5, reflect borders)."""
    ref = np.load(REFERENCE)
    x = torch.from_numpy(ref["blur_input"])
    got = GaussianBlur(11, 1.5)(x).numpy()
    assert np.abs(got - ref["blur_output"]).max() < 1e-6
    # the border handling matters: zero padding would not match
    kernel = GaussianBlur(11, 1.5).kernel2d(x.dtype, x.device)[None, None]
    zero_padded = torch.nn.functional.conv2d(x.reshape(-1, 1, *x.shape[-2:]), kernel, padding=5).reshape(x.shape)
    assert np.abs(zero_padded.numpy() - ref["blur_output"]).max() > 1e-2


def test_gaussian_blur_kernel_is_normalised_and_symmetric():
    k = GaussianBlur(11, 1.5).kernel2d(torch.float64, torch.device("cpu"))
    assert k.shape == (11, 11) and abs(k.sum().item() - 1) < 1e-12 and torch.allclose(k, k.T)
    assert torch.allclose(k, k.flip(0)) and k.argmax().item() == 60  # centre
    # constant images stay constant
    assert torch.allclose(GaussianBlur()(torch.full((1, 1, 30, 30), 2.5)), torch.tensor(2.5))


@pytest.mark.parametrize("method, bad, message", [
    ("redcnn", (1, 1, 20, 64), r"at least 21x21 pixels, got 20x64"),
    ("dugan", (1, 1, 64, 8), r"DU-GAN needs images of at least 21x21 pixels, got 64x8"),
    ("qae", (1, 1, 2, 2), r"at least 3x3 pixels"),
    ("transct", (1, 1, 256, 256), r"512x512 images only, got 256x256"),
    ("transct", (1, 1, 512, 256), r"512x512 images only, got 512x256"),
    ("resnet", (1, 3, 32, 32), r"takes \(B, 1, H, W\)"),
    ("redcnn", (64, 64), r"takes \(B, 1, H, W\)"),
])
def test_unsupported_sizes_are_named(method, bad, message):
    with pytest.raises(InputSizeError, match=message):
        build_published(method)(torch.zeros(bad))


@pytest.mark.parametrize("method, smallest", [("redcnn", 21), ("dugan", 21), ("qae", 3), ("resnet", 1)])
def test_smallest_supported_size_runs_and_odd_sizes_need_no_divisibility(method, smallest):
    model = build_published(method).eval()
    for shape in [(1, 1, smallest, smallest), (1, 1, 33, 47)]:
        with torch.no_grad():
            assert model(torch.zeros(shape)).shape == shape


def test_published_kwargs_and_names():
    assert PUBLISHED["redcnn"].kwargs == {"out_ch": 96} and PUBLISHED["dugan"].kwargs == {"out_ch": 96}
    assert PUBLISHED["resnet"].kwargs == {"n_channels": 128, "n_blocks": 10}
    assert build_published("ldctbench:redcnn").conv1.out_channels == 96
    assert len(build_published("resnet").blocks) == 10
    assert display_name("ldctbench:redcnn") == "RED-CNN (ldct-benchmark)" == PUBLISHED["redcnn"].display
    assert display_name("ldctbench:dugan") == "DU-GAN (ldct-benchmark)"
    assert display_name("cnn10") == "CNN-10"  # unchanged
    for m, rec in PUBLISHED.items():
        assert rec.url == f"https://downloads.eeulig.com/ldct-benchmark/{m}.pt"
        assert len(rec.checksum) == 64 and int(rec.checksum, 16) >= 0


def test_our_copy_of_checkpoints_json_is_ldctbenchs():
    theirs = json.loads(ldctbench_file("hub/checkpoints.json").read_text())
    assert json.loads(hub.CHECKPOINTS_JSON.read_text()) == theirs


def test_bilateral_and_unknown_methods_say_what_to_do(tmp_path):
    with pytest.raises(PublishedModelError, match="bilateral.*compiled extension.*ldct-benchmark itself"):
        load_denoiser("ldctbench:bilateral", tmp_path / "x.pt")
    with pytest.raises(PublishedModelError, match="compiled extension"):
        build_published("bilateral")
    with pytest.raises(hub.HubError, match="compiled extension"):
        hub.download("bilateral")
    with pytest.raises(PublishedModelError, match=r"unknown ldct-benchmark method 'ldctbench:nope'.*ldctbench:redcnn"):
        load_denoiser("ldctbench:nope", tmp_path / "x.pt")


def test_existing_denoisers_unchanged(tmp_path):
    from ctinv_utils.models import CNN10, build_denoiser

    assert type(build_denoiser("cnn10")) is CNN10 and type(build_published("cnn10")) is CNN10
    state = seeded_state(CNN10(), 5)
    torch.save(state, tmp_path / "plain.pt")
    a = load_denoiser("cnn10", tmp_path / "plain.pt")
    b = load_denoiser("ldctbench:cnn10", tmp_path / "plain.pt")
    x = seeded_input(40)
    assert torch.equal(a(x), b(x))
    assert load_denoiser("gauss_ri") is not None


def test_a_checkpoint_of_another_method_is_refused(tmp_path):
    path = save_ldctbench_checkpoint(tmp_path / "qae.pt", seeded_state(build_published("qae"), 0))
    with pytest.raises(Exception, match="does not fit REDCNN"):
        load_denoiser("ldctbench:redcnn", path)


# ------------------------------------------------------------------------------------------------ hub

@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Private ctinv and ldct-benchmark caches: (ours, theirs)."""
    monkeypatch.setenv("CTINV_CACHE", str(tmp_path / "ctinv"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sys.platform", "linux")
    return tmp_path / "ctinv" / "ldctbench", tmp_path / "xdg" / "ldctbench"


@pytest.fixture
def served(tmp_path, monkeypatch, caches):
    """A seeded CNN-10 checkpoint 'published' at a file:// URL: (source file, its SHA-256)."""
    (tmp_path / "server").mkdir()
    src = save_ldctbench_checkpoint(tmp_path / "server" / "cnn10.pt", seeded_state(build_published("cnn10"), 7))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    publish(monkeypatch, src.as_uri(), digest)
    return src, digest


def publish(monkeypatch, url: str, checksum: str) -> None:
    table = {k: dict(v) for k, v in json.loads(hub.CHECKPOINTS_JSON.read_text()).items()}
    table["cnn10"].update(url=url, checksum=checksum)
    monkeypatch.setattr(hub, "published_checkpoints", lambda: table)


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def test_download_from_file_url_is_verified_cached_and_loads(served, caches, capsys):
    src, digest = served
    ours, _ = caches
    assert hub.main(["download", "cnn10"]) == 0
    target = ours / "cnn10.pt"
    assert f"ldctbench:cnn10: {target}" in capsys.readouterr().out
    assert target.read_bytes() == src.read_bytes() and leftovers(ours) == [target]
    src.unlink()  # the "server" is gone: the cached, verified file is used without fetching
    assert hub.download("cnn10", progress=False) == target == hub.checkpoint_path("cnn10")
    model = load_denoiser("ldctbench:cnn10")  # no path: found through the hub
    assert torch.equal(model.layers[0].weight, seeded_state(build_published("cnn10"), 7)["layers.0.weight"])


def test_wrong_checksum_is_refused_and_leaves_no_file(served, caches, monkeypatch):
    src, digest = served
    publish(monkeypatch, src.as_uri(), "0" * 64)
    with pytest.raises(hub.HubError, match=f"has SHA-256 {digest}, but 0{{64}} is published: refused"):
        hub.download("cnn10", progress=False)
    assert leftovers(caches[0]) == []
    assert hub.main(["download", "cnn10"]) == 1


def test_interrupted_download_leaves_no_file(served, caches, monkeypatch):
    class Broken:
        headers = {"Content-Length": "4096"}
        calls = 0

        def read(self, n):
            Broken.calls += 1
            if Broken.calls > 1:
                raise ConnectionResetError("connection reset by peer")
            return b"x" * 1000

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken())
    with pytest.raises(hub.HubError, match="broke off.*nothing written"):
        hub.download("cnn10", progress=False)
    assert leftovers(caches[0]) == []


def test_offline_error_is_one_line_naming_url_and_folder(caches, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(hub.HubError) as info:
        hub.download("redcnn", progress=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert "https://downloads.eeulig.com/ldct-benchmark/redcnn.pt" in msg and f"{caches[0]}/ as redcnn.pt" in msg
    assert "name resolution" in msg and leftovers(caches[0]) == []


def test_unreachable_file_url_is_one_clear_error(caches, monkeypatch, tmp_path):
    url = (tmp_path / "missing" / "cnn10.pt").as_uri()
    publish(monkeypatch, url, "0" * 64)
    with pytest.raises(hub.HubError, match=f"could not download {url} .*put it in {caches[0]}/"):
        hub.download("cnn10", progress=False)


def test_missing_checkpoint_names_file_url_and_folder(caches):
    with pytest.raises(hub.HubError) as info:
        load_denoiser("ldctbench:redcnn")
    msg = str(info.value)
    assert "\n" not in msg and "redcnn.pt" in msg and str(caches[0]) in msg
    assert "https://downloads.eeulig.com/ldct-benchmark/redcnn.pt" in msg
    assert "python -m ctinv_utils hub download redcnn" in msg


def test_ldctbenchs_own_cache_is_reused_and_a_bad_file_there_is_reported(served, caches, monkeypatch):
    src, digest = served
    ours, theirs = caches
    theirs.mkdir(parents=True)
    (theirs / "cnn10.pt").write_bytes(src.read_bytes()[:100])  # half-written, as ldct-benchmark can leave it
    with pytest.raises(hub.HubError, match=f"{theirs}/cnn10.pt has the wrong SHA-256"):
        hub.checkpoint_path("cnn10")
    (theirs / "cnn10.pt").write_bytes(src.read_bytes())
    publish(monkeypatch, (src.parent / "gone.pt").as_uri(), digest)  # a download would fail
    assert hub.download("cnn10", progress=False) == theirs / "cnn10.pt" == hub.checkpoint_path("cnn10")
    assert leftovers(ours) == []


def test_ldctbench_cache_folder_is_platformdirs(tmp_path, monkeypatch):
    platformdirs = pytest.importorskip("platformdirs")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.ldctbench_cache_folder() == Path(platformdirs.user_cache_dir(appname="ldctbench", appauthor="eeulig"))


def test_cli_checks_every_name_before_downloading(caches, capsys):
    assert hub.main(["download", "cnn10", "nope"]) == 1
    assert "no checkpoint called 'nope'" in capsys.readouterr().err and leftovers(caches[0]) == []
    assert hub.main([]) == 2
    assert hub.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "bilateral" in out and "not supported" in out and "redcnn" in out and "not here" in out


# ---------------------------------------------------------------------------------------------- split

def test_split_sizes_are_105_30_15_and_disjoint():
    s = ldctbench_split()
    assert [len(s[k]) for k in ("train", "val", "test")] == [105, 30, 15]
    assert len(set(s["train"]) | set(s["val"]) | set(s["test"])) == 150
    assert {p[0] for p in s["test"]} == {"C", "L", "N"}


def test_split_is_ldctbenchs_info_yml():
    yaml = pytest.importorskip("yaml")
    info = yaml.safe_load(ldctbench_file("data/info.yml").read_text())
    expected = {k: sorted(e["id"] for e in info[f"{k}_set"]) for k in ("train", "val", "test")}
    assert ldctbench_split() == expected


def test_test_ids_of_our_data():
    assert ldctbench_test_ids(["L067", "L006", "C121", "C002"]) == ["C121", "L006"]

    class Data:  # the attributes ldctbench_test_ids reads of a PairedCTData
        source = "TCIA/AAPM DICOM at /data"
        patient_ids = ["N090", "L067"]

    assert ldctbench_test_ids(Data()) == ["N090"]
    with pytest.raises(LDCTBenchSplitError, match=r"none of the 2 patients \(C002, L067\).*C121, C135"):
        ldctbench_test_ids(["L067", "C002"])
    Data.source = "simulated (embedded default)"
    with pytest.raises(LDCTBenchSplitError, match="simulated data only shares"):
        ldctbench_test_ids(Data())


# ------------------------------------------------------------------------- recording the reference

def record_transct_reference(functional_tensor_py: str, out: Path = REFERENCE) -> None:
    """Record ``tests/data/ldctbench_transct_reference.npz`` from ldct-benchmark's own TransCT class.

    Its module imports ``torchvision.transforms.GaussianBlur``; torchvision's compiled part does not
    load beside this torch, so a stand-in ``torchvision.transforms`` module provides a GaussianBlur
    that calls torchvision's own ``_functional_tensor.gaussian_blur`` (pure torch, loaded from its
    file; the wheel unpacked). That is what ``GaussianBlur(11, 1.5)`` computes on a float tensor. Run::

        pip download --no-deps torchvision==0.28.0 && unzip torchvision-*.whl -d tv
        python tests/test_ldctbench.py tv/torchvision/transforms/_functional_tensor.py
    """
    import sys
    import types

    spec = importlib.util.spec_from_file_location("tv_functional_tensor", functional_tensor_py)
    ft = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ft)

    class TVGaussianBlur(torch.nn.Module):
        def __init__(self, kernel_size, sigma):
            super().__init__()
            self.kernel_size, self.sigma = [kernel_size, kernel_size], float(sigma)

        def forward(self, img):
            return ft.gaussian_blur(img, self.kernel_size, [self.sigma, self.sigma])

    tv, tvt = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    tvt.GaussianBlur, tv.transforms = TVGaussianBlur, tvt
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tvt})
    from ldctbench.methods.transct.network import Model

    state_seed, input_seed = 11, 12
    theirs = Model(argparse.Namespace()).eval()
    ours = build_published("transct").eval()
    state = seeded_state(ours, state_seed)
    theirs.load_state_dict(state)
    ours.load_state_dict(state)
    x = seeded_input(512, input_seed)
    with torch.no_grad():
        y = theirs(x)
        assert torch.equal(ours(x), y), "our TransCT differs from ldct-benchmark's"
    y = y[0, 0].numpy()
    blur_in = torch.randn(1, 2, 12, 13, generator=torch.Generator().manual_seed(13))
    blur_out = TVGaussianBlur(11, 1.5)(blur_in)
    assert torch.equal(GaussianBlur(11, 1.5)(blur_in), blur_out)
    np.savez_compressed(
        out, state_seed=state_seed, input_seed=input_seed, output_sub16=y[::16, ::16], output_mean=y.mean(),
        output_std=y.std(), blur_input=blur_in.numpy(), blur_output=blur_out.numpy(),
        torch_version=np.array(torch.__version__),
        source=np.array("ldct-benchmark 0.0.15 ldctbench.methods.transct.network.Model, blur by torchvision 0.28.0 "
                        "_functional_tensor.gaussian_blur; seeded_state(model, state_seed), "
                        "seeded_input(512, input_seed)"))
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    import sys

    record_transct_reference(sys.argv[1])


# ------------------------------------------------------------------ published networks in the notebooks

def test_present_published_finds_verified_files_and_names_the_missing(served, caches):
    assert hub.present_published(["ldctbench:cnn10"]) == ({}, ["ldctbench:cnn10"])  # not downloaded yet
    target = hub.download("cnn10", progress=False)
    assert hub.present_published(["ldctbench:cnn10"]) == ({"ldctbench:cnn10": target}, [])
    with pytest.raises(hub.HubError, match="'redcnn' is not a published denoiser; write ldctbench:<method>"):
        hub.present_published(["redcnn"])


def test_published_denoiser_is_handed_from_02_to_03_by_file_and_checksum(served, caches, tmp_path):
    """Notebook 02 records the published file it evaluated; 03 loads that same file (checksum checked),
    with artifact file names free of ':'."""
    from ctinv_utils.pipeline.artifacts import ArtifactError, Artifacts

    path = hub.download("cnn10", progress=False)
    art = Artifacts(tmp_path / "art", preset="t")
    art.save_denoisers({"gauss_ri": load_denoiser("gauss_ri")}, {"split": {}}, published={"ldctbench:cnn10": path})
    assert art.published_denoisers() == ["ldctbench:cnn10"]
    models = art.load_denoisers(["gauss_ri", "ldctbench:cnn10"])
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(models["ldctbench:cnn10"](x), load_denoiser("ldctbench:cnn10", path)(x))
    assert art.path("invariance_arrays", denoiser="ldctbench:cnn10", distance="mse").name == "ldctbench-cnn10_mse.npz"
    with pytest.raises(ArtifactError, match="did not evaluate the published denoiser 'ldctbench:redcnn'.*hub download redcnn"):
        art.load_denoisers(["ldctbench:redcnn"])
    path.write_bytes(path.read_bytes()[:-1] + b"x")  # changed since 02 evaluated it
    with pytest.raises(ArtifactError, match="missing or changed since notebook 02 evaluated it"):
        art.load_denoisers(["ldctbench:cnn10"])


def test_evaluation_patients_use_ldctbench_test_patients_for_its_networks():
    from types import SimpleNamespace

    from ctinv_utils.data.ldctbench_split import LDCTBenchSplitError, evaluation_patients, ldctbench_split

    split = ldctbench_split()
    tcia = SimpleNamespace(source="tcia", patient_ids=split["train"][:2] + split["test"][:2])
    ours = [split["train"][0], split["test"][0]]
    assert evaluation_patients(tcia, ours, ["cnn10"]) == ours  # no published network: ctinv's split
    assert evaluation_patients(tcia, ours, ["cnn10", "ldctbench:cnn10"]) == [split["test"][0]]
    with pytest.raises(LDCTBenchSplitError, match="none of ctinv's test patients"):
        evaluation_patients(tcia, [split["train"][0]], ["ldctbench:cnn10"])
    simulated = SimpleNamespace(source="simulated (embedded default)", patient_ids=["L001"])
    assert evaluation_patients(simulated, ["L001"], ["ldctbench:cnn10"]) == ["L001"]
