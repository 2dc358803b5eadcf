"""App latency and robustness under load: a real Gradio server, gradio_client at 256x256 on CPU.

    python bench/app_load.py [--model DIR] [--requests 32] [--concurrency 16]
    python bench/app_load.py --mixed [--clients 24] [--duration 60] [--rounds 3] [--bad 0.3]

Serves a bundled model (default: models/facades; without it, a random model of the same
architecture: latency does not depend on the weights), then measures single-request latency
(sequential) and latency with ``--concurrency`` requests in flight, reporting p50 / p95 and the
error count. Target: p50 single-request latency under 0.5 s.

``--mixed``: the server runs in its own process (loopback only, a free port, its own $TMPDIR
and Gradio cache); ``--clients`` gradio_client clients send requests for ``--duration`` seconds
per round (at most ``--max-requests`` per round), a ``--bad`` fraction of them bad inputs
(non-image, truncated, empty, greyscale, 5000x5000, bad seeds, style codes and references).
Per round it prints errors on valid requests (target 0), bad inputs answered with a readable
message, the server's RSS (target: flat within 100 MB after the first round) and the files
and bytes in its $TMPDIR and Gradio cache (target: no growth beyond the cache's age window).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL.Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def demo_sized_model(folder: Path) -> Path:
    """A random-weight stand-in with the bundled facades model's architecture."""
    import torch

    from hf_pix2pixhd import FeatureEncoder, GlobalGenerator
    from hf_pix2pixhd.labels import FACADES_PALETTE
    from hf_pix2pixhd.pipeline import Pix2PixHDPipeline
    from hf_pix2pixhd.styles import StyleBank

    torch.manual_seed(0)
    bank = StyleBank(num_classes=12, feature_nc=3)
    bank.num_clusters.fill_(10)
    pipe = Pix2PixHDPipeline(
        GlobalGenerator(in_channels=15, ngf=32, n_downsampling=3, n_blocks=6),
        encoder=FeatureEncoder(),
        style_bank=bank,
        input_kind="labels",
        label_nc=12,
        palette=FACADES_PALETTE,
        feature_nc=3,
    )
    pipe.save_pretrained(folder)
    return folder


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "facades"))
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--mixed", action="store_true", help="mixed valid/bad load, see above")
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bad", type=float, default=0.3, help="fraction of bad inputs")
    parser.add_argument("--max-requests", type=int, default=5000, help="per round")
    parser.add_argument(
        "--cache-age", type=int, default=30, help="server's delete_cache age (s) in --mixed"
    )
    args = parser.parse_args()

    from hf_pix2pixhd.labels import FACADES_PALETTE

    tmp = Path(tempfile.mkdtemp())
    model = Path(args.model)
    if not (model / "model_index.json").is_file():
        print(f"{model} has no pipeline: using a random model of the demo architecture")
        model = demo_sized_model(tmp / "facades")
    ids = np.random.default_rng(0).integers(0, 12, (8, 8)).repeat(32, 0).repeat(32, 1)
    label_map = tmp / "labels.png"
    PIL.Image.fromarray(FACADES_PALETTE.ids_to_colors(ids)).save(label_map)
    if args.mixed:
        run_mixed(args, model, label_map, tmp)
        return
    latency(args, model, label_map)


def latency(args: argparse.Namespace, model: Path, label_map: Path) -> None:
    """Single-request and concurrent latency, server in this process."""
    from gradio_client import Client, handle_file

    from hf_pix2pixhd.app import create_demo

    demo = create_demo([str(model)])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    editor = {
        "background": handle_file(str(label_map)),
        "layers": [],
        "composite": handle_file(str(label_map)),
    }
    name = model.name

    def request(seed: int) -> float:
        start = time.perf_counter()
        client.predict(name, editor, "random", "", seed, None, api_name="/generate")
        return time.perf_counter() - start

    for seed in range(3):  # warm-up
        request(seed)
    sequential = [request(seed) for seed in range(args.requests)]
    errors = 0
    concurrent: list[float] = []
    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        for future in [pool.submit(request, seed) for seed in range(args.requests)]:
            try:
                concurrent.append(future.result())
            except Exception:
                errors += 1
    wall = time.perf_counter() - start
    demo.close()
    print(f"\nmodel: {model}, 256x256 label map, style 'random'")
    print("| load | requests | errors | p50 s | p95 s | throughput req/s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| sequential | {len(sequential)} | 0 | {statistics.median(sequential):.3f} | "
        f"{percentile(sequential, 95):.3f} | {len(sequential) / sum(sequential):.1f} |"
    )
    print(
        f"| {args.concurrency} concurrent | {args.requests} | {errors} | "
        f"{statistics.median(concurrent):.3f} | {percentile(concurrent, 95):.3f} | "
        f"{len(concurrent) / wall:.1f} |"
    )


SERVER = """
import sys
from hf_pix2pixhd.app import create_demo
demo = create_demo([sys.argv[1]])
demo.delete_cache = (max(1, int(sys.argv[3]) // 3), int(sys.argv[3]))
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[2]), quiet=True)
"""


