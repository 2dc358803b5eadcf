"""Atomic, step-named training checkpoints that are as safe to open as a safetensors file.

A checkpoint is written into ``.tmp-checkpoint-<step>`` and renamed to ``checkpoint-<step>``
only once complete, so a crash (even ``kill -9``) mid-save leaves the previous ones intact; the
newest K are kept. Its last file is ``manifest.json``: the format, and every file with its size
and SHA-256 (about a second per GB, against silent truncation or corruption).

Nothing in a checkpoint is ever unpickled (weights are safetensors, the rest JSON: see
:mod:`.checkpoint_state`). Checkpoints travel (the Hub, shared disks), and a pickle runs code
when it is opened, so :func:`open_checkpoint` refuses a folder that holds one, and names a
missing, truncated or unreadable file together with the previous complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator

_PATTERN = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-checkpoint-"
MANIFEST = "manifest.json"
FORMAT, VERSION = "hf-pix2pixhd-checkpoint", 1
#: Suffixes of files that torch.load / pickle / joblib / numpy (allow_pickle) would open.
PICKLE_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".pk", ".bin", ".pt", ".pth", ".ckpt", ".tar", ".joblib", ".dill",
     ".npy", ".npz"}
)  # fmt: skip
#: Files of the Accelerate ``save_state`` layout that earlier versions wrote.
_ACCELERATE_MARKERS = ("optimizer.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used: the message says why and what to do."""


class CheckpointMismatch(ValueError):
    """A readable file whose tensors do not fit the networks of the config given."""


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint folders in ``folder`` (published by rename, not necessarily intact), oldest
    first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: str | Path) -> int:
    match = _PATTERN.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint folder (expected checkpoint-<step>).")
    return int(match.group(1))


def resolve_resume(resume: str, folder: str | Path) -> Path:
    """``"latest"`` -> the newest checkpoint in ``folder``; a path -> itself; a bare
    ``checkpoint-<step>`` name -> that checkpoint in ``folder``."""
    if resume == "latest":
        checkpoints = list_checkpoints(folder)
        if not checkpoints:
            raise FileNotFoundError(
                f"--resume latest: no checkpoint-<step> folder in {folder}. Start without "
                "--resume, or point --resume at a checkpoint folder."
            )
        return checkpoints[-1]
    path = Path(resume)
    if not path.is_dir() and (Path(folder) / resume).is_dir():
        path = Path(folder) / resume
    if not path.is_dir() or not _PATTERN.match(path.name):
        raise FileNotFoundError(f"--resume {resume}: not a checkpoint-<step> folder.")
    return path


