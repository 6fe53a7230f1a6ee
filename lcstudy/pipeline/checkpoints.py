"""``make weights``: every pretrained checkpoint a profile needs, fetched into the torch hub cache
(``$TORCH_HOME/hub/checkpoints``), with CompressAI's own download path (torch.hub) — for machines
that run offline later (a cluster's compute nodes read the cache on the shared filesystem)."""
from __future__ import annotations

import sys


def fetch_all(profile, codecs=None) -> int:
    from ..core import weights as W
    from ..core.codec_sources import get_spec, registered
    from ..errors import WeightsError

    specs = [get_spec(c) for c in codecs] if codecs else list(registered())
    got, failed = 0, []
    for s in specs:
        for q in profile.qualities_of(s):
            try:
                if s.checkpoints.get(q):
                    path = W.fetch_registered(s, q)
                elif s.pretrained:
                    path = W.download(W.weights_url(s, q))
                else:
                    continue
            except WeightsError as e:
                failed.append(f"{s.label} q{q}: {e}")
                continue
            got += 1
            print(f"{s.label} q{q}: {path}", flush=True)
    if failed:
        print("error: " + "\n".join(failed), file=sys.stderr)
        return 1
    print(f"{got} checkpoint(s) in the torch hub cache")
    return 0
