#!/usr/bin/env python3
"""Puts realistic one-line bugs into the product, one at a time, and runs the test that should
catch each (issue #21; docs/testing.md "Mutations").

Each mutation names a file, an exact text that occurs once in it, its replacement, and the
targeted test (cargo test arguments). For each: apply, `cargo test --release ...`, record
whether the test failed, how long the test itself ran (libtest's "finished in"), and the first
failure message; then restore the file byte for byte. At the end the tree is rebuilt unmutated.

    tools/python/mutations.py                 # every mutation, a markdown table on stdout
    tools/python/mutations.py --only bn-eps-dropped,min-confidence-inclusive
    tools/python/mutations.py --list
    tools/python/mutations.py --json build/mutations.json

Run it in a tree with no other edits in progress: it changes files under src/ while it runs
(each is restored in a `finally`, and the run stops if a file is not as it was). It needs
`source tools/env.sh` (libtorch, ROS 2), as the test command does.
Exit status: 0 when every mutation was caught, 1 when one survived or ran past a minute,
2 on a harness error (a text not found once, a mutant that does not compile, no test run).
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_LIMIT_S = 60.0
LIB = ["--lib"]

# (id, file, find, replace, cargo test arguments, the test filter, what the bug is)
MUTATIONS = [
    ("prior-calibration-dropped", "src/localize/prior.rs",
     "SIGMA_POSITION.powi(2)) * calibration",
     "SIGMA_POSITION.powi(2))",
     LIB, "localize::prior::tests::", "the position block without the fitted calibration factor"),
    ("prior-confidence-ratio", "src/localize/prior.rs",
     "(1.0 - d1 / alt).clamp(0.0, 1.0)",
     "(d1 / alt).clamp(0.0, 1.0)",
     LIB, "localize::prior::tests::", "confidence d1/d_alt instead of 1 - d1/d_alt"),
    ("prior-wrong-weight", "src/localize/prior.rs",
     "(1.0 - confidence / CONFIDENT).max(0.0)",
     "(1.0 - confidence * CONFIDENT).max(0.0)",
     LIB, "localize::prior::tests::", "the wrong-match weight's ramp multiplied, not divided"),
    ("prior-rotation-floor-dropped", "src/localize/prior.rs",
     "let sr = ar / wsum + Matrix3::identity() * SIGMA_ROTATION.powi(2) + br * (a / n);",
     "let sr = ar / wsum + br * (a / n);",
     LIB, "localize::prior::tests::", "no floor on the rotation block"),
    ("prior-extrinsic-inverted", "src/localize/prior.rs",
     "let world_from_base = prior.pose * base_from_cam.inverse();",
     "let world_from_base = prior.pose * base_from_cam;",
     LIB, "localize::prior::tests::", "base_from_camera applied the wrong way round"),
    ("min-confidence-inclusive", "src/localize/mod.rs",
     "confidence < min_confidence",
     "confidence <= min_confidence",
     LIB, "localize::", "a match exactly at min_confidence withheld"),
    ("descriptor-global-scale", "src/extract/mod.rs",
     "repeat_n(1.0f32 / n as f32, n as usize)",
     "repeat_n(1.0f32 / spec.len(&cfg) as f32, n as usize)",
     ["--test", "descriptor"], "two_layer", "one 1/D for the whole descriptor, not 1/len per layer"),
    ("bn-eps-dropped", "src/model/layers.rs",
     "(&self.bn.running_var + 1e-5).rsqrt()",
     "(&self.bn.running_var + 0.0).rsqrt()",
     ["--test", "descriptor"], "folded", "BatchNorm folded without eps"),
    ("bn-bias-unscaled", "src/model/descriptor.rs",
     "bias: &b * &scale + &shift,",
     "bias: &b + &shift,",
     ["--test", "descriptor"], "folded", "the conv bias not scaled by the BN fold"),
    ("compressed-no-rerank", "src/retrieval/compress.rs",
     "let distance = super::row_distance(descs, dim, metric, query, h.index, &mut buf);",
     "let distance = h.distance + 0.0 * super::row_distance(descs, dim, metric, query, h.index, &mut buf);",
     LIB, "retrieval::compress::tests::", "the compressed search returns the codes' order, not re-ranked"),
    ("bgra8-as-rgba8", "src/data/raw_image.rs",
     '"bgra8" => colour(4, 1, [2, 1, 0]),',
     '"bgra8" => colour(4, 1, [0, 1, 2]),',
     LIB, "data::raw_image::tests::", "bgra8 frames decoded as rgba8"),
    ("bgr16-as-rgb16", "src/data/raw_image.rs",
     '"bgr16" => colour(3, 2, [2, 1, 0]),',
     '"bgr16" => colour(3, 2, [0, 1, 2]),',
     LIB, "data::raw_image::tests::", "bgr16 frames decoded as rgb16"),
    ("mono16-byte-order", "src/data/raw_image.rs",
     "if depth == 2 && !big_endian {",
     "if depth == 2 && big_endian {",
     LIB, "data::raw_image::tests::", "16-bit frames take the low byte"),
    ("yuyv-as-uyvy", "src/data/raw_image.rs",
     '"yuv422_yuy2" | "yuyv" => Layout::Yuv422 {\n            order: [0, 1, 2, 3],',
     '"yuv422_yuy2" | "yuyv" => Layout::Yuv422 {\n            order: [1, 0, 3, 2],',
     LIB, "data::raw_image::tests::", "yuyv frames read in uyvy byte order"),
    ("bayer-rggb-as-bggr", "src/data/robotcar.rs",
     "Self::Rggb => [[0, 1], [1, 2]],",
     "Self::Rggb => [[2, 1], [1, 0]],",
     LIB, "data::", "the RGGB mosaic demosaiced as BGGR"),
    ("submission-world-from-cam", "src/eval/mod.rs",
     ".map(|l| (l.name.clone(), l.world_from_cam.inverse()))",
     ".map(|l| (l.name.clone(), l.world_from_cam))",
     LIB, "eval::tests::", "submission.txt holds world_from_cam, not cam_from_world"),
    ("submission-line-centre", "src/geom/conventions.rs",
     "let q = wxyz(&cam_from_world.rotation);\n    let t = cam_from_world.translation.vector;",
     "let q = wxyz(&cam_from_world.rotation);\n    let t = cam_from_world.inverse().translation.vector;",
     LIB, "geom::", "a submission line with the camera centre as t"),
    ("eval-rotation-radians", "src/eval/offline.rs",
     "(a.rotation.inverse() * b.rotation).angle().to_degrees()",
     "(a.rotation.inverse() * b.rotation).angle()",
     LIB, "eval::offline::tests::", "rotation errors in radians compared with degree thresholds"),
    ("eval-threshold-either", "src/eval/offline.rs",
     "r.position_error <= t.0 && r.rotation_error <= t.1",
     "r.position_error <= t.0 || r.rotation_error <= t.1",
     LIB, "eval::offline::tests::", "accuracy counting a query within either threshold"),
    ("filter-uniform-share-dropped", "src/localize/sequence.rs",
     "let mut next = vec![UNIFORM_SHARE / n as f64; n];",
     "let mut next = vec![0.0; n];",
     LIB, "localize::sequence::tests::", "the filter's kidnapping share dropped"),
    ("filter-likelihood-sign", "src/localize/sequence.rs",
     "lik[p] = lik[p].max((-(h.distance as f64 - d1) / scale).exp());",
     "lik[p] = lik[p].max(((h.distance as f64 - d1) / scale).exp());",
     LIB, "localize::sequence::tests::", "the filter rewards far descriptors"),
    ("tf-slerp-weight", "src/bag/tf.rs",
     "let q = qa.try_slerp(&qb, w, 1e-12).unwrap_or(qa);",
     "let q = qa.try_slerp(&qb, 1.0 - w, 1e-12).unwrap_or(qa);",
     LIB, "bag::tf::tests::", "TF rotation interpolated from the wrong end"),
    ("tf-long-arc", "src/bag/tf.rs",
     "let q = qa.try_slerp(&qb, w, 1e-12).unwrap_or(qa);",
     "let q = nalgebra::UnitQuaternion::new_normalize(qa.into_inner().lerp(&qb.into_inner(), w));",
     LIB, "bag::tf::tests::", "TF rotation lerped without the shorter-arc flip"),
    ("tf-lerp-weight", "src/bag/tf.rs",
     "let t = a.translation.vector.lerp(&b.translation.vector, w);",
     "let t = a.translation.vector.lerp(&b.translation.vector, 1.0 - w);",
     LIB, "bag::tf::tests::", "TF translation interpolated from the wrong end"),
    ("gating-radius-not-squared", "src/retrieval/mod.rs",
     "within_unsorted::<kiddo::SquaredEuclidean>(&p, r * r)",
     "within_unsorted::<kiddo::SquaredEuclidean>(&p, r)",
     LIB, "retrieval::tests::", "geo-gating with the radius, not its square"),
    ("l1-tail-abs-dropped", "src/retrieval/mod.rs",
     "let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y).abs()).sum();",
     "let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x - y).sum();",
     LIB, "retrieval::tests::", "L1 without abs on the last D mod 16 values"),
    ("triplet-swapped", "src/model/losses.rs",
     "let term = ((-(&dn / (&dp + spec.margin))) + 1.0)",
     "let term = ((-(&dp / (&dn + spec.margin))) + 1.0)",
     ["--test", "losses"], "triplet_matches_hand_values", "the triplet ratio with positive and negative swapped"),
    ("node-warn-at-half", "src/node/mod.rs",
     "self.withheld > QUALITY_WARN_WITHHELD",
     "self.withheld >= QUALITY_WARN_WITHHELD",
     LIB, "node::tests::", "the node warns with exactly half its frames withheld"),
    ("odometry-jitter-summed", "src/localize/odometry.rs",
     "if step >= MIN_STEP {",
     "if step >= 0.0 {",
     LIB, "localize::odometry::tests::", "every jittering odometry step added to the path"),
    ("odometry-centre-on-path", "src/localize/sequence.rs",
     "                m.displacement.abs(),\n",
     "                m.path.abs(),\n",
     LIB, "localize::sequence::tests::", "the motion kernel centred on the path length, not the displacement"),
    ("node-odometry-unused", "src/localize/mod.rs",
     "let travel = if fresh { None } else { travel };",
     "let travel = if fresh { None } else { travel.filter(|_| false) };",
     ["--test", "node_frames"], "odometry",
     "the node reads odometry but the filter moves by the speed bound"),
    ("odometry-heading-backwards", "src/localize/sequence.rs",
     "Some(h) => self.shifted(places, h * u * elapsed.signum(), directed_width),",
     "Some(h) => self.shifted(places, -h * u * elapsed.signum(), directed_width),",
     LIB, "localize::sequence::tests::odometry",
     "with odometry, the belief moved against the velocity, not along it"),
    ("eval-odometry-unused", "src/eval/offline.rs",
     ".and_then(|o| o.travelled(filter.last_time(), time));",
     ".and_then(|o| o.travelled(filter.last_time(), time).filter(|_| false));",
     ["--test", "bags"], "odometry",
     "evaluate reads the recording's odometry but the filter moves by the speed bound"),
    ("descriptor-layers-ignored", "src/extract/mod.rs",
     "meta.descriptor_layers.clone().unwrap_or_else(|| {",
     "None.unwrap_or_else(|| {",
     LIB, "model::checkpoint::tests::recorded_descriptor_layers",
     "a checkpoint's recorded descriptor layers are ignored: the shipped model retrieves with e5"),
    ("between-images-floor-dropped", "src/localize/sequence.rs",
     "let ground = reach.max(BETWEEN_SPACING * places.spacing) + beyond_end;",
     "let ground = reach + beyond_end;",
     LIB, "localize::sequence::tests::a_settled_belief",
     "the filter's ellipsoid loses its floor of half the map's spacing: a settled belief "
     "claims the truth lies on the map image"),
]

FINISHED = re.compile(r"test result: .*finished in ([0-9.]+)s")
BUILT = re.compile(r"Finished `release` profile .* in ([0-9.]+)(m?s)")


def run_one(m, log):
    mid, rel, find, repl, target, filt, _ = m
    path = ROOT / rel
    original = path.read_bytes()
    text = original.decode()
    n = text.count(find)
    if n != 1:
        raise SystemExit(f"{mid}: `{find}` occurs {n} times in {rel}, expected once")
    try:
        path.write_text(text.replace(find, repl))
        cmd = ["cargo", "test", "--release", *target, "--", filt]
        t0 = time.monotonic()
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        wall = time.monotonic() - t0
    finally:
        path.write_bytes(original)
    out = p.stdout + p.stderr
    log.write(f"===== {mid}: {' '.join(cmd)} (rc {p.returncode})\n{out}\n")
    broken = None
    if "error[E" in out or "could not compile" in out:
        broken = "the mutant does not compile (see the log)"
    ran = [float(x) for x in FINISHED.findall(out)]
    if not ran and not broken:
        broken = f"no test ran (filter `{filt}`; see the log)"
    if broken:
        return {"id": mid, "file": rel, "caught": False, "test_seconds": 0.0,
                "wall_seconds": round(wall, 1), "failing_tests": [], "message": "",
                "harness_error": broken}
    failed = p.returncode != 0 and "FAILED" in out
    msg = ""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if "panicked at" in line:
            msg = " ".join(s.strip() for s in lines[i + 1:i + 3] if s.strip() and "note:" not in s)
            break
    failing = re.findall(r"^test (\S+) \.\.\. FAILED", out, re.M)
    return {
        "id": mid,
        "file": rel,
        "caught": failed,
        "test_seconds": sum(ran),
        "wall_seconds": round(wall, 1),
        "failing_tests": failing,
        "message": msg[:300],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated mutation ids")
    ap.add_argument("--from", dest="start", help="start at this mutation id (resume a run)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--log", type=Path, default=ROOT / "build" / "mutations.log",
                    help="every cargo output (default build/mutations.log)")
    a = ap.parse_args()
    chosen = MUTATIONS
    if a.only:
        want = a.only.split(",")
        known = {m[0] for m in MUTATIONS}
        bad = [w for w in want if w not in known]
        if bad:
            print(f"--only: unknown mutation {', '.join(bad)}; known: {', '.join(sorted(known))}",
                  file=sys.stderr)
            return 2
        chosen = [m for m in MUTATIONS if m[0] in want]
    if a.start:
        ids = [m[0] for m in chosen]
        if a.start not in ids:
            print(f"--from: unknown mutation {a.start}", file=sys.stderr)
            return 2
        chosen = chosen[ids.index(a.start):]
    if a.list:
        for m in chosen:
            print(f"{m[0]:30} {m[1]:28} {m[6]}")
        return 0
    # Every text must be found before anything is changed.
    for m in chosen:
        n = (ROOT / m[1]).read_text().count(m[2])
        if n != 1:
            print(f"{m[0]}: `{m[2]}` occurs {n} times in {m[1]}, expected once", file=sys.stderr)
            return 2
    a.log.parent.mkdir(parents=True, exist_ok=True)
    results = []
    with open(a.log, "w") as log:
        try:
            for i, m in enumerate(chosen, 1):
                print(f"[{i}/{len(chosen)}] {m[0]} ...", file=sys.stderr, flush=True)
                r = run_one(m, log)
                r["bug"] = m[6]
                results.append(r)
                verdict = ("HARNESS ERROR: " + r["harness_error"] if r.get("harness_error")
                           else "caught" if r["caught"] else "SURVIVED")
                print(f"    {verdict} by {', '.join(r['failing_tests']) or '-'} in "
                      f"{r['test_seconds']:.2f} s", file=sys.stderr, flush=True)
        finally:
            # The unmutated tree, built again, so target/ holds no mutant.
            subprocess.run(["cargo", "build", "--release", "--all-targets"], cwd=ROOT,
                           capture_output=True)
    print("| mutation | the bug | caught by | test time | message |")
    print("|---|---|---|---|---|")
    for r in results:
        if r.get("harness_error"):
            by = f"**{r['harness_error']}**"
        elif r["caught"]:
            by = ", ".join(t.split("::")[-1] for t in r["failing_tests"])
        else:
            by = "**survived**"
        msg = r["message"].replace("|", "\\|")
        print(f"| {r['id']} | {r['bug']} | {by} | {r['test_seconds']:.2f} s | {msg} |")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    if any(r.get("harness_error") for r in results):
        return 2
    ok = all(r["caught"] and r["test_seconds"] < TEST_LIMIT_S for r in results)
    print(f"\n{sum(r['caught'] for r in results)} of {len(results)} caught"
          f", slowest targeted test {max((r['test_seconds'] for r in results), default=0):.2f} s",
          file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
