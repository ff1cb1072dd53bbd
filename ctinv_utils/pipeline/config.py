"""Typed settings of each notebook, defined once.

One pydantic model per notebook holds every parameter it runs with: its ``parameters`` cell lists
exactly these fields with the quick preset's values (tests/test_architecture.py checks it), a
preset is validated against them before any notebook starts, the runner hands papermill their
values, and the config hash is computed from them. An unknown key or a value of the wrong type or
range is one line naming the key and what it expects.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .. import settings
from ..data.simulated import SimulationConfig
from ..provenance import config_hash
from ..training.methods import CONFIGS

#: The runner sets these in every notebook; a preset does not.
RUNTIME_PARAMETERS = ("preset", "data_path", "device", "seed", "figures_dir", "artifacts_dir", "interactive")
#: Where results go or how they are shown, never the results: left out of the config hash.
PRESENTATION_PARAMETERS = ("interactive", "figures_dir", "artifacts_dir")

def _finite(value):
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return value


def _bounded(low: float | None = None, high: float | None = None, low_open: bool = True, high_open: bool = True):
    """A check that a finite number lies in (low, high) (or [low, high] where not open)."""
    def check(value):
        _finite(value)
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
            raise ValueError(f"must be {' and '.join(w for w in (lo, hi) if w)}, got {value!r}")
        return value
    return check


# numbers keep the type they were written with (5 stays 5, 5.0 stays 5.0): the config hash and
# every value handed to a notebook are those of the preset file
Number = Annotated[int | float, AfterValidator(_finite)]
PositiveNumber = Annotated[int | float, AfterValidator(_bounded(0))]
NonNegativeNumber = Annotated[int | float, AfterValidator(_bounded(0, low_open=False))]
Count = Annotated[int, Field(ge=1)]
Alpha = PositiveNumber
Distance = Literal["mse", "dssim", "vgg"]
VGGWeights = Literal["imagenet", "imagenet_or_random"]
Betas = Annotated[list[Annotated[int | float, AfterValidator(_bounded(0, 1, low_open=False))]],
                  Field(min_length=2, max_length=2)]
HURange = Annotated[list[Number], Field(min_length=2, max_length=2)]
AlphaGrid = Annotated[list[Alpha], Field(min_length=1)]

QUICK_SIMULATION = {"scanner": "clinical", "image_size": 512, "n_views": 1152, "photons_full_dose": 200000.0, "patients_per_region": 4,
                    "min_slices": 3, "max_slices": 8}


def _simulation(value: dict) -> dict:
    """A ``simulation`` mapping is SimulationConfig's keyword arguments (checked key by key)."""
    _dataclass_problems(SimulationConfig, value, {})
    return value


def _training(method: str):
    def check(value: dict) -> dict:
        _dataclass_problems(CONFIGS[method], value, {"method": method})  # the method's own checks
        return value
    return check


def _dataclass_problems(cls, value: dict, added: dict) -> None:
    """Keys and types of ``value`` against the dataclass ``cls``, then its own checks. A problem with
    one key is raised as ``".key problem"`` (the preset's message puts it after the parameter's path)."""
    problems = settings.field_problems(cls, value)
    if problems:
        key, problem = problems[0]
        raise ValueError(f".{key} {problem}" if key else problem)
    try:
        cls(**{**added, **value})
    except (TypeError, ValueError) as exc:
        raise ValueError(f": {exc}") from None


def _increasing_range(value: list | None) -> list | None:
    if value is not None and not value[0] < value[1]:
        raise ValueError(f"must be [low, high] with low < high, got {value}")
    return value


def _rate(value):
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"mse", "dssim", "vgg"})
        if unknown:
            raise ValueError(f"names unknown distance(s) {unknown}; use mse, dssim, vgg")
    return value


SimulationSettings = Annotated[dict[str, Any], AfterValidator(_simulation)]


