"""Networks: the talk's denoisers, the WGAN critic, VGG16/19 without torchvision; building,
loading (weights only) and freezing them."""

from .checkpoints import CheckpointError, load_state_dict_into, read_checkpoint
from .cnn10 import CNN10
from .critic import WGANCritic
from .gauss_ri import GaussRI, central_square
from .registry import DENOISERS, DISPLAY_NAME, build_denoiser, load_denoiser
from .state import freeze, module_device
from .wganvgg import WGANVGG

__all__ = ["CNN10", "WGANVGG", "WGANCritic", "GaussRI", "central_square", "DENOISERS", "DISPLAY_NAME",
           "build_denoiser", "load_denoiser", "read_checkpoint", "load_state_dict_into", "freeze",
           "module_device", "CheckpointError"]
