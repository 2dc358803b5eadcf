"""hf-pix2pixhd demo: draw or upload a label map or sketch, pick a style, get a photo.

python app.py                               # the bundled models (works offline)
python app.py --model DIR_OR_HUB_ID [...]   # other pipelines
"""

from __future__ import annotations

import argparse

from hf_pix2pixhd.app import create_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="pipeline folder or Hub id (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--fp32", action="store_true", help="fp32 instead of bf16 on CPU")
    args = parser.parse_args()
    demo = create_demo(args.model, fast=not args.fp32)
    demo.launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
