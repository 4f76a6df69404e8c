"""Records the descriptor layers (and metric) chosen for a generator checkpoint on validation.

    python tools/python/set_descriptor_layers.py MODEL.safetensors 6 [--metric cosine]

writes the checkpoint's metadata `dasgil.descriptor_layers` (encoder layers 1 to 8, each once,
comma-separated: `6`, `5,6`), which `build-map`, `localize`, `evaluate` and the node then use
when `--layers` is not given (without it: the paper's, e5 for a CD model, e5 + e6 for FD).
`--metric` writes `dasgil.metric` (l1, l2 or cosine; `none` removes it), the metric they search
with when `--metric` is not given (without it: the reference's l1).
The tensors and every other metadata field are kept as they are, so maps built with the file
before stay valid (a map records its own layers); `none` removes the field. A weight other
than 1 is written `5*0.5`. The file is rewritten through a temporary file in its folder
(flushed to disk, then renamed over it), keeping the file's permissions.
tools/train-shipped-model.sh calls it when it ships a model (LAYERS=...).
"""

import argparse
import os
import sys
import tempfile

from safetensors import safe_open
from safetensors.torch import save_file

FIELD = "dasgil.descriptor_layers"
METRIC_FIELD = "dasgil.metric"


def fail(message):
    sys.exit(f"{os.path.basename(sys.argv[0])}: {message}")


def parse_layers(text):
    """The same form src/model/descriptor.rs reads: `6`, `5,6`, `5*0.5,6`."""
    bad = f"layers: expected encoder layers 1 to 8 such as 6 or 5,6 (a weight above 0: 5*0.5), found `{text}`"
    layers, parts = [], []
    for part in text.split(","):
        layer, _, weight = part.strip().partition("*")
        layer = layer.strip()
        if not layer.isdigit() or not 1 <= int(layer) <= 8:
            fail(bad)
        if weight:
            try:
                w = float(weight)
            except ValueError:
                fail(bad)
            if not (w > 0 and w != float("inf")):
                fail(bad)
        if int(layer) in layers:
            fail(f"layers: expected each encoder layer once, found `{text}` (layer {layer} twice)")
        layers.append(int(layer))
        parts.append(layer if not weight or float(weight) == 1.0 else f"{layer}*{weight.strip()}")
    return ",".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a generator checkpoint (.safetensors) written by dasgil-tools")
    ap.add_argument("layers", help="e.g. 6 or 5,6; `none` removes the field")
    ap.add_argument("--metric", choices=["l1", "l2", "cosine", "none"],
                    help="also record the metric (`none` removes it); default: left as it is")
    a = ap.parse_args()
    layers = None if a.layers == "none" else parse_layers(a.layers)
    if os.path.isdir(a.model):
        fail(f"{a.model}: is a folder; expected a generator checkpoint (.safetensors)")
    if not os.path.isfile(a.model):
        fail(f"{a.model}: no such file; expected a generator checkpoint (.safetensors)")
    try:
        with safe_open(a.model, framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for a file that is not one
        fail(f"{a.model}: not a safetensors file ({e})")
    network = metadata.get("dasgil.network")
    if "dasgil.map" in metadata:
        fail(f"{a.model}: a dasgil map, not a checkpoint: a map records the layers it was built "
             "with; give the generator checkpoint it was built from")
    if network != "generator":
        fail(f"{a.model}: dasgil.network: expected generator, found {network or 'nothing'}")
    before = metadata.get(FIELD, "(none: the paper default)")
    if layers is None:
        metadata.pop(FIELD, None)
    else:
        metadata[FIELD] = layers
    metric_before = metadata.get(METRIC_FIELD, "(none: l1)")
    if a.metric == "none":
        metadata.pop(METRIC_FIELD, None)
    elif a.metric is not None:
        metadata[METRIC_FIELD] = a.metric
    folder = os.path.dirname(os.path.abspath(a.model))
    mode = os.stat(a.model).st_mode & 0o7777
    try:
        fd, tmp = tempfile.mkstemp(prefix=".set-layers-", suffix=".safetensors", dir=folder)
    except OSError as e:
        fail(f"{a.model}: cannot write beside it in {folder} ({e.strerror}); the file is unchanged")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, a.model)
    except OSError as e:
        fail(f"{a.model}: cannot rewrite it ({e}); the file is unchanged")
    finally:
        # Gone after the rename; left only when something failed before it.
        if os.path.exists(tmp):
            os.unlink(tmp)
    # The rename itself to disk (the file is already the new one here).
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    print(f"{a.model}: {FIELD} {before} -> {layers or '(none: the paper default)'}")
    if a.metric is not None:
        print(f"{a.model}: {METRIC_FIELD} {metric_before} -> "
              f"{a.metric if a.metric != 'none' else '(none: l1)'}")


if __name__ == "__main__":
    main()
