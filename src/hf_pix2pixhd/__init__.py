"""hf-pix2pixhd: pix2pix and pix2pixHD conditional GANs, the Hugging Face way."""

from .models import (
    FeatureEncoder,
    GlobalGenerator,
    HugGANUNetGenerator,
    LocalEnhancerGenerator,
    MultiScaleDiscriminator,
    PatchGANDiscriminator,
    ResnetGenerator,
    UNetGenerator,
    VGGFeatures,
    instance_average_pool,
)
from .pipeline import Pix2PixHDPipeline, Pix2PixHDPipelineOutput
from .styles import StyleBank, build_style_bank, cluster_styles, encode_dataset

__version__ = "0.1.0"

__all__ = [
    "FeatureEncoder",
    "GlobalGenerator",
    "HugGANUNetGenerator",
    "LocalEnhancerGenerator",
    "MultiScaleDiscriminator",
    "PatchGANDiscriminator",
    "Pix2PixHDPipeline",
    "Pix2PixHDPipelineOutput",
    "ResnetGenerator",
    "StyleBank",
    "UNetGenerator",
    "VGGFeatures",
    "build_style_bank",
    "cluster_styles",
    "encode_dataset",
    "instance_average_pool",
]
