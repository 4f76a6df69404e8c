#!/usr/bin/env bash
# Trains the model shipped in maps/models/ from nothing but this repository: renders the
# synthetic training worlds with fixed seeds (Virtual KITTI 2 layout with domain randomization:
# each scene and variation its own season, light, style, camera development and rig; KITTI
# layout in "real" styles as the unlabelled domain), trains DASGIL with the CD discriminator and
# loader augmentation at a reduced size that fits a 2-core CPU, and, with SHIP=1 once
# validation has chosen the run, copies the generator to maps/models/.
#
#   nice -n 19 tools/train-shipped-model.sh   # everything; resumes a run that was interrupted
#   DASGIL_WORK=/big/disk tools/train-shipped-model.sh
#   STEPS=1200 BATCH=4 SIZE=256x512 DEVICE=auto tools/train-shipped-model.sh
#   SHIP=1 CANDIDATE=step-600 tools/train-shipped-model.sh   # copy the chosen candidate
#   SHIP=1 CANDIDATE=step-600 LAYERS=6 ...   # and record its descriptor layers (default: those
#                                            # tools/select-shipped-model.sh scored it with;
#                                            # METRIC=cosine likewise its metric)
#
# It stops cleanly on SIGTERM/Ctrl-C (a checkpoint is written) and resumes from the last
# checkpoint (every 50 steps) when run again. Candidates for selection: the run's
# candidates/step-N.safetensors (one per leg of EVERY steps), scored by
# tools/select-shipped-model.sh on the six validation worlds; SHIP=1 copies the one
# CANDIDATE names (the choice is validation's, not the newest).
# On a GPU, set SIZE=256x1024 BATCH=8 (the paper's) and STEPS as you like.
#
# APPEARANCE: random (default), wide or fixed (synth vkitti2 --appearance); AUGMENT: 1 (default,
# train --augment), 2 (--augment --augment-palette) or 0 (none); REAL: styled (default) or fixed
# (synth kitti --appearance).
# INIT=FILE: a new run starts from these generator weights (train --init-generator), e.g. the
# shipped model, to continue its training when its run's checkpoints are gone (a fresh clone);
# the new run's steps start at 0 (its step N is the starting model's steps + N).
# SEED (default 7; give another with INIT, so the continued run does not draw the same batches
# again).
# TRIPLET: mse (default, the paper's) or cosine (train --triplet-distance cosine
# --triplet-margin TRIPLET_MARGIN, default 0.1: the triplet terms measure what a cosine map
# searches with; not in the paper).
# PHOTOMETRIC: none (default, the paper's) or autocontrast (train --photometric autocontrast:
# every training image stretched per channel before the network, as build-map --photometric
# does; recorded in the checkpoints, so maps built with a candidate follow it).
# HARD_NEGATIVES: 0 (default, the paper's random negatives) or a share up to 1 (train
# --hard-negatives: that share of the negatives is another place of the anchor's street, more
# than the positive window away; not in the paper).
# POSITIVE_WINDOW: frames (1 m apart) within which a triplet's positive lies (train
# --positive-window; default 5, the paper's; hard negatives lie beyond it).
# LATERAL: metres, 0 (default, Virtual KITTI 2's one line) to 2.5: each scene's variation of the
# labelled worlds drives up to this far left of its lane (synth vkitti2 --lateral; the worlds and
# the run get a folder of their own), so positives see a place from two spots on the road.
# AUGMENT_YAW: degrees, 0 (default) to 20: with AUGMENT, half the augmented images are turned
# about the camera's vertical axis by a yaw within +-AUGMENT_YAW (train --augment-yaw; the
# homography of build-map's yaw views), so positives see a place from two headings; the run gets
# a folder of its own.
# LR_SCALE: a factor on both Adam learning rates (default 1: config/train.yaml's, the paper's
# 2e-3 and 1e-3); e.g. 0.1 to fine-tune from INIT without the paper's step size shaking the
# starting model (the run trains with a copy of config/train.yaml, train-lr<F>.yaml in
# DASGIL_WORK, and gets a folder of its own).
#
# Ablations (maps/models/MODEL_CARD.md), each into build/ablation-..., nothing shipped:
#   VARIANT=fixed-appearance: the same run on Virtual KITTI 2's fixed look (synth vkitti2
#     --appearance fixed: one season everywhere); this was the shipped model before 2026-11-28.
#   VARIANT=no-adversarial: the same run without the discriminator (depth + segmentation +
#     triplet only), on the worlds APPEARANCE names (wide, or fixed as recorded in the card).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/tools/setup.sh" >/dev/null
# shellcheck source=env.sh
source "$ROOT/tools/env.sh"
WORK="${DASGIL_WORK:-$ROOT/build/shipped-model}"
VARIANT="${VARIANT:-}"
APPEARANCE="${APPEARANCE:-random}"
AUGMENT="${AUGMENT:-1}"
REAL="${REAL:-styled}"
SHIP="${SHIP:-0}"
EXTRA=()
case "$APPEARANCE" in
  random|wide|fixed) ;;
  *) echo "APPEARANCE: expected random, wide or fixed, found \`$APPEARANCE\`" >&2; exit 2 ;;
