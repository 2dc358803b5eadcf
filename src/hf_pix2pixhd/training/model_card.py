"""Model cards for exported pipelines, rendered from the package's ``templates/model_card.md``.

:func:`card_data` turns a plain metadata dict into the card's YAML header (library, task, tags,
datasets, ``base_model``, ``model-index``), so other code can add fields without touching the
rendering. :func:`publish_card` readies a card for the Hub (repo id, no local paths).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..hub import is_local_path, strip_local_paths
from .config import TrainConfig

TEMPLATE = files("hf_pix2pixhd") / "templates" / "model_card.md"
RECIPE_TITLES = {
    "pix2pix": "pix2pix (Isola et al., 2017)",
    "pix2pixhd": "pix2pixHD (Wang et al., 2018)",
}
INPUTS = {"labels": "label map", "sketch": "sketch", "rgb": "image"}
TAGS = ["pix2pix", "pix2pixhd", "gan", "image-to-image", "hf-pix2pixhd"]
#: Where ``hf-pix2pixhd evaluate`` writes its report inside an exported folder.
METRICS_FILE = "evaluation/metrics.json"


def card_data(metadata: dict[str, Any]) -> ModelCardData:
    """The card's YAML header from ``metadata``: ``model_name``, ``datasets`` (Hub ids),
    ``base_model`` (a Hub id, for fine-tuned models) and ``evaluation`` (the report of
    ``hf-pix2pixhd evaluate``, ``evaluation/metrics.json``), all optional. Local paths never
    become ``datasets`` or ``base_model``."""
    datasets = [d for d in metadata.get("datasets") or [] if not is_local_path(d)]
    base_model = metadata.get("base_model")
    if base_model and is_local_path(base_model):
        base_model = None
    report = metadata.get("evaluation")
    eval_results = None
    if report and report.get("metrics"):
        data = report.get("data") or "unknown"
        dataset = data if data in datasets else Path(str(data).rstrip("/")).name
        eval_results = [
            EvalResult(
                task_type="image-to-image",
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=report.get("subset") or report.get("split"),
                metric_type=name,
                metric_value=value,
            )
            for name, value in report["metrics"].items()
            if isinstance(value, int | float)
        ]
    return ModelCardData(
        library_name="hf-pix2pixhd",
        pipeline_tag="image-to-image",
        license="bsd-3-clause",
        tags=list(TAGS),
        datasets=datasets or None,
        base_model=base_model,
        model_name=metadata.get("model_name") if eval_results else None,
        eval_results=eval_results,
    )


def render_card(values: dict[str, Any], metadata: dict[str, Any], folder: Path) -> ModelCard:
    """Render the template with ``values`` and the header :func:`card_data` makes of
    ``metadata``; write ``folder/README.md``."""
    if not TEMPLATE.is_file():
        raise FileNotFoundError(f"Model card template {TEMPLATE} is missing from the package.")
    card = ModelCard.from_template(card_data(metadata), template_str=TEMPLATE.read_text(), **values)
    card.save(Path(folder) / "README.md")
    return card


def read_evaluation(folder: Path) -> dict[str, Any] | None:
    """``folder/evaluation/metrics.json``, if an evaluation was run for this export."""
    path = Path(folder) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def render_model_card(
    config: TrainConfig,
    folder: Path,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelCard:
    """Render the card for an exported pipeline in ``folder`` and write ``folder/README.md``."""
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
    shown = strip_local_paths(config.to_dict())  # the card never shows this machine's paths
    metadata = {
        "model_name": config.hub_model_id or Path(config.output_dir).name,
        "datasets": extra.get("datasets") or [data.source],
        # fine-tuned (init_from): card_data keeps Hub ids only, never a local folder
        "base_model": extra.get("base_model") or config.init_from,
        "evaluation": read_evaluation(folder),
    }
    values = {
        "model_name": metadata["model_name"],
        "repo_id": extra.get("repo_id") or config.hub_model_id or Path(folder).name,
        "recipe_title": RECIPE_TITLES[config.model.recipe],
        "input_description": INPUTS[data.input_kind],
        "example_input": "label_map.png" if data.input_kind == "labels" else "input.png",
        "generator_class": config.model.generator,
        "discriminator": config.model.discriminator,
        "data_source": shown["data"]["source"],
        "data_split": data.split,
        "preprocess": f"{data.preprocess}, load {data.load_size}, crop {data.crop_size}",
        "steps": extra.get("steps", "?"),
        "epochs": extra.get("epochs"),
        "batch_size": config.batch_size,
        "mixed_precision": config.mixed_precision or "as launched",
        "command": extra.get("command") or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hardware": extra.get("hardware"),
        "config_json": json.dumps(shown, indent=2, default=str),
        "metrics": metrics,
        "sample_image": sample_image,
        "data_license": extra.get(
            "data_license", "See the licence of the training data set named above."
        ),
    }
    return render_card(values, metadata, folder)


def _pipeline_values(folder: Path, repo_id: str) -> dict[str, Any]:
    """Card values for a pipeline saved without a training record (e.g. converted)."""
    index = json.loads((folder / "model_index.json").read_text())
    generator = index.get("translator", [None, "?"])[1]
    hd = generator in ("GlobalGenerator", "LocalEnhancerGenerator")
    kind = index.get("input_kind", "rgb")
    return {
        "model_name": repo_id.rpartition("/")[2],
        "repo_id": repo_id,
        "recipe_title": "pix2pixHD (Wang et al., 2018)" if hd else "pix2pix (Isola et al., 2017)",
        "input_description": INPUTS.get(kind, kind),
        "example_input": "label_map.png" if kind == "labels" else "input.png",
        "config_json": None,
        "metrics": None,
        "sample_image": "samples.png" if (folder / "samples.png").is_file() else None,
        "data_license": "See the licence of the training data.",
    }


def _use_section(repo_id: str, example_input: str) -> str:
    """The template's "## Use" section, for ``repo_id``."""
    import jinja2

    template = TEMPLATE.read_text()
    section = template[template.index("## Use") : template.index("## Training")].rstrip()
    return jinja2.Template(section).render(repo_id=repo_id, example_input=example_input) + "\n"


