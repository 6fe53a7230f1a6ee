"""Train the example codec for a few steps and save a checkpoint the way CompressAI's
``examples/train.py`` does (its ``save_checkpoint``: ``{"epoch", "state_dict", "loss", "optimizer",
"aux_optimizer", "lr_scheduler"}``, no ``update()`` before saving).

    python examples/train_tiny.py --images data/kodak --steps 200 --out examples/checkpoints/tiny-q1.pth.tar

The rate-distortion loss and the two optimisers are train.py's (``RateDistortionLoss``, Adam for the
network, Adam for the entropy bottleneck's quantiles). A few steps give a checkpoint in the right
format; a useful codec needs the full training of train.py on a large data set.
"""
import argparse
import random
from pathlib import Path

import torch
from compressai.losses import RateDistortionLoss
from PIL import Image

from tiny_codec import TinyHyperprior


def crops(folder: Path, size: int, n: int, seed: int = 0):
    rng = random.Random(seed)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    out = []
    for _ in range(n):
        im = Image.open(rng.choice(files)).convert("RGB")
        x0, y0 = rng.randrange(im.width - size), rng.randrange(im.height - size)
        a = torch.frombuffer(bytearray(im.crop((x0, y0, x0 + size, y0 + size)).tobytes()), dtype=torch.uint8)
        out.append(a.view(size, size, 3).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default="data/kodak")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lmbda", type=float, default=0.0067)
    ap.add_argument("--N", type=int, default=32)
    ap.add_argument("--M", type=int, default=48)
    ap.add_argument("--crop", type=int, default=128, help="training crop side")
    ap.add_argument("--lr", type=float, default=1e-4, help="the network's learning rate")
    ap.add_argument("--out", default="examples/checkpoints/tiny-q1.pth.tar")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    net = TinyHyperprior(a.N, a.M)
    criterion = RateDistortionLoss(lmbda=a.lmbda)
    params = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    optimizer = torch.optim.Adam(params, lr=a.lr)
    aux_optimizer = torch.optim.Adam(aux, lr=1e-3)
    lr_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min")
    data = crops(Path(a.images), a.crop, 8 * max(a.steps // 25, 1))
    net.train()
    for step in range(a.steps):
        x = data[torch.randint(len(data), (8,))]
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        out = criterion(net(x), x)
        out["loss"].backward()
        optimizer.step()
        net.aux_loss().backward()
        aux_optimizer.step()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": a.steps, "state_dict": net.state_dict(), "loss": out["loss"].detach(),
                "optimizer": optimizer.state_dict(), "aux_optimizer": aux_optimizer.state_dict(),
                "lr_scheduler": lr_scheduler.state_dict()}, a.out)
    print(f"wrote {a.out} (loss {out['loss'].item():.3f} after {a.steps} steps)")


if __name__ == "__main__":
    main()