esac
case "$AUGMENT" in
  1) EXTRA+=(--augment) ;;
  2) EXTRA+=(--augment --augment-palette) ;;
  0) ;;
  *) echo "AUGMENT: expected 1, 2 or 0, found \`$AUGMENT\`" >&2; exit 2 ;;
esac
case "$REAL" in
  styled|fixed) ;;
  *) echo "REAL: expected styled or fixed, found \`$REAL\`" >&2; exit 2 ;;
esac
TRIPLET="${TRIPLET:-mse}"
case "$TRIPLET" in
  mse)
    if [ -n "${TRIPLET_MARGIN:-}" ]; then
      echo "TRIPLET_MARGIN applies to TRIPLET=cosine (the paper's mse keeps its margin 1): add TRIPLET=cosine or drop it" >&2
      exit 2
    fi ;;
  cosine)
    TRIPLET_MARGIN="${TRIPLET_MARGIN:-0.1}"
    # A number, since it also names the run's folder.
    if ! [[ "$TRIPLET_MARGIN" =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ "$TRIPLET_MARGIN" =~ ^0+(\.0+)?$ ]]; then
      echo "TRIPLET_MARGIN: expected a number more than 0 such as 0.1, found \`$TRIPLET_MARGIN\`" >&2
      exit 2
    fi
    EXTRA+=(--triplet-distance cosine --triplet-margin "$TRIPLET_MARGIN") ;;
  *) echo "TRIPLET: expected mse or cosine, found \`$TRIPLET\`" >&2; exit 2 ;;
esac
case "$VARIANT" in
  "") ;;
  fixed-appearance) APPEARANCE=fixed ;;
  no-adversarial) EXTRA+=(--no-adversarial) ;;
  *) echo "VARIANT: expected fixed-appearance, no-adversarial or nothing, found \`$VARIANT\`" >&2; exit 2 ;;
esac
PHOTOMETRIC="${PHOTOMETRIC:-none}"
case "$PHOTOMETRIC" in
  none) ;;
  autocontrast) EXTRA+=(--photometric autocontrast) ;;
  *) echo "PHOTOMETRIC: expected none or autocontrast, found \`$PHOTOMETRIC\`" >&2; exit 2 ;;
esac
HARD_NEGATIVES="${HARD_NEGATIVES:-0}"
if ! [[ "$HARD_NEGATIVES" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]]; then
  echo "HARD_NEGATIVES: expected a share from 0 to 1 such as 0.5, found \`$HARD_NEGATIVES\`" >&2
  exit 2
fi
# One spelling per share (1, 1.0 and 1.00 are one run folder).
HARD_NEGATIVES="$(printf '%g' "$HARD_NEGATIVES")"
if [ "$HARD_NEGATIVES" != 0 ]; then EXTRA+=(--hard-negatives "$HARD_NEGATIVES"); fi
POSITIVE_WINDOW="${POSITIVE_WINDOW:-5}"
if ! [[ "$POSITIVE_WINDOW" =~ ^[0-9]+$ ]] || [ "$POSITIVE_WINDOW" -gt 1000 ]; then
  echo "POSITIVE_WINDOW: expected 0 to 1000 frames, found \`$POSITIVE_WINDOW\`" >&2
  exit 2
fi
# One spelling per window (05 is 5).
POSITIVE_WINDOW="$((10#$POSITIVE_WINDOW))"
if [ "$POSITIVE_WINDOW" != 5 ]; then EXTRA+=(--positive-window "$POSITIVE_WINDOW"); fi
AUGMENT_YAW="${AUGMENT_YAW:-0}"
if ! [[ "$AUGMENT_YAW" =~ ^[0-9]*\.?[0-9]+$ ]] || ! awk -v v="$AUGMENT_YAW" 'BEGIN { exit !(v >= 0 && v <= 20) }'; then
  echo "AUGMENT_YAW: expected degrees from 0 to 20 such as 8, found \`$AUGMENT_YAW\`" >&2
  exit 2
