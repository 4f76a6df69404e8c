#!/usr/bin/env bash
# Scores the candidates of a training run (tools/train-shipped-model.sh keeps one every 300
# steps in RUN/candidates/), the model shipped now and both baselines on the validation worlds
# in styles no training world uses (cmu_val_pastel, cmu_val_ink and their drive and hard-drive
# worlds; config/sequences.yaml), with and without map-time adaptation, and writes the table
# that chooses the shipped model, its training length and the default adaptation, with each
# candidate paired with the shipped model query by query (maps/models/MODEL_CARD.md, "The rule:
# the six validation worlds, paired").
# The test worlds (cmu_slice, cmu_test_sepia, cmu_test_drive, cmu_test_sepia_drive,
# cmu_test_drive_lens, cmu_test_sepia_hard) and the calibration world (cmu_calibration) are
# not used here, and WORLDS refuses the test worlds: figures on them are reported, never chosen
# on (docs/testing.md).
#
#   tools/select-shipped-model.sh [RUN]      # default: the newest run under build/shipped-model
#   WORLDS="cmu_val_pastel" tools/select-shipped-model.sh RUN
#   LAYERS=5 tools/select-shipped-model.sh RUN   # score the candidates with other descriptor layers
#   WORLDS="cmu_val_pastel cmu_val_ink" tools/select-shipped-model.sh RUN   # the rule pair of
#                                         # sessions before 76 only
#
# The rule (since session 76; MODEL_CARD.md, "The rule: the six validation worlds, paired"): a
# candidate replaces the shipped model when, with no adaptation, its mean (5 m, 10 deg) over the
# six validation worlds (default WORLDS: the two single-frame worlds, their drive-protocol worlds
# and their hard-drive worlds) is higher than the shipped model's, it wins more captures (the
# cameras of one time) than it loses, and an exact sign test over the won and lost captures
# (all six worlds together), times the number of candidates, gives p < 0.05
# (tools/python/paired_selection.py; its table ends selection.md).
#
# LAYERS: the descriptor layers the candidates are scored with (default 6: the shipped model's,
# chosen on these worlds on 2026-12-03 over the paper's 5 for a CD model; MODEL_CARD.md), which
# SHIP=1 in tools/train-shipped-model.sh then records in the shipped file (this script writes
# them to RUN/selection/layers for it). The shipped model is scored with the layers its file
# records; the untrained network with LAYERS, as the candidates.
# METRIC: the descriptor metric every run here is scored with, candidates and both baselines
# alike (default cosine: the shipped model's, chosen on these worlds on 2026-12-04 over the
# reference's l1; MODEL_CARD.md); written to RUN/selection/metric for SHIP=1 to record. The
# shipped model is scored with the metric its file records.
# VIEWS: the maps' yaw views (evaluate --yaw-views; default 3,6, evaluate's own default since
# 2026-12-06, chosen on these worlds: MODEL_CARD.md, "Yaw views by default"); none scores
# without views, as every run of this script did before (those folders keep their names; a
# folder scored with views is named with them, so the two are never mixed).
# CENTRING: evaluate's --centring for every run here (auto, running or none; default auto,
# evaluate's own default since session 72: the candidates and the baselines are scored as the
# product searches; MODEL_CARD.md, "Descriptor centring by default"); none scores as every run
# of this script did before (those folders keep their names; a folder scored with centring is
# named with `-centred`, so the two are never mixed).
#
# Output: RUN/selection/{WORLD}-{CANDIDATE}/report.* and RUN/selection/selection.md. Scores
# already computed are kept (delete a folder to redo it), so it resumes when run again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/tools/setup.sh" >/dev/null
# shellcheck source=env.sh
source "$ROOT/tools/env.sh"
WORK="${DASGIL_WORK:-$ROOT/build/shipped-model}"
RUN="${1:-$(ls -td "$WORK"/run-* 2>/dev/null | head -1 || true)}"
if [ -z "$RUN" ] || [ ! -d "$RUN" ]; then
  echo "no training run: give RUN (tools/train-shipped-model.sh's run folder)" >&2
  exit 2
fi
if ! ls "$RUN"/candidates/step-*.safetensors >/dev/null 2>&1; then
  echo "note: $RUN has no candidates yet; scoring the shipped model and the baselines only" >&2
