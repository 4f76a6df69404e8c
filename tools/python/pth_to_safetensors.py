"""Convert a PyTorch state_dict (.pth) into a plain safetensors file, without running pickled
code: torch.load(weights_only=True) only rebuilds tensors and plain containers.

usage: python pth_to_safetensors.py IN.pth OUT.safetensors
Prints one JSON line: {"tensors": N, "values": M}. Exit code 2 with a message on bad input.
"""
import json
import sys


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(2)


def main():
    if len(sys.argv) != 3:
        fail("usage: pth_to_safetensors.py IN.pth OUT.safetensors")
    src, dst = sys.argv[1], sys.argv[2]
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError as e:
        fail(f"this Python ({sys.executable}) lacks torch or safetensors: {e}")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report what torch says, without its unsafe advice
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if ln.startswith("WeightsUnpickler error:")), lines[0] if lines else "")
        fail(f"not a weights-only PyTorch state_dict ({type(e).__name__}: {detail}); dasgil never runs code from checkpoint files")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        fail(f"expected a state_dict (a mapping of names to tensors), found {type(obj).__name__}")
    # PyTorch's BatchNorm fills in a missing `num_batches_tracked` (as 0) when the state_dict
    # comes from before the buffer existed: no version for the module in `_metadata`, or one
    # below 2 (torch.nn.modules.batchnorm._NormBase._load_from_state_dict). Do exactly that;
    # anything else missing is left for the strict load to refuse, as PyTorch's strict load does.
    metadata = getattr(obj, "_metadata", None) or {}
    filled = 0
    obj = dict(obj)
    for name in list(obj):
        if not name.endswith("running_mean"):
            continue
        prefix = name[: -len("running_mean")]
        key = prefix + "num_batches_tracked"
        version = metadata.get(prefix[:-1], {}).get("version") if isinstance(metadata, dict) else None
        if key not in obj and (version is None or version < 2):
            obj[key] = torch.tensor(0, dtype=torch.long)
            filled += 1
    out = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            fail(f"entry `{name}` is a {type(value).__name__}, expected a tensor")
        # clone: shared tensors (the FD's PReLU appears twice) must be separate in safetensors.
        out[str(name)] = value.detach().clone().contiguous()
    save_file(out, dst)
    print(json.dumps({"tensors": len(out), "values": int(sum(v.numel() for v in out.values())), "filled": filled}))


if __name__ == "__main__":
    main()