fi
# One spelling per angle (8, 8.0 and 08 are one run folder).
AUGMENT_YAW="$(awk -v v="$AUGMENT_YAW" 'BEGIN { printf "%g", v }')"
if [ "$AUGMENT_YAW" != 0 ]; then
  if [ "$AUGMENT" = 0 ]; then
    echo "AUGMENT_YAW turns the camera in augmented images: give AUGMENT=1 or 2 with it" >&2
    exit 2
  fi
  EXTRA+=(--augment-yaw "$AUGMENT_YAW")
fi
LR_SCALE="${LR_SCALE:-1}"
if ! [[ "$LR_SCALE" =~ ^[0-9]*\.?[0-9]+$ ]] || ! awk -v v="$LR_SCALE" 'BEGIN { exit !(v > 0 && v <= 10) }'; then
  echo "LR_SCALE: expected a factor more than 0 and at most 10 such as 0.1, found \`$LR_SCALE\`" >&2
  exit 2
fi
# One spelling per factor (0.1 and .10 are one run folder).
LR_SCALE="$(printf '%g' "$LR_SCALE")"
LATERAL="${LATERAL:-0}"
if ! [[ "$LATERAL" =~ ^[0-9]+(\.[0-9]+)?$ ]] || ! awk -v v="$LATERAL" 'BEGIN { exit !(v <= 2.5) }'; then
  echo "LATERAL: expected metres from 0 to 2.5 such as 2, found \`$LATERAL\`" >&2
  exit 2
fi
# One spelling per offset (2, 2.0 and 02 are one folder).
LATERAL="$(printf '%g' "$LATERAL")"
STEPS="${STEPS:-1200}"
SEED="${SEED:-7}"
INIT="${INIT:-}"
if [ -n "$INIT" ]; then
  [ -f "$INIT" ] || { echo "INIT: no such file: $INIT" >&2; exit 2; }
  # A copy named by its checksum: the run's record (config.yaml) keeps naming the weights it
  # started from even after SHIP=1 replaces the shipped model it may have come from.
  INIT_SUM="$(sha256sum "$INIT" | cut -c1-8)"
  mkdir -p "$WORK"
  INIT_COPY="$WORK/init-$INIT_SUM.safetensors"
  [ -f "$INIT_COPY" ] || { cp "$INIT" "$INIT_COPY.tmp" && mv "$INIT_COPY.tmp" "$INIT_COPY"; }
  EXTRA+=(--init-generator "$INIT_COPY")
fi
BATCH="${BATCH:-4}"
SIZE="${SIZE:-256x512}"
DEVICE="${DEVICE:-auto}"
MODEL="$ROOT/maps/models/dasgil-synth-cd-${SIZE}.safetensors"
(cd "$ROOT" && cargo build --release --quiet --bin dasgil-tools)
mkdir -p "$WORK"
# A copy of the binary, so rebuilding the repository while this runs never changes a run midway.
cp "$ROOT/target/release/dasgil-tools" "$WORK/dasgil-tools.tmp"
mv "$WORK/dasgil-tools.tmp" "$WORK/dasgil-tools"
TOOLS="$WORK/dasgil-tools"

# Each data set is rendered into a temporary folder and moved into place when complete, so an
# interrupted render is redone, never half-used.
render() {
  local name="$1"; shift
  if [ ! -d "$WORK/$name" ]; then
    rm -rf "$WORK/$name.partial"
    echo "== rendering $name: dasgil-tools synth $*"
    "$TOOLS" synth "$@" --out "$WORK/$name.partial"
    mv "$WORK/$name.partial" "$WORK/$name"
  fi
}
# Scenes (each its own procedural world) x 10 variations x frames; 828x250 keeps the Virtual
# KITTI 2 aspect ratio at two thirds of its size. Appearances: see synth vkitti2 --help. Random
# appearance draws a style per scene and variation, so it renders more scenes (more styles).
VKITTI=vkitti2
LATERAL_ARGS=()
if [ "$LATERAL" != 0 ]; then LATERAL_ARGS=(--lateral "$LATERAL"); fi
case "$APPEARANCE" in
  wide) VKITTI=vkitti2-wide
    set -- --seed 1001 --scenes 8 --frames 20 --width 828 --height 250 --appearance wide ;;
  # -lens: since 2026-12-03 the random appearance draws a lens per scene and variation too;
  # a folder rendered before (vkitti2-random, pinhole only) is not reused.
  random) VKITTI=vkitti2-random-lens
    set -- --seed 1001 --scenes 16 --frames 12 --width 828 --height 250 --appearance random ;;
  *) set -- --seed 1001 --scenes 8 --frames 20 --width 828 --height 250 ;;