fi
# The six validation worlds (the rule's, since session 76: MODEL_CARD.md, "The rule: the six
# validation worlds, paired").
WORLDS="${WORLDS:-cmu_val_pastel cmu_val_ink cmu_val_pastel_drive cmu_val_ink_drive cmu_val_pastel_hard cmu_val_ink_hard}"
LAYERS="${LAYERS:-6}"
LAYERS_ID="e${LAYERS//,/}"
LAYERS_ID="${LAYERS_ID//\*/x}"
METRIC="${METRIC:-cosine}"
case "$METRIC" in
  l1 | l2 | cosine) ;;
  *)
    echo "select-shipped-model: METRIC: expected l1, l2 or cosine, found \`$METRIC\`" >&2
    exit 2
    ;;
esac
# Scores with another metric are never reused for these (l1's folders keep their old names).
if [ "$METRIC" != l1 ]; then LAYERS_ID="$LAYERS_ID-$METRIC"; fi
VIEWS="${VIEWS:-3,6}"
# Checked here (evaluate would refuse it too, after the baselines were named).
if [ "$VIEWS" != none ] && ! [[ "$VIEWS" =~ ^[0-9.]+(,[0-9.]+)*$ ]]; then
  echo "select-shipped-model: VIEWS: expected angles such as 3,6 or none, found \`$VIEWS\`" >&2
  exit 2
fi
VIEWS_ID=""
if [ "$VIEWS" != none ]; then VIEWS_ID="-views${VIEWS//,/-}"; fi
CENTRING="${CENTRING:-auto}"
# Folder suffixes: CENTRED_ID for the runs searched with METRIC (auto centres cosine only),
# SHIPPED_CENTRED_ID for the shipped model, searched with the cosine it records (the table's
# rows say which runs were centred).
CENTRED_ID=""
SHIPPED_CENTRED_ID=""
case "$CENTRING" in
  auto)
    SHIPPED_CENTRED_ID="-centred"
    if [ "$METRIC" = cosine ]; then CENTRED_ID="-centred"; fi
    ;;
  running) CENTRED_ID="-centred" SHIPPED_CENTRED_ID="-centred" ;;
  none) ;;
  *)
    echo "select-shipped-model: CENTRING: expected auto, running or none, found \`$CENTRING\`" >&2
    exit 2
    ;;
esac
for w in $WORLDS; do
  case "$w" in
    cmu_slice | cmu_test_sepia | cmu_test_drive | cmu_test_sepia_drive | cmu_test_drive_lens | cmu_test_sepia_hard)
      echo "select-shipped-model: WORLDS names $w, a test world (config/sequences.yaml): its figures are reported, never chosen on; give validation worlds (cmu_val_pastel, cmu_val_ink, cmu_val_pastel_drive, cmu_val_ink_drive, cmu_val_pastel_hard, cmu_val_ink_hard)" >&2
      exit 2
      ;;
  esac
