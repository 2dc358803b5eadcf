"""Model cards for exported pipelines, rendered from ``model_cards/`` templates."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .config import TrainConfig

TEMPLATES = Path(__file__).resolve().parents[3] / "model_cards"
RECIPE_TITLES = {
    "pix2pix": "pix2pix (Isola et al., 2017)",
    "pix2pixhd": "pix2pixHD (Wang et al., 2018)",
}
INPUTS = {"labels": "label map", "sketch": "sketch", "rgb": "image"}


def render_model_card(
    config: TrainConfig,
    folder: Path,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelCard:
    """Render the card for an exported pipeline in ``folder`` and write ``folder/README.md``."""
    template = TEMPLATES / "pix2pixhd.md"
    if not template.is_file():
        raise FileNotFoundError(f"Model card template {template} is missing.")
    extra = extra or {}
    sample_image = None
    if (folder / "samples.png").is_file() and extra.get("keep_samples"):
        sample_image = "samples.png"  # e.g. the held-out evaluation grid, placed by the caller
    else:
        samples = sorted(
            (Path(config.output_dir) / "samples").glob("*.png"), key=lambda p: p.stat().st_mtime
        )
        if samples:
            shutil.copyfile(samples[-1], folder / "samples.png")
            sample_image = "samples.png"
    data = config.data
    card_data = ModelCardData(
        library_name="hf-pix2pixhd",
        pipeline_tag="image-to-image",
        license="bsd-3-clause",
        tags=["pix2pix", "pix2pixhd", "gan", "image-to-image", "hf-pix2pixhd"],
        datasets=extra.get("datasets")
        or ([data.source] if "/" in data.source and not Path(data.source).exists() else None),
        # fine-tuned from a Hub model (init_from); a local folder is no repo id
        base_model=config.init_from if _is_hub_id(config.init_from) else None,
    )
    values = {
        "model_name": config.hub_model_id or Path(config.output_dir).name,
        "repo_id": extra.get("repo_id") or config.hub_model_id or str(folder),
        "recipe_title": RECIPE_TITLES[config.model.recipe],
        "input_description": INPUTS[data.input_kind],
        "example_input": "label_map.png" if data.input_kind == "labels" else "input.png",
        "generator_class": config.model.generator,
        "discriminator": config.model.discriminator,
        "data_source": data.source,
        "data_split": data.split,
        "preprocess": f"{data.preprocess}, load {data.load_size}, crop {data.crop_size}",
        "steps": extra.get("steps", "?"),
        "epochs": extra.get("epochs"),
        "batch_size": config.batch_size,
        "mixed_precision": config.mixed_precision or "as launched",
        "command": extra.get("command") or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hardware": extra.get("hardware"),
        "config_json": json.dumps(config.to_dict(), indent=2, default=str),
        "metrics": metrics,
        "sample_image": sample_image,
        "data_license": extra.get(
            "data_license", "See the licence of the training data set named above."
        ),
    }
    card = ModelCard.from_template(card_data, template_path=str(template), **values)
    card.save(folder / "README.md")
    return card


def _is_hub_id(source: str | None) -> bool:
    return bool(source) and "/" in source and not Path(source).exists()


def push_folder_to_hub(folder: Path, config: TrainConfig) -> str:
    """Upload an exported pipeline folder (weights, card, sample grid) to the Hub."""
    from huggingface_hub import create_repo, upload_folder

    if not config.hub_model_id:
        raise ValueError("push_to_hub needs hub_model_id (e.g. your-name/facades-pix2pixhd).")
    create_repo(config.hub_model_id, exist_ok=True)
    upload_folder(repo_id=config.hub_model_id, folder_path=str(folder))
    return config.hub_model_id
