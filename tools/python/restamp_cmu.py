#!/usr/bin/env python3
"""Copy an Extended CMU-Seasons-format slice with its query timestamps rewritten, to measure the
sequence filter (docs/sequence-filter.md) on frames whose stamps do not follow the vehicle.

The CMU format carries each image's timestamp in its name (img_<index>_<camera>_<stamp>us.jpg);
this renames the query images and rewrites every .txt file of the slice that names them.

Modes:
  send       as `dasgil-tools replay --stamps send --rate RATE` stamps them: the k-th query of
             camera j (in name order, which is list order in the synthetic worlds) at
             k/RATE + j/(RATE * cameras) seconds; no gap between traversals.
  send-gaps  the same, with an hour added wherever the data had more than 60 s between two
             consecutive queries of a camera, either way (the traversals stay apart).
  data-nogap the data's own stamps in time order, every gap over 60 s shortened to 0.5 s (the
             traversals follow each other: a kidnapping at each change).

Usage: restamp_cmu.py SRC_ROOT DST_ROOT --rate 10 --mode send
(SRC_ROOT as rendered, e.g. ~/.cache/dasgil/cmu_calibration; then `dasgil-tools evaluate
--format cmu --root DST_ROOT --slice N --cameras c0,c1 --filter sequence --out DIR`.)
"""
import argparse
import os
import re
import shutil
import sys

STAMP = re.compile(r"_(\d+)us\.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--rate", type=float, default=10.0, help="frames per second and camera")
    ap.add_argument("--mode", choices=["send", "send-gaps", "data-nogap"], default="send")
    a = ap.parse_args()
    if not os.path.isdir(a.src):
        sys.exit(f"{a.src}: no such folder")
    if os.path.exists(a.dst):
        sys.exit(f"{a.dst}: exists; give a new folder")
    if not a.rate > 0:
        sys.exit(f"--rate: expected frames per second > 0, found {a.rate}")
    shutil.copytree(a.src, a.dst)
    for sl in sorted(os.listdir(a.dst)):
        d = os.path.join(a.dst, sl)
        q = os.path.join(d, "query")
        if not (sl.startswith("slice") and os.path.isdir(q)):
            continue
        names = sorted(n for n in os.listdir(q) if STAMP.search(n))
        cams = sorted({n.split("_")[2] for n in names})
        ts = lambda n: int(STAMP.search(n).group(1))
        renamed = {}
        for j, c in enumerate(cams):
            mine = [n for n in names if n.split("_")[2] == c]
            if a.mode == "data-nogap":
                mine.sort(key=ts)
            shift = 0
            for k, n in enumerate(mine):
                gap = ts(n) - ts(mine[k - 1]) if k else 0
                if abs(gap) > 60_000_000:
                    if a.mode == "send-gaps":
                        shift += 3_600_000_000
                    elif a.mode == "data-nogap":
                        shift -= gap - 500_000
                if a.mode == "data-nogap":
                    t = ts(n) + shift
                else:
                    t = 1_600_000_000_000_000 + shift + round((k / a.rate + j / (a.rate * len(cams))) * 1e6)
                renamed[n] = STAMP.sub(f"_{t:016d}us.", n)
        for n, m in renamed.items():
            os.rename(os.path.join(q, n), os.path.join(q, m))
        for root, _, files in os.walk(d):
            for f in files:
                if f.endswith(".txt"):
                    p = os.path.join(root, f)
                    text = open(p).read()
                    for n, m in renamed.items():
                        text = text.replace(n, m)
                    open(p, "w").write(text)
        print(f"{sl}: {len(renamed)} query images restamped ({a.mode})")


if __name__ == "__main__":
    main()