def save_checkpoint(
    accelerator: Accelerator,
    folder: str | Path,
    step: int,
    keep: int,
    write: Callable[[Path], None],
) -> Path:
    """Save ``folder/checkpoint-<step>`` atomically: ``write(temporary_folder)`` runs on every
    process (each writes its own RNG state), then the main process adds the manifest, syncs
    the files to disk and publishes the folder by rename. Afterwards only the newest ``keep``
    checkpoints remain."""
    folder = Path(folder)
    final = folder / f"checkpoint-{step}"
    temporary = folder / f"{_TMP_PREFIX}{step}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
    accelerator.wait_for_everyone()
    write(temporary)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files = {
            p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(temporary.iterdir())
            if p.is_file()
        }
        manifest = {"format": FORMAT, "version": VERSION, "step": step, "files": files}
        (temporary / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _fsync_tree(temporary)
        if final.exists():  # the same step saved again (e.g. final save right after a periodic one)
            shutil.rmtree(final)
        os.replace(temporary, final)
        _fsync_dir(folder)
        for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete half-written checkpoints left by a crash."""
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.glob(f"{_TMP_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder that passed :func:`open_checkpoint`: no pickles, every file of its
    manifest present at its recorded size. ``legacy``: the Accelerate layout of earlier
    versions, of which only the safetensors model files may be read."""

    path: Path
    option: str  # the command-line option that names checkpoints, for messages
    legacy: bool = False
    hint: bool = True  # point at the previous complete checkpoint in errors

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    @contextmanager
    def reading(self, name: str) -> Iterator[Path]:
        """Yield ``path/name``; any error while it is read becomes a :class:`CheckpointError`
        that names the file and the previous complete checkpoint."""
        file = self.path / name
        if not file.is_file():
            raise self.damaged(name, "missing")
        try:
            yield file
        except CheckpointError:
            raise
        except CheckpointMismatch as error:
            raise CheckpointError(
                f"Checkpoint {self.path}: {name} does not fit: {error}. Use the run's own config "
                "and overrides; if they are, the file is damaged. "
                + (_previous_hint(self.path, self.option) if self.hint else "")
            ) from error
        except Exception as error:  # any reader error (safetensors, JSON, shapes): damaged
            raise self.damaged(name, f"damaged ({type(error).__name__}: {error})") from error

    def damaged(self, name: str, problem: str) -> CheckpointError:
        hint = _previous_hint(self.path, self.option) if self.hint else ""
        return CheckpointError(
            f"Checkpoint {self.path}: {name} is {problem}, so this checkpoint cannot be used. "
            + hint
        )


def open_checkpoint(
    path: str | Path, option: str = "--resume", legacy_ok: bool = False, hint: bool = True
) -> Checkpoint:
    """Check a checkpoint folder before anything in it is read.

    Refuses a folder that holds a pickle-style file (such a file runs code when opened, and
    this format never writes one), one whose manifest is missing or damaged, and one with a
    file missing or of another size or SHA-256 than the manifest records. A folder in the
    Accelerate layout of earlier versions is refused too, unless ``legacy_ok`` (export: only
    its safetensors model files are read).
    ``option`` (``--resume`` or ``--checkpoint``) is named in the messages.
    """
    path = Path(path)
    names = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    pickles = sorted(
        str(p.relative_to(path)) for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES
    )
    if MANIFEST not in names and any(n in names for n in _ACCELERATE_MARKERS):
        if legacy_ok:
            return Checkpoint(path, option, legacy=True, hint=hint)
        raise CheckpointError(
            f"Checkpoint {path} is in the Accelerate layout of earlier hf-pix2pixhd versions "
            f"({', '.join(pickles)}): its training state is pickled, and opening a pickle can "
            "run arbitrary code, so this version no longer reads it and cannot resume from it. "
            "Start a new run (checkpoints are now safetensors + JSON). Its weights can still "
            f"be exported: `hf-pix2pixhd export --checkpoint {path}` reads only its safetensors "
            "model files."
        )
    if pickles:
        raise CheckpointError(
            f"Refusing checkpoint {path}: it holds {', '.join(pickles)}, a pickle-style file. "
            "Opening a pickle can run arbitrary code, and hf-pix2pixhd checkpoints never hold "
            "one (weights are safetensors, the rest JSON), so someone else put it there. Do not "
            "use a folder you cannot trust; if you know where the file came from, delete it "
            f"and try again. {_previous_hint(path, option) if hint else ''}"
        )
    checkpoint = Checkpoint(path, option, hint=hint)
    if MANIFEST not in names:
        raise checkpoint.damaged(MANIFEST, "missing (an incomplete or foreign checkpoint)")
    with checkpoint.reading(MANIFEST) as file:
        manifest = json.loads(file.read_text())
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
            raise ValueError(f"not an {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise CheckpointError(
            f"Checkpoint {path} has format version {manifest.get('version')!r}; this "
            f"hf-pix2pixhd reads version {VERSION}. Use the hf-pix2pixhd version that wrote it."
        )
    with checkpoint.reading(MANIFEST):
        files = manifest["files"].items()
        expected = {str(n): (int(r["bytes"]), str(r["sha256"])) for n, r in files}
    for name, (size, digest) in expected.items():
        file = path / name
        if Path(name).name != name or not file.is_file():
            raise checkpoint.damaged(name, "missing")
        if file.stat().st_size != size:
            actual = file.stat().st_size
            raise checkpoint.damaged(
                name, f"damaged ({actual} bytes where {size} were written: truncated or altered)"
            )
        if _sha256(file) != digest:
            raise checkpoint.damaged(
                name, "damaged (its SHA-256 differs from the one recorded when it was written)"
            )
    return checkpoint


def _previous_hint(path: Path, option: str) -> str:
    """Where to go instead: the newest intact checkpoint older than ``path``."""
    try:
        step = checkpoint_step(path)
    except ValueError:
        return ""
    for older in reversed(list_checkpoints(path.parent)):
        if checkpoint_step(older) < step and _is_intact(older):
            return f"The previous complete checkpoint is {older}: use `{option} {older}`."
    return f"There is no earlier complete checkpoint in {path.parent}."


def _is_intact(path: Path) -> bool:
    try:
        open_checkpoint(path, hint=False)
    except CheckpointError:
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