esac
if [ "$LATERAL" != 0 ]; then VKITTI="$VKITTI-lateral$LATERAL"; fi
render "$VKITTI" vkitti2 "$@" "${LATERAL_ARGS[@]}"
# The real domain: KITTI-layout sequences (other textures, sensor noise, blur, tone curve); styled:
# each sequence in its own "real" style and camera, a look no labelled world has.
KITTI=kitti
if [ "$REAL" = styled ]; then
  KITTI=kitti-styled
  render "$KITTI" kitti --seed 2002 --sequences 8 --frames 10 --appearance styled
else
  render "$KITTI" kitti --seed 2002 --sequences 2 --frames 40
fi

# One run folder per recipe, so a changed recipe never resumes another's run.
RUN="$WORK/run-$APPEARANCE-aug$AUGMENT-$REAL-$SIZE-b$BATCH"
case "$VARIANT" in
  "") ;;
  no-adversarial) RUN="$ROOT/build/ablation-no-adversarial-$APPEARANCE-aug$AUGMENT-$REAL" ;;
  *) RUN="$ROOT/build/ablation-$VARIANT-aug$AUGMENT-$REAL" ;;
esac
if [ "$TRIPLET" = cosine ]; then RUN="$RUN-tripcos$TRIPLET_MARGIN"; fi
if [ "$PHOTOMETRIC" != none ]; then RUN="$RUN-$PHOTOMETRIC"; fi
if [ "$HARD_NEGATIVES" != 0 ]; then RUN="$RUN-hardneg$HARD_NEGATIVES"; fi
if [ "$POSITIVE_WINDOW" != 5 ]; then RUN="$RUN-window$POSITIVE_WINDOW"; fi
if [ "$LATERAL" != 0 ]; then RUN="$RUN-lateral$LATERAL"; fi
if [ "$AUGMENT_YAW" != 0 ]; then RUN="$RUN-yaw$AUGMENT_YAW"; fi
if [ "$LR_SCALE" != 1 ]; then
  RUN="$RUN-lr$LR_SCALE"
  # config/train.yaml with both learning rates scaled (written once, then moved into place).
  LR_CONFIG="$WORK/train-lr$LR_SCALE.yaml"
  if [ ! -f "$LR_CONFIG" ]; then
    g="$(awk -v f="$LR_SCALE" '/^lr_generator:/ { printf "%.6g", $2 * f }' "$ROOT/config/train.yaml")"
    d="$(awk -v f="$LR_SCALE" '/^lr_discriminator:/ { printf "%.6g", $2 * f }' "$ROOT/config/train.yaml")"
    if [ -z "$g" ] || [ -z "$d" ]; then
      echo "LR_SCALE: config/train.yaml has no lr_generator or lr_discriminator line" >&2
      exit 2
    fi
    sed -e "s/^lr_generator: .*/lr_generator: $g/" -e "s/^lr_discriminator: .*/lr_discriminator: $d/" \
      "$ROOT/config/train.yaml" >"$LR_CONFIG.tmp"
    mv "$LR_CONFIG.tmp" "$LR_CONFIG"
  fi
  EXTRA+=(--config "$LR_CONFIG")
fi
if [ "$SEED" != 7 ]; then RUN="$RUN-seed$SEED"; fi
if [ -n "$INIT" ]; then
  # Named by the starting weights' checksum, so another starting file never resumes this run.
  RUN="$RUN-from-$INIT_SUM"