class NotebookSettings(BaseModel):
    """What every notebook declares: the runner sets these."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    notebook: ClassVar[str] = ""

    preset: str = "quick"
    data_path: str | None = None
    device: str = "auto"
    seed: Annotated[int, Field(ge=0)] = 0
    figures_dir: str = "figures/quick"
    artifacts_dir: str = "papermill_runs/quick/artifacts"
    interactive: bool = True

    def parameters(self) -> dict[str, Any]:
        """The plain values papermill injects (lists, dicts, numbers, strings)."""
        return self.model_dump(mode="python")

    def config_hash(self) -> str:
        """The hash of every setting that can change a result (not the presentation ones)."""

        return config_hash({k: v for k, v in self.parameters().items() if k not in PRESENTATION_PARAMETERS})


class DataSettings(NotebookSettings):
    """01_data: the data set, its split and its sampling."""

    notebook: ClassVar[str] = "01_data"
    simulation: SimulationSettings = Field(default_factory=lambda: dict(QUICK_SIMULATION))
    n_sampler_draws: Count = 20000
    noise_slices_per_patient: Count | None = None


class TrainingSettings(NotebookSettings):
    """02_denoiser_training: CNN-10 and WGAN-VGG training settings (TrainConfig keyword arguments)."""

    notebook: ClassVar[str] = "02_denoiser_training"
    simulation: SimulationSettings = Field(default_factory=lambda: dict(QUICK_SIMULATION))
    cnn10: Annotated[dict[str, Any], AfterValidator(_training("cnn10"))] = Field(
        default_factory=lambda: {"iterations": 1500, "batch_size": 16, "patch_size": 64, "lr": 3e-4})
    wganvgg: Annotated[dict[str, Any], AfterValidator(_training("wganvgg"))] = Field(
        default_factory=lambda: {"iterations": 1700, "pretrain_iterations": 1500, "batch_size": 8, "patch_size": 48,
                                 "lr": 6e-4, "gan_lr": 2e-5, "critic_lr": 1e-4, "gan_betas": [0.5, 0.9],
                                 "critic_warmup": 50, "lambda_perceptual": 1e6, "vgg_weights": "imagenet_or_random"})
    published: list[str] = Field(default_factory=list)


class InvarianceSettings(NotebookSettings):
    """03_image_domain_invariances: the optimisation protocol and what is analysed."""

    notebook: ClassVar[str] = "03_image_domain_invariances"
    simulation: SimulationSettings = Field(default_factory=lambda: dict(QUICK_SIMULATION))
    region: Literal["head", "chest", "abdomen"] = "chest"
    crop: Count | None = 96
    alphas: AlphaGrid = Field(default_factory=lambda: [0.002, 0.01, 0.05, 0.2])
    alphas_dssim: AlphaGrid | None = Field(default_factory=lambda: [0.005, 0.01, 0.05, 0.2])
    alphas_vgg: AlphaGrid | None = Field(default_factory=lambda: [0.01, 0.05])
    panel_alpha: Alpha = 0.05
    max_iter: Count = 1200
    max_iter_vgg: Count = 800
    lr: Annotated[PositiveNumber | dict[str, PositiveNumber], AfterValidator(_rate)] = Field(
        default_factory=lambda: {"mse": 0.1, "dssim": 0.01, "vgg": 0.1})
    lr_schedule: Literal["constant", "cosine"] = "constant"
    stop_early: bool = True
    min_iter: Annotated[int, Field(ge=0)] = 300
    continuation: bool = False
    warm_min_iter: Count = 50
    explorer_warm_start: bool = True
    adam_betas: Betas = Field(default_factory=lambda: [0.9, 0.9])
    hu_range: Annotated[HURange | None, AfterValidator(_increasing_range)] = Field(
        default_factory=lambda: [-1024, 3071])
    compare_unconstrained: bool = True
    unconstrained_alphas: AlphaGrid | None = Field(default_factory=lambda: [0.05, 0.2])
    tol_hu: PositiveNumber = 5.0
    tolerance_refine_steps: Annotated[int, Field(ge=0)] = 2
    tolerance_refine_steps_vgg: Annotated[int, Field(ge=0)] = 0
    tolerance_candidates: Count = 1
    linearised_crop: Count | None = 48
    linearised_k: Count = 4
    linearised_max_products: Count = 300
    vgg_weights: VGGWeights = "imagenet_or_random"
    attack_eps_hu: PositiveNumber = 10.0
    attack_steps: Count = 10
    denoiser_names: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["cnn10", "wganvgg", "gauss_ri"])
    include_published: bool = True


class NaturalSettings(NotebookSettings):
    """04_natural_invariances: the conditional generator g(z|x) and its critic."""

    notebook: ClassVar[str] = "04_natural_invariances"
    simulation: SimulationSettings = Field(default_factory=lambda: dict(QUICK_SIMULATION))
    natural_denoisers: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["cnn10"])
    distance: Distance = "dssim"
    alpha: NonNegativeNumber = 0.5
    beta: NonNegativeNumber = 0.02
    iterations: Count = 400
    batch_size: Count = 8
    patch_size: Count = 80
    lr: PositiveNumber = 3e-4
    critic_lr: PositiveNumber = 1e-3
    critic_steps: Count = 1
    n_samples: Annotated[int, Field(ge=2)] = 16
    compare_alpha: Alpha = 0.05
    vgg_weights: VGGWeights = "imagenet_or_random"


LesionSize = Annotated[list[Number], Field(min_length=2, max_length=2)]


class LesionSettings(NotebookSettings):
    """05_lesions: lesion scans, model observers, contrast-detail curves, lesion invariances."""

    notebook: ClassVar[str] = "05_lesions"
    simulation: SimulationSettings = Field(default_factory=lambda: dict(QUICK_SIMULATION))
    denoiser_names: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["cnn10", "wganvgg", "gauss_ri"])
    diameters_mm: Annotated[list[PositiveNumber], Field(min_length=1)] = Field(default_factory=lambda: [3.0, 5.0, 7.0, 10.0])
    contrasts_hu: Annotated[list[Number], Field(min_length=1)] = Field(
        default_factory=lambda: [-320.0, -160.0, -80.0, -40.0, -20.0, 20.0, 40.0, 80.0, 160.0, 320.0])
    realisations: Count = 4
    absent_per_realisation: Count = 4
    roi_mm: PositiveNumber = 32.0
    dprime_threshold: PositiveNumber = 2.0
    estimation: Literal["holdout", "resubstitution"] = "holdout"
    example_lesions: list[LesionSize] = Field(default_factory=lambda: [[10.0, 40.0], [5.0, -20.0]])
    invariance_denoisers: list[str] = Field(default_factory=lambda: ["cnn10", "wganvgg"])
    invariance_lesion: LesionSize = Field(default_factory=lambda: [10.0, 40.0])
    invariance_crop: Count = 48
    invariance_distance: Distance = "mse"
    invariance_alphas: AlphaGrid = Field(default_factory=lambda: [0.003, 0.01, 0.03, 0.1])
    invariance_iterations: Count = 1200
    invariance_lr: PositiveNumber = 0.1
    invariance_adam_betas: Betas = Field(default_factory=lambda: [0.9, 0.9])
    invariance_stop_early: bool = True
    invariance_min_iter: Annotated[int, Field(ge=0)] = 300


class FigureSettings(NotebookSettings):
    """06_figures: every panel of the talk, drawn again from the artifacts."""

    notebook: ClassVar[str] = "06_figures"
    denoiser_names: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["cnn10", "wganvgg", "gauss_ri"])
    distances: Annotated[list[Distance], Field(min_length=1)] = Field(default_factory=lambda: ["mse", "dssim", "vgg"])
    panel_alpha: Alpha = 0.05
    natural_denoisers: list[str] = Field(default_factory=lambda: ["cnn10"])
    n_natural_panels: Count = 4


#: Every notebook's settings model, in execution order.
NOTEBOOK_SETTINGS: dict[str, type[NotebookSettings]] = {
    m.notebook: m for m in (DataSettings, TrainingSettings, InvarianceSettings, NaturalSettings, LesionSettings,
                            FigureSettings)}


def settings_model(notebook: str) -> type[NotebookSettings]:
    """The settings model of a notebook (``"03_image_domain_invariances"``)."""
    try:
        return NOTEBOOK_SETTINGS[notebook]
    except KeyError:
        raise KeyError(f"no notebook {notebook!r}; notebooks: {', '.join(NOTEBOOK_SETTINGS)}") from None

