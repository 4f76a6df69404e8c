"""DASGIL in PyTorch, written from ../shared/reference/dasgil-reference.md, as the peer that the
Rust implementation is checked and benchmarked against. Module attribute names follow the
reference state_dict keys, so a state_dict of the authors' networks loads here unchanged.

Commands (all tensors exchanged as safetensors files):
  forward        generator forward pass on given weights and input
  discriminator  FD/CD forward pass on given weights and features
  losses         the DASGIL losses on given tensors
  make-pth       a randomly initialised generator/discriminator saved as a .pth state_dict
  bench-server   eager-mode timing peer for benches/descriptor.rs (commands on stdin)
"""

import argparse
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

LEAKY = 0.2


class SideHead(nn.Module):
    """Reflection pad 1, 3x3 conv (.conv), leaky_relu 0.2."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)

    def forward(self, x):
        return F.leaky_relu(self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect")), LEAKY)


class ScoreHead(nn.Module):
    """Reflection pad 1, 3x3 conv (.conv), ReLU, 1x1 conv to classes (.conv_final)."""

    def __init__(self, cin, classes):
        super().__init__()
        self.conv = nn.Conv2d(cin, cin, 3)
        self.conv_final = nn.Conv2d(cin, classes, 1)

    def forward(self, x):
        return self.conv_final(F.relu(self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))))


def _down(cin, cout):
    return nn.Conv2d(cin, cout, 4, 2, 1)


def _up(cin, cout):
    return nn.ConvTranspose2d(cin, cout, 4, 2, 1)


class Generator(nn.Module):
    def __init__(self, d=8, classes=15):
        super().__init__()
        enc = [d, 2 * d, 4 * d, 8 * d, 8 * d, 8 * d, 8 * d, 8 * d]
        self.enc_channels = enc
        cin = 3
        for i, c in enumerate(enc, start=1):
            setattr(self, f"conv{i}", _down(cin, c))
            if 2 <= i <= 7:
                setattr(self, f"conv{i}_bn", nn.BatchNorm2d(c))
            cin = c
        dep = [8 * d, 8 * d, 8 * d, 8 * d, 4 * d, 2 * d, d, 1]
        seg = [8 * d, 8 * d, 8 * d, 8 * d, 4 * d, 4 * d, 4 * d, 4 * d]
        for suffix, outs in (("", dep), ("_seg", seg)):
            cin = enc[7]
            for i, c in enumerate(outs, start=1):
                if i == 8:
                    name = "deconv8_dep" if suffix == "" else "deconv8_seg"
                else:
                    name = f"deconv{i}{suffix}"
                setattr(self, name, _up(cin, c))
                if i < 8:
                    setattr(self, f"deconv{i}_bn{suffix}", nn.BatchNorm2d(c))
                    cin = c + enc[7 - i]
        for i, c in zip(range(5, 9), (4 * d, 2 * d, d, 1)):
            setattr(self, f"conv3x3_{i}_dep", SideHead(c, 1))
        self.conv_score = ScoreHead(4 * d, classes)

    def encode(self, x, upto=8):
        feats = []
        for i in range(1, upto + 1):
            h = x if i == 1 else F.leaky_relu(feats[-1], LEAKY)
            h = getattr(self, f"conv{i}")(h)
            if 2 <= i <= 7:
                h = getattr(self, f"conv{i}_bn")(h)
            feats.append(h)
        return feats

    def _decode(self, feats, suffix):
        x = feats[7]
        taps = []
        for i in range(1, 9):
            if i == 8:
                name = "deconv8_dep" if suffix == "" else "deconv8_seg"
            else:
                name = f"deconv{i}{suffix}"
            h = getattr(self, name)(F.relu(x))
            if i < 8:
                h = getattr(self, f"deconv{i}_bn{suffix}")(h)
            if i >= 5:
                taps.append(h)
            if i < 8:
                x = torch.cat([h, feats[7 - i]], 1)
        return taps

    def forward(self, x):
        feats = self.encode(x)
        dep_taps = self._decode(feats, "")
        depth = [getattr(self, f"conv3x3_{i}_dep")(t) for i, t in zip(range(5, 9), dep_taps)]
        seg = self.conv_score(self._decode(feats, "_seg")[3])
        return feats, depth, seg

    def reference_init(self):
        """N(0, 0.02) weights and zero biases on the direct conv/deconv children."""
        for m in self.children():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.data.normal_(0.0, 0.02)
                m.bias.data.zero_()


class FlattenDiscriminator(nn.Module):
    def __init__(self, total, hidden=64):
        super().__init__()
        act = nn.PReLU()  # one module, used twice
        self.bn = nn.BatchNorm1d(total)
        self.model = nn.Sequential(nn.Linear(total, hidden), act, nn.Linear(hidden, hidden), act, nn.Linear(hidden, 1))

    def forward(self, feats):
        x = torch.cat([f.reshape(f.shape[0], -1) for f in feats], 1)
        return self.model(self.bn(x))


class _Conv(nn.Module):
    def __init__(self, cin, cout, k, bias=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=(k - 1) // 2, bias=bias)

    def forward(self, x):
        return self.conv(x)


class _Wrap(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.conv = inner

    def forward(self, x):
        return self.conv(x)


def _pool(x):
    return (x[:, :, ::2, ::2] + x[:, :, 1::2, ::2] + x[:, :, ::2, 1::2] + x[:, :, 1::2, 1::2]) / 4


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bn1 = nn.GroupNorm(4, cin)
        self.bn2 = nn.GroupNorm(4, cin)
        self.conv_shortcut = _Wrap(_Conv(cin, cout, 1))
        self.conv_1 = _Conv(cin, cin, 3, bias=False)
        self.conv_2 = _Wrap(_Conv(cin, cout, 3))

    def forward(self, x):
        short = self.conv_shortcut(_pool(x))
        h = self.conv_1(F.relu(self.bn1(x)))
        h = _pool(self.conv_2(F.relu(self.bn2(h))))
        return short + h


class CascadeDiscriminator(nn.Module):
    def __init__(self, dim=8, e8_hw=4):
        super().__init__()
        widths = [(1, 2), (4, 4), (8, 8), (16, 16), (24, 24), (32, 32), (40, 40)]
        for i, (a, b) in enumerate(widths, start=1):
            setattr(self, f"rb{i}", ResBlock(a * dim, b * dim))
        self.rb8 = nn.Sequential(nn.ReLU(), _Conv(48 * dim, 48 * dim, 3))
        self.ln1 = nn.Linear(48 * dim * e8_hw, 1)

    def forward(self, feats):
        x = feats[0]
        for i in range(7):
            x = torch.cat([getattr(self, f"rb{i + 1}")(x), feats[i + 1]], 1)
        x = self.rb8(x)
        return self.ln1(x.reshape(x.shape[0], -1)).view(-1)


def discriminator_init(net):
    """Every module with a weight: N(0, 0.02); biases 0 (the reference's init_weights)."""
    for m in net.modules():
        if hasattr(m, "weight") and isinstance(getattr(m, "weight"), torch.Tensor):
            nn.init.normal_(m.weight.data, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)


def total_features(d, h, w):
    chans = [d, 2 * d, 4 * d, 8 * d, 8 * d, 8 * d, 8 * d, 8 * d]
    return sum(c * (h >> (i + 1)) * (w >> (i + 1)) for i, c in enumerate(chans))


def make_discriminator(kind, d, h, w):
    if kind == "FD":
        return FlattenDiscriminator(total_features(d, h, w))
    return CascadeDiscriminator(d, (h >> 8) * (w >> 8))


def randomize_bn_stats(net, gen):
    """Non-trivial running statistics, so eval mode differs from train mode."""
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def load_strict(net, path):
    if path.endswith(".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state = load_file(path)
    net.load_state_dict(state, strict=True)


def load_dasgil_checkpoint(path):
    """A generator checkpoint written by dasgil-tools (safetensors with its `dasgil.config`
    metadata) -> (the Generator in eval mode, input height, input width)."""
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["dasgil.config"])
    net = Generator(cfg["base_width"], cfg["num_classes"]).eval()
    net.load_state_dict(load_file(path), strict=True)
    return net, cfg["input_height"], cfg["input_width"]


def load_input(path):
    """`input`: a normalised [B, 3, H, W] batch, or `image_u8`: one [H, W, 3] uint8 RGB image,
    normalised here as the reference does: /255, then mean 0.5, std 0.5."""
    t = load_file(path)
    if "input" in t:
        return t["input"]
    img = t["image_u8"].permute(2, 0, 1).float().unsqueeze(0) / 255.0
    return (img - 0.5) / 0.5


def cmd_forward(a):
    net = Generator(a.d, a.classes)
    load_strict(net, a.weights)
    x = load_input(a.input)
    net.train(a.train)
    with torch.set_grad_enabled(False):
        feats, depth, seg = net(x)
    out = {f"e{i + 1}": t.contiguous() for i, t in enumerate(feats)}
    out.update({f"depth_{i}": t.contiguous() for i, t in enumerate(depth)})
    out["seg"] = seg.contiguous()
    if a.train:  # running statistics after one training-mode pass
        for k, v in net.state_dict().items():
            if "running_" in k or "num_batches" in k:
                out["state." + k] = v.contiguous()
    save_file(out, a.output)


def cmd_discriminator(a):
    net = make_discriminator(a.kind, a.d, a.height, a.width)
    load_strict(net, a.weights)
    feats_file = load_file(a.features)
    feats = [feats_file[f"e{i}"] for i in range(1, 9)]
    net.train(a.train)
    with torch.no_grad():
        score = net(feats)
    save_file({"score": score.contiguous()}, a.output)


def cmd_losses(a):
    t = load_file(a.input)
    out = {}
    # Depth: L1 per scale against the nearest-resized ground truth, averaged over scales.
    gt = t["depth_gt"]
    preds = [t[f"depth_{i}"] for i in range(4)]
    losses = [torch.mean(torch.abs(p - F.interpolate(gt, size=p.shape[2:]))) for p in preds]
    out["depth"] = (sum(losses) / len(losses)).reshape(())
    out["seg"] = F.nll_loss(F.log_softmax(t["seg_logits"], dim=1), t["seg_target"]).reshape(())
    d_real, d_virtual = t["d_real"], t["d_virtual"]
    out["lsgan_d"] = ((torch.mean((d_real - 1.0) ** 2) + torch.mean(d_virtual ** 2)) * 0.5).reshape(())
    out["lsgan_g"] = (torch.mean((d_virtual - 1.0) ** 2) * 0.5).reshape(())
    total = torch.zeros(())
    for layer, margin, weight in json.loads(a.triplet):
        fa, fp, fn = t[f"a{layer}"], t[f"p{layer}"], t[f"n{layer}"]
        dp, dn = F.mse_loss(fa, fp), F.mse_loss(fa, fn)
        term = torch.clamp(1 - dn / (margin + dp), min=0.0) * weight
        out[f"triplet_{layer}"] = term.reshape(())
        total = total + term
    out["triplet"] = total.reshape(())
    save_file(out, a.output)


def cmd_make_pth(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    if a.network == "generator":
        net = Generator(a.d, a.classes)
        net.reference_init()
    else:
        net = make_discriminator(a.network, a.d, a.height, a.width)
        discriminator_init(net)
    with torch.no_grad():
        randomize_bn_stats(net, gen)
    torch.save(net.state_dict(), a.out)


def cmd_bench_server(a):
    """Timing peer for benches/descriptor.rs. Reads commands from stdin, one per line:
    `threads N`; `descriptor N` / `full N` (N timed runs of the encoder layers 1..deepest of
    --layers, or of the whole generator); `quit`. Answers each with one JSON line of samples (ms)."""
    torch.manual_seed(0)
    net = Generator().eval()
    net.reference_init()
    x = torch.randn(1, 3, a.height, a.width)
    layers = [int(v) for v in a.layers.split(",")]
    deepest = max(layers)

    def descriptor():
        feats = net.encode(x, deepest)
        return torch.cat([feats[i - 1].reshape(1, -1) for i in layers], 1)

    jobs = {"descriptor": descriptor, "full": lambda: net(x)}
    print(json.dumps({"torch_version": torch.__version__}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "threads":
            torch.set_num_threads(int(words[1]))
            print(json.dumps({"threads": torch.get_num_threads()}), flush=True)
            continue
        fn, reps = jobs[words[0]], int(words[1])
        samples = []
        with torch.no_grad():
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - t0) * 1000.0)
        print(json.dumps({"samples": samples}), flush=True)


def cmd_train_step_server(a):
    """Timing peer for benches/train_step.rs: one DASGIL training step as the reference takes it
    (G step: depth + segmentation x 100 for A, A+, B, multi-scale triplet on layers 3..6,
    LSGAN G x 100; then D step: LSGAN on E(real) vs E(virtual) x 100), on random data of the
    given size. Reads `step N` lines; answers each with one JSON line of samples (ms)."""
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    gen = Generator()
    gen.reference_init()
    dis = make_discriminator(a.dis, 8, a.height, a.width)
    discriminator_init(dis)
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-3, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(dis.parameters(), lr=1e-3, betas=(0.5, 0.9))
    b, h, w = a.batch, a.height, a.width
    imgs = [torch.rand(b, 3, h, w) * 2 - 1 for _ in range(3)]
    depths = [torch.rand(b, 1, h, w) * 100 for _ in range(3)]
    classes = [torch.randint(0, 15, (b, h, w)) for _ in range(3)]
    real = torch.rand(b, 3, h, w) * 2 - 1

    def step():
        outs = [gen(x) for x in imgs]
        total = 0
        for (feats, depth, seg), gt, cls in zip(outs, depths, classes):
            total = total + sum(torch.mean(torch.abs(p - F.interpolate(gt, size=p.shape[2:]))) for p in depth) / 4
            total = total + 100 * F.nll_loss(F.log_softmax(seg, dim=1), cls)
        fa, fp, fn = outs[0][0], outs[1][0], outs[2][0]
        for layer in (3, 4, 5, 6):
            dp, dn = F.mse_loss(fa[layer - 1], fp[layer - 1]), F.mse_loss(fa[layer - 1], fn[layer - 1])
            total = total + 25 * torch.clamp(1 - dn / (1.0 + dp), min=0.0)
        with torch.no_grad():
            real_feats = gen.encode(real)
        total = total + 100 * 0.5 * torch.mean((dis(fa) - 1.0) ** 2)
        opt_g.zero_grad()
        total.backward()
        opt_g.step()
        d_real, d_virtual = dis(real_feats), dis([f.detach() for f in fa])
        loss_d = 100 * 0.5 * (torch.mean((d_real - 1.0) ** 2) + torch.mean(d_virtual ** 2))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()

    print(json.dumps({"torch_version": torch.__version__}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        samples = []
        for _ in range(int(words[1])):
            t0 = time.perf_counter()
            step()
            samples.append((time.perf_counter() - t0) * 1000.0)
        print(json.dumps({"samples": samples}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("forward")
    f.add_argument("--weights", required=True)
    f.add_argument("--input", required=True)
    f.add_argument("--output", required=True)
    f.add_argument("--train", action="store_true")
    f.add_argument("--d", type=int, default=8)
    f.add_argument("--classes", type=int, default=15)
    f.set_defaults(fn=cmd_forward)
    dsc = sub.add_parser("discriminator")
    dsc.add_argument("--kind", choices=["FD", "CD"], required=True)
    dsc.add_argument("--weights", required=True)
    dsc.add_argument("--features", required=True)
    dsc.add_argument("--output", required=True)
    dsc.add_argument("--train", action="store_true")
    dsc.add_argument("--d", type=int, default=8)
    dsc.add_argument("--height", type=int, default=256)
    dsc.add_argument("--width", type=int, default=1024)
    dsc.set_defaults(fn=cmd_discriminator)
    ls = sub.add_parser("losses")
    ls.add_argument("--input", required=True)
    ls.add_argument("--output", required=True)
    ls.add_argument("--triplet", required=True, help="JSON [[layer, margin, weight], ...]")
    ls.set_defaults(fn=cmd_losses)
    mk = sub.add_parser("make-pth")
    mk.add_argument("--network", choices=["generator", "FD", "CD"], required=True)
    mk.add_argument("--out", required=True)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--d", type=int, default=8)
    mk.add_argument("--classes", type=int, default=15)
    mk.add_argument("--height", type=int, default=256)
    mk.add_argument("--width", type=int, default=1024)
    mk.set_defaults(fn=cmd_make_pth)
    b = sub.add_parser("bench-server")
    b.add_argument("--height", type=int, default=256)
    b.add_argument("--width", type=int, default=1024)
    b.add_argument("--layers", default="5,6")
    b.set_defaults(fn=cmd_bench_server)
    ts = sub.add_parser("train-step-server")
    ts.add_argument("--height", type=int, default=256)
    ts.add_argument("--width", type=int, default=512)
    ts.add_argument("--batch", type=int, default=4)
    ts.add_argument("--dis", choices=["FD", "CD"], default="CD")
    ts.add_argument("--threads", type=int, default=2)
    ts.set_defaults(fn=cmd_train_step_server)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