def publish_card(folder: Path, repo_id: str, replaced: dict[str, str] | None = None) -> ModelCard:
    """Ready ``folder/README.md`` for the Hub repo ``repo_id``: usage snippets name
    ``repo_id``, the local paths in ``replaced`` (old -> new, from
    :func:`~hf_pix2pixhd.hub.strip_local_paths`) and any other ``../`` or absolute path are cut
    to their last part, and the header gets ``model-index`` from ``evaluation/metrics.json``.
    Without a card, a short one is rendered from ``model_index.json``."""
    folder = Path(folder)
    path = folder / "README.md"
    evaluation = read_evaluation(folder)
    if not path.is_file():
        values = _pipeline_values(folder, repo_id)
        metadata = {"model_name": values["model_name"], "evaluation": evaluation}
        return render_card(values, metadata, folder)
    card = ModelCard.load(path)
    old = card.data.to_dict()
    text = re.sub(r'(from_pretrained\(\s*")[^"]*(")', rf"\g<1>{repo_id}\g<2>", card.text)
    if "trust_remote_code" not in text:  # a card from before the remote code: document it
        example = re.search(r'pipe\("([^"]*)"\)', text)
        use = _use_section(repo_id, example.group(1) if example else "input.png")
        text = re.sub(r"## Use\n.*?(?=\n## )", lambda _: use, text, count=1, flags=re.S)
    for before, after in sorted((replaced or {}).items(), key=lambda kv: -len(kv[0])):
        text = text.replace(before, after)
    text = re.sub(r"(?<![\w.:/])(?:\.\.?/|/)[\w./-]*?([\w.-]+)(?=[`\s\"',)]|$)", r"\1", text)
    index = old.get("model-index") or [{}]
    metadata = {
        "model_name": index[0].get("name") or repo_id.rpartition("/")[2],
        "datasets": old.get("datasets"),
        "base_model": old.get("base_model"),
        "evaluation": evaluation,
    }
    data = card_data(metadata)
    for key, value in old.items():  # keep what else the card declared (e.g. extra tags)
        if key != "model-index" and data.get(key) is None:
            data[key] = value
    card.data, card.text = data, text
    card.save(path)
    return card


def push_folder_to_hub(folder: Path, config: TrainConfig) -> str:
    """Publish an exported pipeline folder (weights, card, samples, training configuration,
    style bank, remote code) to ``config.hub_model_id``; returns the commit URL."""
    from ..hub import publish_folder

    if not config.hub_model_id:
        raise ValueError("push_to_hub needs hub_model_id (e.g. your-name/facades-pix2pixhd).")
    return publish_folder(folder, config.hub_model_id)
