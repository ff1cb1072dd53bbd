"""``python -m ctinv_utils <command> [options]`` (or ``ctinv <command>``): every command-line tool.

    run          the notebooks of a preset, headless (make reproduce)
    presets      a notebook's parameters under a preset as flat YAML for papermill; --write: all of them
    sweep        invariances of every test slice, sharded over torchrun ranks; 'sweep train': the models
    export       a run's results as DICOM for a radiologist's viewer
    bench        the synthesis benchmark against a plain loop and plenoptic; --gpu-check on a GPU
    convergence  a preset's invariances against a long run of the talk's Adam
    hub          ldct-benchmark's published checkpoints: list, download, verify
    vgg          the ImageNet VGG16/VGG19 weights: download, verify
    gpu-first    the first thing to run on a GPU: the GPU check, the paper rehearsal, the estimate
    xray-tables  regenerate the embedded tube spectrum and attenuation tables (needs the [physics] extra)
    simulator-check  the embedded scanner model against gecatsim (needs the [validation] extra)

``python -m ctinv_utils <command> --help`` says more.
"""

from __future__ import annotations

import importlib
import sys

#: command -> module whose ``main(argv)`` runs it
COMMANDS = {
    "run": "ctinv_utils.pipeline.run",
    "presets": "ctinv_utils.pipeline.presets",
    "sweep": "ctinv_utils.tools.sweep",
    "export": "ctinv_utils.tools.export",
    "bench": "ctinv_utils.tools.bench",
    "convergence": "ctinv_utils.tools.convergence",
    "hub": "ctinv_utils.models.ldctbench.hub",
    "vgg": "ctinv_utils.models.vgg",
    "gpu-first": "ctinv_utils.tools.gpu_first",
    "xray-tables": "ctinv_utils.data.scanner.xray",
    "simulator-check": "ctinv_utils.tools.simulator_check",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; commands: {', '.join(COMMANDS)} "
              "(python -m ctinv_utils --help)", file=sys.stderr)
        return 2
    # each tool is imported only when asked for (the runner needs no torch to start, the hub no notebook stack)
    return int(importlib.import_module(COMMANDS[command]).main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
