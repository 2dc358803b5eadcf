"""hf-pix2pixhd demo: draw or upload a label map or sketch, pick a style, get a photo.

python app.py                               # the models in models/ beside this file (offline)
python app.py --model DIR_OR_HUB_ID [...]   # other pipelines
GRADIO_SERVER_NAME=0.0.0.0 python app.py    # all interfaces (what a Space sets); or --host
"""

from pathlib import Path

from hf_pix2pixhd.app import main

if __name__ == "__main__":
    main(models_dir=Path(__file__).resolve().parent / "models")
