"""A peer of `dasgil-tools build-map` for benches/build_map.rs: the same job written the usual
way, a PIL + PyTorch loop. It decodes each database image of an Extended CMU-Seasons slice with
PIL, resizes it bicubically to the model's input, normalises it, runs the generator's encoder up
to the map's deepest descriptor layer in batches, scales and concatenates the layers as the map
does, and writes descriptors and names to a safetensors file.

    python peer_build_map.py --root R --slice N --checkpoint C --layers 5:1.0 \
        --out F [--threads 2] [--batch 8]

Prints one JSON line: {"images": n, "loop_s": seconds from the first decode to the last row}.
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dasgil_torch import load_dasgil_checkpoint  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--slice", type=int, required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--layers", required=True, help="layer:weight,... e.g. 5:1.0")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    net, h, w = load_dasgil_checkpoint(a.checkpoint)
    layers = [(int(lw.split(":")[0]), float(lw.split(":")[1])) for lw in a.layers.split(",")]
    deepest = max(layer for layer, _ in layers)

    paths = sorted(glob.glob(os.path.join(a.root, f"slice{a.slice}", "database", "*.jpg")))
    if not paths:
        sys.exit(f"no database images under {a.root}/slice{a.slice}/database")
    rows = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(paths), a.batch):
            batch = []
            for path in paths[start:start + a.batch]:
                img = Image.open(path).convert("RGB").resize((w, h), Image.BICUBIC)
                x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
                batch.append((x - 0.5) / 0.5)
            feats = net.encode(torch.stack(batch), deepest)
            n = len(batch)
            rows.append(torch.cat(
                [feats[layer - 1].reshape(n, -1) * (wt / feats[layer - 1][0].numel())
                 for layer, wt in layers], 1))
    loop_s = time.perf_counter() - t0
    save_file({"descriptors": torch.cat(rows).contiguous()}, a.out,
              metadata={"names": json.dumps([os.path.basename(p) for p in paths])})
    print(json.dumps({"images": len(paths), "loop_s": loop_s}), flush=True)


if __name__ == "__main__":
    main()
