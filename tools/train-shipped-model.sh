#!/usr/bin/env bash
# Trains the model shipped in maps/models/ from nothing but this repository: renders the
# synthetic training worlds with fixed seeds (Virtual KITTI 2 layout with wide appearance: each
# scene and variation its own season and light; KITTI layout as the unlabelled real domain),
# trains DASGIL with the CD discriminator at a reduced size that fits a 2-core CPU in about an
# hour, and copies the generator to maps/models/.
#
#   tools/train-shipped-model.sh            # everything; resumes a run that was interrupted
#   DASGIL_WORK=/big/disk tools/train-shipped-model.sh
#   STEPS=600 BATCH=4 SIZE=256x512 DEVICE=auto tools/train-shipped-model.sh
#
# On a GPU, set SIZE=256x1024 BATCH=8 (the paper's) and STEPS as you like.
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
APPEARANCE="${APPEARANCE:-wide}"
EXTRA=()
case "$APPEARANCE" in
  wide|fixed) ;;
  *) echo "APPEARANCE: expected wide or fixed, found \`$APPEARANCE\`" >&2; exit 2 ;;
esac
case "$VARIANT" in
  "") ;;
  fixed-appearance) APPEARANCE=fixed ;;
  no-adversarial) EXTRA=(--no-adversarial) ;;
  *) echo "VARIANT: expected fixed-appearance, no-adversarial or nothing, found \`$VARIANT\`" >&2; exit 2 ;;
esac
STEPS="${STEPS:-600}"
BATCH="${BATCH:-4}"
SIZE="${SIZE:-256x512}"
DEVICE="${DEVICE:-auto}"
MODEL="$ROOT/maps/models/dasgil-synth-cd-${SIZE}.safetensors"
(cd "$ROOT" && cargo build --release --quiet --bin dasgil-tools)
TOOLS="$ROOT/target/release/dasgil-tools"
mkdir -p "$WORK"

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
# 8 scenes (each its own procedural world) x 10 variations x 20 frames; 828x250 keeps the
# Virtual KITTI 2 aspect ratio at two thirds of its size. Wide appearance: see synth --help.
VKITTI=vkitti2
if [ "$APPEARANCE" = wide ]; then VKITTI=vkitti2-wide; fi
render "$VKITTI" vkitti2 --seed 1001 --scenes 8 --frames 20 --width 828 --height 250 \
  --appearance "$APPEARANCE"
# The real domain: KITTI-layout sequences (other textures, sensor noise, blur, tone curve).
render kitti kitti --seed 2002 --sequences 2 --frames 40

RUN="$WORK/run"
case "$VARIANT" in
  "") ;;
  no-adversarial) RUN="$ROOT/build/ablation-no-adversarial-$APPEARANCE" ;;
  *) RUN="$ROOT/build/ablation-$VARIANT" ;;
esac
if [ -f "$RUN/checkpoints/latest" ]; then
  echo "== resuming $RUN"
  "$TOOLS" train --resume "$RUN" --steps "$STEPS" --device "$DEVICE"
else
  rm -rf "$RUN"
  "$TOOLS" train --vkitti "$WORK/$VKITTI" --kitti "$WORK/kitti" --dis CD \
    --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --checkpoint-every 50 --seed 7 \
    --device "$DEVICE" "${EXTRA[@]}" --out "$RUN"
fi
done_steps="$(sed -n 's/^step-0*\([0-9][0-9]*\)$/\1/p' "$RUN/checkpoints/latest")"
if [ "${done_steps:-0}" -lt "$STEPS" ]; then
  echo "== stopped at step ${done_steps:-0} of $STEPS; run this script again to resume (nothing shipped)"
  exit 0
fi
if [ -n "$VARIANT" ]; then
  echo "== $VARIANT: $RUN/generator.safetensors (not shipped)"
  exit 0
fi
mkdir -p "$(dirname "$MODEL")"
cp "$WORK/run/generator.safetensors" "$MODEL.tmp" && mv "$MODEL.tmp" "$MODEL"
cp "$WORK/run/loss_curves.png" "$ROOT/maps/models/loss_curves.png"
cp "$WORK/run/predictions.png" "$ROOT/maps/models/predictions.png"
cp "$WORK/run/config.yaml" "$ROOT/maps/models/train-config.yaml"
echo "== shipped model: $MODEL"
