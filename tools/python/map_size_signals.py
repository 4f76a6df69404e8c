"""Match-quality signals on maps of growing size (docs/sequence-filter.md, "Map size").

Scores an Extended CMU-Seasons-format slice's queries against the first P places of its map for
each P of --places, and prints per map size, for the shipped confidence and the alternatives
tried as a confidence that does not fall with the map's size:

- `c`: the shipped confidence, 1 - d_1 / d_alt, d_alt the best distance more than 7.5 m from the
  best match (src/localize/prior.rs);
- `c_rank`: the same with d_alt the k-th best distance more than 7.5 m away, k =
  round((M / M_0)^(1/3)), M the map's images of the query's camera and M_0 their number on the
  smallest map (a fixed quantile of the "elsewhere" distances instead of their
  least, which falls as the map grows);
- `z`: the robust z-score of d_1 among the distances more than 7.5 m away, (median - d_1) / (1.4826
  MAD);
- `self`: the median of the map's own "off the map" confidences: each map image searched
  against the map without the images within 7.5 m of it (what a frame of a place the map does
  not show would get from this map, if it looked like the map's images).

For each: the AUC of right matches (the best map image within 5 m of the truth) against wrong
ones, the median over right matches, and the share of right matches, wrong matches and queries
off the map (no map image within 5 m) kept by the threshold that keeps 90% of the right matches
on the smallest map. A signal that carries across map sizes keeps about 90% of the right
matches on every map without keeping more wrong ones.

The queries' descriptors come from `dasgil-tools build-map` run on a copy of the slice whose
database is its queries (symbolic links; the map's own checkpoint, layers and metric); the
search is exact cosine within the query's camera, as `evaluate` searches. The places of a map of
P places are its first P rows of each camera (the synthetic worlds' order along the route).

    python tools/python/map_size_signals.py --root ~/.cache/dasgil/cmu_calibration_x240 \
        --slice 3 --map MAP_OF_THAT_SLICE --places 30,120,240

numpy and safetensors (tools/setup.sh installs both).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors import safe_open

ALT_RADIUS = 7.5
RIGHT = 5.0


def load_map(path):
    """The map's tensors (numpy) and its `dasgil.map` metadata."""
    with safe_open(path, "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["dasgil.map"])


def unit(d):
    d = d.astype(np.float64)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def query_map(tools, root, slice_, meta, out):
    """build-map of the slice's queries (a copy of the slice whose database is its queries)."""
    src = os.path.join(root, f"slice{slice_}")
    world = os.path.join(os.path.dirname(out), "queries-as-database")
    dst = os.path.join(world, f"slice{slice_}")
    os.makedirs(os.path.join(dst, "database"))
    os.symlink(os.path.join(src, "query"), os.path.join(dst, "query"))
    os.symlink(os.path.join(src, "camera-poses"), os.path.join(dst, "camera-poses"))
    for f in os.listdir(src):
        if f.endswith(".txt") and not f.startswith("ground-truth-database"):
            os.symlink(os.path.join(src, f), os.path.join(dst, f))
    os.symlink(os.path.join(root, "intrinsics.txt"), os.path.join(world, "intrinsics.txt"))
    for img in os.listdir(os.path.join(src, "query")):
        os.symlink(os.path.join(src, "query", img), os.path.join(dst, "database", img))
    with open(os.path.join(src, "camera-poses", f"slice{slice_}-queries.txt")) as f, open(
        os.path.join(dst, f"ground-truth-database-images-slice{slice_}.txt"), "w"
    ) as g:
        g.write(f.read())
    layers = ",".join(str(layer) for layer, _ in meta["encoder"]["layers"])
    cmd = [tools, "build-map", "--format", "cmu", "--root", world, "--slice", str(slice_),
           "--checkpoint", meta["encoder"]["checkpoint"], "--layers", layers,
           "--metric", meta["metric"], "--yaw-views", "none", "--device", "cpu", "--out", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def signals(d, poses, k=1):
    """c, c_rank (the k-th best elsewhere) and z of one query's distances d to the images at
    poses (any order)."""
    o = np.argsort(d, kind="stable")
    d, p = np.maximum(d[o], 0.0), poses[o]
    far = np.linalg.norm(p - p[0], axis=1) > ALT_RADIUS
    el = d[far]
    if len(el) == 0:
        return 1.0, 1.0, 0.0
    c = 1 - d[0] / el[0] if el[0] > 0 else 0.0
    ck = 1 - d[0] / el[min(k, len(el)) - 1] if el[min(k, len(el)) - 1] > 0 else 0.0
    med = np.median(el)
    mad = 1.4826 * np.median(np.abs(el - med))
    z = (med - d[0]) / mad if mad > 0 else 0.0
    return float(np.clip(c, 0, 1)), float(np.clip(ck, 0, 1)), float(z)


def auc(pos, neg):
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    a = np.concatenate([pos, neg])
    r = a.argsort(kind="stable").argsort() + 1
    return (r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="the Extended CMU-Seasons-format world")
    ap.add_argument("--slice", type=int, required=True)
    ap.add_argument("--map", required=True, help="a map of that slice's database (build-map)")
    ap.add_argument("--places", default="30,120,240", help="map sizes, in places per camera")
    ap.add_argument("--tools", default="target/release/dasgil-tools")
    args = ap.parse_args()
    db, meta = load_map(args.map)
    if meta["metric"] != "cosine":
        sys.exit(f"map_size_signals: {args.map}: metric {meta['metric']}; this script searches with cosine")
    enc = meta["encoder"]
    if (enc.get("adaptation", "none") != "none" or enc.get("rectified") or meta.get("yaw_views_deg")
            or "autocontrast" in str(enc.get("normalisation", ""))):
        sys.exit(f"map_size_signals: {args.map}: built with adaptation, rectification, "
                 "photometric normalisation or yaw views; the queries' map is built without them: "
                 "give a map built with build-map's defaults and --yaw-views none")
    with tempfile.TemporaryDirectory() as tmp:
        qpath = os.path.join(tmp, "queries.map.safetensors")
        query_map(args.tools, args.root, args.slice, meta, qpath)
        q, qmeta = load_map(qpath)
    dd, qd = unit(db["descriptors"]), unit(q["descriptors"])
    dp, qp = db["poses"][:, :3], q["poses"][:, :3]
    dcam, qcam = np.array(meta["cameras"]), np.array(qmeta["cameras"])
    sizes = sorted(int(s) for s in args.places.split(","))
    rank = {c: np.cumsum(dcam == c) - 1 for c in set(meta["cameras"])}
    m0 = {c: min(sizes[0], int((dcam == c).sum())) for c in rank}
    thresholds = {}
    print("| places | signal | AUC right vs wrong | median (right) | right kept | wrong kept | off the map kept | self |")
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        rows = []
        for i in range(len(qd)):
            cam = qcam[i]
            idx = np.where((dcam == cam) & (rank[cam] < size))[0]
            k = max(1, int(round((len(idx) / m0[cam]) ** (1 / 3))))
            d = 1.0 - dd[idx] @ qd[i]
            shown = np.min(np.linalg.norm(dp[idx] - qp[i], axis=1)) <= RIGHT
            best = idx[np.argmin(d)]
            right = np.linalg.norm(dp[best] - qp[i]) <= RIGHT
            rows.append((shown, right) + signals(d, dp[idx], k))
        own = []
        for cam in set(meta["cameras"]):
            idx = np.where((dcam == cam) & (rank[cam] < size))[0]
            for a in idx:
                keep = idx[np.linalg.norm(dp[idx] - dp[a], axis=1) > ALT_RADIUS]
                if len(keep):
                    own.append(signals(1.0 - dd[keep] @ dd[a], dp[keep])[0])
        shown = np.array([r[0] for r in rows])
        right = np.array([r[1] for r in rows])
        for col, name in ((2, "c"), (3, "c_rank"), (4, "z")):
            v = np.array([r[col] for r in rows])
            if name not in thresholds:
                if not right.any():
                    sys.exit(f"map_size_signals: no query is right on the map of {size} places: "
                             "no threshold to carry; start --places with a larger map")
                thresholds[name] = np.quantile(v[right], 0.1)
            th = thresholds[name]
            kept = lambda m: f"{(v[m] >= th).mean():.0%}" if m.any() else "-"
            print(f"| {size} | {name} | {auc(v[right], v[~right]):.3f} | {np.median(v[right]):.3f} | "
                  f"{kept(right)} | {kept(~right)} | {kept(~shown)} | "
                  f"{np.median(own) if name == 'c' else '':{'.3f' if name == 'c' else ''}} |")


if __name__ == "__main__":
    main()