done
# TOOLS: a dasgil-tools binary to score with (e.g. the run's own copy, while the tree is being
# rebuilt); default: this tree's, built now.
if [ -z "${TOOLS:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet --bin dasgil-tools)
  TOOLS="$ROOT/target/release/dasgil-tools"
fi
OUT="$RUN/selection"
mkdir -p "$OUT"
# The layers the candidates were scored with, for SHIP=1 to record in the shipped file.
echo "$LAYERS" > "$OUT/layers.tmp" && mv "$OUT/layers.tmp" "$OUT/layers"
echo "$METRIC" > "$OUT/metric.tmp" && mv "$OUT/metric.tmp" "$OUT/metric"
# The shipped model's folder is named by its checksum, so a newly shipped model is scored anew.
SHIPPED="$(ls "$ROOT"/maps/models/dasgil-synth-*.safetensors 2>/dev/null | head -1 || true)"
if [ -z "$SHIPPED" ]; then
    echo "select-shipped-model: no shipped model in $ROOT/maps/models (dasgil-synth-*.safetensors); restore it with git checkout maps/models" >&2
    exit 1
fi
SHIPPED_ID="shipped-$(sha256sum "$SHIPPED" | cut -c1-8)$VIEWS_ID$SHIPPED_CENTRED_ID"
# Every other run's folder: the views and the centring.
VIEWS_ID="$VIEWS_ID$CENTRED_ID"
RAW_ID="raw-pixels"
if [ "$METRIC" != l1 ]; then RAW_ID="raw-pixels-$METRIC"; fi
RAW_ID="$RAW_ID$VIEWS_ID"
runs=("$SHIPPED_ID:" "$RAW_ID:--baseline raw-pixels --metric $METRIC"
  "untrained-$LAYERS_ID$VIEWS_ID:--baseline untrained --layers $LAYERS --metric $METRIC")
for c in "$RUN"/candidates/step-*.safetensors; do
  [ -e "$c" ] || continue
  # Named by the layers too, so scores with other layers are never reused for these.
  runs+=("$(basename "$c" .safetensors)-$LAYERS_ID$VIEWS_ID:--checkpoint $c --layers $LAYERS --metric $METRIC")
done
for world in $WORLDS; do
  for run in "${runs[@]}"; do
    name="${run%%:*}"
    dest="$OUT/$world-$name"
    if [ -f "$dest/report.json" ]; then continue; fi
    rm -rf "$dest.partial"
    echo "== $world: $name"
    # shellcheck disable=SC2086
    "$TOOLS" evaluate --sequence "$world" --device cpu --out "$dest.partial" --yaw-views "$VIEWS" --centring "$CENTRING" ${run#*:}
    mv "$dest.partial" "$dest"
  done
done
python3 - "$OUT" $WORLDS <<'PY'
import json, os, sys
out, worlds = sys.argv[1], sys.argv[2:]
rows = {}
for d in sorted(os.listdir(out)):
    path = os.path.join(out, d, "report.json")
    if not os.path.isfile(path):
        continue
    world = next((w for w in worlds if d.startswith(w + "-")), None)
    if world is None:
        continue
    name = d[len(world) + 1:]
    for r in json.load(open(path))["reports"]:
        # Folders scored with another metric (older runs of this script) stay in the table,
        # said in their own column.
        # A candidate trained on normalised images (train --photometric) is scored with it.
        shown = name if r.get("photometric", "none") == "none" else f"{name} ({r['photometric']})"
        key = (shown, r.get("metric", "l1"), r.get("centring", "none"), r["adaptation"])
        rows.setdefault(key, {})[world] = r["all"]["accuracy"]["5m,10deg"]
lines = ["| model | metric | centring | adaptation | " + " | ".join(worlds) + " | mean |",
         "|---|---|---|---|" + "---|" * (len(worlds) + 1)]
for (name, metric, centring, adapt), v in sorted(rows.items(), key=lambda kv: -sum(kv[1].values())):
    cells = [f"{100 * v[w]:.1f}%" if w in v else "-" for w in worlds]
    mean = sum(v.values()) / len(v) if v else 0
    lines.append(f"| {name} | {metric} | {centring} | {adapt} | " + " | ".join(cells) + f" | {100 * mean:.1f}% |")
text = "# Selection on the validation worlds, (5 m, 10 deg)\n\n" + "\n".join(lines) + "\n"
open(os.path.join(out, "selection.md.tmp"), "w").write(text)
print(text)
PY
# The candidates scored on every world, paired with the shipped model query by query.
paired=()
for c in "$RUN"/candidates/step-*.safetensors; do
  [ -e "$c" ] || continue
  name="$(basename "$c" .safetensors)-$LAYERS_ID$VIEWS_ID"
  all=1
  for w in $WORLDS; do [ -f "$OUT/$w-$name/report.json" ] || all=0; done
  if [ "$all" = 1 ]; then paired+=("$name"); fi
done
if [ "${#paired[@]}" -gt 0 ]; then
  # shellcheck disable=SC2086
  if python3 "$ROOT/tools/python/paired_selection.py" "$OUT" "$SHIPPED_ID" $WORLDS -- "${paired[@]}" \
    > "$OUT/paired.md.tmp"; then
    { echo; cat "$OUT/paired.md.tmp"; } | tee -a "$OUT/selection.md.tmp"
  else
    echo "select-shipped-model: the paired comparison failed (above); selection.md has the table without it" >&2
    printf '\nThe paired comparison failed: run tools/python/paired_selection.py by hand.\n' >> "$OUT/selection.md.tmp"
  fi
  rm -f "$OUT/paired.md.tmp"
fi
mv "$OUT/selection.md.tmp" "$OUT/selection.md"
