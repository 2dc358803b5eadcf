"""``hf-pix2pixhd make-space``: assemble (and optionally upload) a Gradio Space folder.

A Space build runs ``pip install -r requirements.txt`` before the rest of the repository is in
place, so the folder carries the package as source (``hf_pix2pixhd/`` beside ``app.py``, found
first on ``sys.path``) and ``requirements.txt`` names only its dependencies, pinned to the
versions of this environment. Gradio itself comes from the header's ``sdk_version``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import metadata
from importlib.resources import files
from pathlib import Path

from .hub import clean_folder, upload

#: What the demo imports (``gradio`` is installed by the Space from ``sdk_version``).
REQUIREMENTS = ("torch", "diffusers", "huggingface_hub", "numpy", "pillow", "safetensors", "scipy")
TEMPLATES = files("hf_pix2pixhd") / "templates" / "space"


def requirements() -> str:
    """``requirements.txt``: :data:`REQUIREMENTS` pinned to this environment's versions
    (without local tags such as ``+cpu``)."""
    lines = [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]
    return "\n".join(lines) + "\n"


def _is_model_folder(source: str) -> bool:
    return (Path(source) / "model_index.json").is_file()


def make_space(out: str | Path, models: list[str], title: str = "hf-pix2pixhd") -> Path:
    """Write a Space folder to ``out``: ``app.py``, ``README.md`` (the Space header),
    ``requirements.txt``, ``.gitattributes`` (binaries in LFS), ``hf_pix2pixhd/`` (the package
    source) and ``models/`` (copies of the local pipeline folders in ``models``, their local
    paths removed, and ``hub.txt`` with the Hub ids among ``models``)."""
    import gradio
    from huggingface_hub import SpaceCard, SpaceCardData

    from .app import HUB_LIST

    if not models:
        raise ValueError("make-space needs at least one model: --model DIR_OR_HUB_ID.")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder.")
    folders = [Path(m) for m in models if _is_model_folder(m)]
    hub_ids = [m for m in models if not _is_model_folder(m)]
    for hub_id in hub_ids:
        if Path(hub_id).exists() or hub_id.count("/") != 1:
            raise ValueError(f"{hub_id!r} is neither a pipeline folder nor a Hub id (user/name).")
    names = [f.resolve().name for f in folders]
    if len(set(names)) != len(names):
        raise ValueError(f"Two model folders share a name ({names}); the Space needs unique ones.")

    (out / "models").mkdir(parents=True)
    for folder, name in zip(folders, names, strict=True):
        shutil.copytree(folder, out / "models" / name, ignore=shutil.ignore_patterns("*.py"))
        clean_folder(out / "models" / name)
    if hub_ids:
        (out / "models" / HUB_LIST).write_text("\n".join(hub_ids) + "\n")
    package = Path(__file__).resolve().parent
    shutil.copytree(package, out / "hf_pix2pixhd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(TEMPLATES / "app.py", out / "app.py")
    shutil.copyfile(TEMPLATES / "gitattributes", out / ".gitattributes")
    (out / "requirements.txt").write_text(requirements())
    card_data = SpaceCardData(
        title=title,
        sdk="gradio",
        sdk_version=gradio.__version__,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        app_file="app.py",
        license="bsd-3-clause",
        models=hub_ids or None,
        tags=["pix2pix", "pix2pixhd", "gan", "image-to-image"],
        emoji="🏛️",
        colorFrom="blue",
        colorTo="yellow",
        pinned=False,
        short_description="Draw a label map or a sketch, pick a style, get a photo.",
    )
    card = SpaceCard.from_template(
        card_data,
        template_str=(TEMPLATES / "README.md").read_text(),
        served=", ".join([*(f"`{n}` (bundled)" for n in names), *hub_ids]),
    )
    card.save(out / "README.md")
    return out


def add_make_space_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-space",
        help="Assemble a Gradio Space folder (app, package source, models) and optionally push it.",
        description=__doc__.splitlines()[0] + " " + " ".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("out", type=Path, help="new folder for the Space")
    parser.add_argument(
        "--model",
        action="append",
        help="pipeline folder (copied in) or Hub id (loaded at start); repeatable. "
        "Default: the pipeline folders in ./models",
    )
    parser.add_argument("--title", default="hf-pix2pixhd")
    parser.add_argument("--push", metavar="REPO_ID", help="upload to this Space with upload_folder")
    parser.add_argument("--private", action="store_true", help="a private Space, with --push")


def run_make_space(args: argparse.Namespace) -> int:
    from .app import default_model_sources

    models = args.model or default_model_sources("models")
    out = make_space(args.out, models, title=args.title)
    print(f"wrote {out}: {', '.join(models)}")
    if args.push:
        url = upload(out, args.push, repo_type="space", space_sdk="gradio", private=args.private)
        print(f"pushed to {args.push}: {url}")
    return 0


__all__ = ["REQUIREMENTS", "add_make_space_parser", "make_space", "requirements", "run_make_space"]