def bad_corpus(folder: Path, label_map: Path) -> list[tuple[str, dict]]:
    """(name, overrides of the valid request) for each bad input; files are written here."""
    import io

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.png").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    data = label_map.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    PIL.Image.new("L", (256, 256), 128).save(folder / "grey.png")
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (5000, 5000), (0, 0, 222)).save(buffer, "PNG")
    (folder / "huge.png").write_bytes(buffer.getvalue())
    files = {n: folder / f"{n}.png" for n in ("notes", "empty", "truncated", "grey", "huge")}
    corpus = [(f"editor:{n}", {"editor": p}) for n, p in files.items()]
    corpus += [
        ("seed:1e30", {"seed": 10**30}),
        ("seed:abc", {"seed": "abc"}),
        ("seed:-1", {"seed": -1}),
        ("style:balcony=x", {"mode": "pick per class", "code": "balcony=x"}),
        ("style:window=99", {"mode": "pick per class", "code": "window=99"}),
        ("reference:notes", {"mode": "reference photo", "reference": files["notes"]}),
        ("reference:missing", {"mode": "reference photo", "reference": None}),
        ("reference:no-label-map", {"mode": "reference photo", "reference": files["grey"]}),
    ]
    return corpus


def tree_size(folder: Path) -> tuple[int, int, int]:
    """(files, directories, bytes) under ``folder``."""
    files = dirs = size = 0
    for path in folder.rglob("*"):
        if path.is_dir():
            dirs += 1
        elif path.is_file():
            files += 1
            size += path.stat().st_size
    return files, dirs, size


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def mixed_round(
    url: str, name: str, requests: list[tuple[str, dict]], args: argparse.Namespace, seed: int
) -> tuple[dict[str, int], dict[str, int]]:
    """One round: ``args.clients`` clients, each its own gradio_client, until the deadline."""
    import collections
    import random
    import threading

    from gradio_client import Client, handle_file

    stats: collections.Counter[str] = collections.Counter()
    problems: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + args.duration

    def client_loop(client_seed: int) -> None:
        rng = random.Random(client_seed)
        client = Client(url, verbose=False, download_files=str(args.downloads / str(client_seed)))
        while time.monotonic() < deadline:
            with lock:
                if stats["sent"] >= args.max_requests:
                    return
                stats["sent"] += 1
            bad = rng.random() < args.bad
            label, request = rng.choice(requests[1:] if bad else requests[:1])
            request = dict(request)
            draw = rng.random()
            if not bad and draw < 0.3:  # a reference photo with its own label map
                request.update(
                    mode="reference photo", reference=args.reference, labels=request["editor"]
                )
            elif not bad and draw < 0.6:  # identical results: the case that cut downloads
                request.update(mode="default")
            editor = handle_file(str(request["editor"]))
            reference = request["reference"]
            try:
                client.predict(
                    name,
                    {"background": editor, "layers": [], "composite": editor},
                    request["mode"],
                    request["code"],
                    rng.randrange(2**32) if request["seed"] is None else request["seed"],
                    handle_file(str(reference)) if reference else None,
                    handle_file(str(request["labels"])) if request.get("labels") else None,
                    api_name="/generate",
                )
                outcome, detail = ("bad unexpected" if bad else "valid ok"), f"{label}: succeeded"
            except Exception as error:  # counted and reported
                message = str(error)
                generic = not message or "raised an exception" in message
                outcome = (
                    ("bad unexpected" if generic else "bad answered") if bad else "valid errors"
                )
                detail = f"{label}: {type(error).__name__}: {message[:160]}"
            with lock:
                stats[outcome] += 1
                if outcome in ("bad unexpected", "valid errors"):
                    problems[detail] += 1

    threads = [threading.Thread(target=client_loop, args=(seed + i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stats, problems


def run_mixed(args: argparse.Namespace, model: Path, label_map: Path, tmp: Path) -> None:
    """Rounds of mixed valid / bad requests against a server in its own process."""
    import os
    import subprocess

    from gradio_client import Client

    server_tmp, cache = tmp / "server-tmp", tmp / "gradio-cache"
    server_tmp.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, TMPDIR=str(server_tmp), GRADIO_TEMP_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", SERVER, str(model), str(port), str(args.cache_age)]
    server = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                Client(url, verbose=False, download_files=False)
                break
            except Exception:  # not up yet
                if server.poll() is not None:
                    raise SystemExit("the server exited") from None
                time.sleep(0.5)
        args.reference = tmp / "reference.png"
        PIL.Image.new("RGB", (256, 256), (180, 120, 60)).save(args.reference)
        args.downloads = tmp / "downloads"
        valid = {"editor": label_map, "mode": "random", "code": "", "seed": None, "reference": None}
        requests = [("valid", valid)]
        requests += [(label, {**valid, **bad}) for label, bad in bad_corpus(tmp / "bad", label_map)]
        print(
            f"model: {model}; {args.clients} clients, {args.duration:g} s x {args.rounds} rounds, "
            f"{args.bad:.0%} bad inputs; server delete_cache age {args.cache_age} s"
        )
        print(
            "| round | valid ok | valid errors | bad answered | bad unexpected | server RSS MB "
            "| $TMPDIR files | cache files / dirs / MB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for round_index in range(1, args.rounds + 1):
            stats, problems = mixed_round(url, model.name, requests, args, 1000 * round_index)
            time.sleep(1)
            files, dirs, size = tree_size(cache)
            print(
                f"| {round_index} | {stats['valid ok']} | {stats['valid errors']} | "
                f"{stats['bad answered']} | {stats['bad unexpected']} | "
                f"{rss_mb(server.pid):.0f} | {tree_size(server_tmp)[0]} | "
                f"{files} / {dirs} / {size / 1e6:.1f} |",
                flush=True,
            )
            for detail, count in sorted(problems.items(), key=lambda kv: -kv[1])[:10]:
                print(f"    {count} x {detail}")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