fi
# Trains in legs of EVERY steps; after each leg the generator is kept as a candidate
# ($RUN/candidates/step-N.safetensors), so validation can choose the training length.
EVERY="${EVERY:-300}"
done_steps() { sed -n 's/^step-0*\([0-9][0-9]*\)$/\1/p' "$RUN/checkpoints/latest" 2>/dev/null; }
if [ ! -f "$RUN/checkpoints/latest" ]; then rm -rf "$RUN"; fi
target=0
while [ "$target" -lt "$STEPS" ]; do
  target=$((target + EVERY))
  if [ "$target" -gt "$STEPS" ]; then target="$STEPS"; fi
  if [ -f "$RUN/candidates/step-$target.safetensors" ]; then continue; fi
  if [ "$(done_steps)" ] && [ "$(done_steps)" -gt "$target" ]; then
    echo "== no candidate at step $target: the run is already at step $(done_steps) (EVERY changed?)"
    continue
  fi
  if [ -f "$RUN/checkpoints/latest" ]; then
    echo "== resuming $RUN at step $(done_steps) towards $target"
    "$TOOLS" train --resume "$RUN" --steps "$target" --device "$DEVICE"
  else
    "$TOOLS" train --vkitti "$WORK/$VKITTI" --kitti "$WORK/$KITTI" --dis CD \
      --size "$SIZE" --batch "$BATCH" --steps "$target" --checkpoint-every 50 --seed "$SEED" \
      --device "$DEVICE" "${EXTRA[@]}" --out "$RUN"
  fi
  if [ "$(done_steps)" != "$target" ]; then
    echo "== stopped at step $(done_steps) of $STEPS; run this script again to resume (nothing shipped)"
    exit 0
  fi
  mkdir -p "$RUN/candidates"
  cp "$RUN/generator.safetensors" "$RUN/candidates/step-$target.safetensors.tmp"
  mv "$RUN/candidates/step-$target.safetensors.tmp" "$RUN/candidates/step-$target.safetensors"
  echo "== candidate at step $target: $RUN/candidates/step-$target.safetensors"
done
if [ -n "$VARIANT" ]; then
  echo "== $VARIANT: $RUN/generator.safetensors (not shipped)"
  exit 0
fi
if [ "$SHIP" != 1 ]; then
  echo "== candidates in $RUN/candidates (not shipped): choose with tools/select-shipped-model.sh,"
  echo "   then SHIP=1 CANDIDATE=step-N $0"
  exit 0
fi
CANDIDATE="${CANDIDATE:-}"
if [ -z "$CANDIDATE" ] || [ ! -f "$RUN/candidates/$CANDIDATE.safetensors" ]; then
  echo "SHIP=1: name the candidate validation chose, e.g. CANDIDATE=step-600 (have: $(ls "$RUN/candidates" | tr '\n' ' '))" >&2
  exit 2
fi
mkdir -p "$(dirname "$MODEL")"
# The descriptor layers validation scored the candidate with (LAYERS, else what
# tools/select-shipped-model.sh wrote to RUN/selection/layers), recorded in the file: build-map,
# localize, evaluate and the node use them.
LAYERS="${LAYERS:-$(cat "$RUN/selection/layers" 2>/dev/null || true)}"
if [ -z "$LAYERS" ]; then
  echo "SHIP=1: which descriptor layers did validation score $CANDIDATE with? Run tools/select-shipped-model.sh $RUN first, or give LAYERS=6 (or 5 for the paper's)" >&2
  exit 2
fi
# The metric validation scored it with (METRIC, else RUN/selection/metric, else the
# reference's l1: runs selected before select-shipped-model.sh wrote it), recorded beside the
# layers.
if [ -z "${METRIC:-}" ] && [ ! -f "$RUN/selection/metric" ]; then
  echo "SHIP=1: $RUN/selection/metric is missing (selected before the metric was recorded): recording l1, the reference's; give METRIC=cosine to record another" >&2
fi
METRIC="${METRIC:-$(cat "$RUN/selection/metric" 2>/dev/null || echo l1)}"
case "$METRIC" in
  l1 | l2 | cosine) ;;
  *)
    echo "SHIP=1: METRIC: expected l1, l2 or cosine, found \`$METRIC\`" >&2
    exit 2
    ;;
esac
cp "$RUN/candidates/$CANDIDATE.safetensors" "$MODEL.tmp"
python "$ROOT/tools/python/set_descriptor_layers.py" "$MODEL.tmp" "$LAYERS" --metric "$METRIC"
mv "$MODEL.tmp" "$MODEL"
cp "$RUN/loss_curves.png" "$ROOT/maps/models/loss_curves.png"
cp "$RUN/predictions.png" "$ROOT/maps/models/predictions.png"
cp "$RUN/config.yaml" "$ROOT/maps/models/train-config.yaml"
echo "note: loss_curves.png and predictions.png are of the whole run (step $(done_steps)); the shipped generator is $CANDIDATE"
echo "== shipped model: $MODEL"
