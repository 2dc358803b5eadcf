"""Networks, each a diffusers ``ModelMixin`` + ``ConfigMixin`` (save/from_pretrained)."""

from .discriminators import MultiScaleDiscriminator, PatchGANDiscriminator
from .encoder import FeatureEncoder, instance_average_pool
from .hd_generator import GlobalGenerator, LocalEnhancerGenerator
from .pix2pix_generators import HugGANUNetGenerator, ResnetGenerator, UNetGenerator
from .vgg import VGGFeatures

__all__ = [
    "FeatureEncoder",
    "GlobalGenerator",
    "HugGANUNetGenerator",
    "LocalEnhancerGenerator",
    "MultiScaleDiscriminator",
    "PatchGANDiscriminator",
    "ResnetGenerator",
    "UNetGenerator",
    "VGGFeatures",
    "instance_average_pool",
]
