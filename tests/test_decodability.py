"""Encode here, decode there (issue 27): known answers on a briefly trained hyperprior, whose predicted
scales spread over the table (at random weights they all sit at index 0 and any decoder decodes
everything identically), and the phase end to end on a results folder holding two hosts' runs."""
import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from lcstudy.core import decoding
from lcstudy.core.decoding import DecoderConfig

from .conftest import KODAK, ROOT, write_tiny_codecs_file

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """TINY trained 300 steps on 64² Kodak crops (~40 s on the 2-core VM): its scales use ~30 of the 64
    table entries, none above 10 % of the indexes."""
    out = tmp_path_factory.mktemp("tiny") / "tiny-trained.pth.tar"
    r = subprocess.run([sys.executable, "train_tiny.py", "--images", str(KODAK), "--steps", "300", "--crop", "64",
                        "--lr", "1e-3", "--out", str(out)], cwd=EXAMPLES, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _crops(n, size=128):
    sys.path.insert(0, str(EXAMPLES))
    from train_tiny import crops

    return crops(KODAK, size, n, seed=1)


def _tiny(path=None, monkeypatch=None):
    import lcstudy

    monkeypatch.syspath_prepend(str(EXAMPLES))
    return lcstudy.load_codec("tiny_codec:TinyHyperprior", weights=str(path) if path else "random",
                              kwargs={"N": 32, "M": 48})


def _outcomes(model, imgs, cfg, enc_cfg=None, ref_cfg=None):
    out = []
    for i in range(len(imgs)):
        enc = decoding.encode(model, imgs[i:i + 1], enc_cfg)
        ref = decoding.fingerprint(model, enc["strings"], enc["shape"], ref_cfg or enc_cfg)
        got = decoding.fingerprint(model, enc["strings"], enc["shape"], cfg)
        out.append((decoding.classify(ref, got), ref))
    return out


@pytest.mark.slow
def test_same_decoder_identical_nudged_hs_corrupts_a_trained_hyperprior_never_the_factorized(trained, monkeypatch):
    from compressai.models import FactorizedPrior

    imgs = _crops(6)
    tiny = _tiny(trained, monkeypatch).model
    same = _outcomes(tiny, imgs, DecoderConfig())
    assert [c["outcome"] for c, _ in same] == ["identical"] * 6
    assert all(decoding.degenerate(r["scale"]) is False and r["scale"]["indexes_used"] > 8 for _, r in same)
    # a nudge smaller than an image's margin cannot move a scale across a table boundary
    one = _outcomes(tiny, imgs, DecoderConfig(ulps=1))
    for (c, ref) in one:
        if ref["scale"]["margin_ulps"] > 2:
            assert c["outcome"] == "identical", (c, ref["scale"])
    big = _outcomes(tiny, imgs, DecoderConfig(ulps=2 ** 13))  # TF32's rounding
    bad = [c for c, _ in big if c["outcome"] == "corrupt"]
    assert bad and all(0 <= c["first_diff"] < 1 for c in bad), big
    # the mitigation: h_s in float64 on both sides, the same nudge in float64's ulps: decodes again
    wide = DecoderConfig(entropy_dtype="float64")
    mit = _outcomes(tiny, imgs, DecoderConfig(ulps=2 ** 13, entropy_dtype="float64"), enc_cfg=wide)
    assert [c["outcome"] for c, _ in mit] == ["identical"] * 6
    # the factorized prior has no hyper-synthesis: nothing to nudge, nothing desynchronises
    torch.manual_seed(0)
    fp = FactorizedPrior(32, 48).eval()
    fp.update(force=True)
    assert [c["outcome"] for c, _ in _outcomes(fp, imgs, DecoderConfig(ulps=2 ** 13))] == ["identical"] * 6


def test_random_weights_are_labelled_degenerate(monkeypatch):
    _, ref = _outcomes(_tiny(None, monkeypatch).model, _crops(1), DecoderConfig())[0]
    assert decoding.degenerate(ref["scale"]) is True and ref["scale"]["top_share"] >= 0.95


@pytest.mark.slow
def test_an_altered_bitstream_is_corrupt_or_error_never_identical(trained, monkeypatch):
    tiny = _tiny(trained, monkeypatch).model
    x = _crops(1)
    enc = decoding.encode(tiny, x)
    ref = decoding.fingerprint(tiny, enc["strings"], enc["shape"])
    (y,), (z,) = enc["strings"]
    for strings in ([[y[: len(y) // 2]], [z]], [[bytes([y[0] ^ 0xFF]) + y[1:]], [z]], [[y], [z[:1]]]):
        try:
            got, err = decoding.fingerprint(tiny, strings, enc["shape"]), None
        except Exception as e:  # noqa: BLE001
            got, err = None, str(e)
        assert decoding.classify(ref, got, err)["outcome"] in ("corrupt", "error")


@pytest.mark.slow
def test_the_phase_decodes_two_hosts_streams_resumably_and_survives_a_broken_one(trained, tmp_path, monkeypatch):
    from lcstudy.runs import decodability, layout, learned
    from lcstudy.runs.tidy import load_results

    monkeypatch.setenv("LCSTUDY_CODECS", str(write_tiny_codecs_file(tmp_path / "codecs.toml", trained)))
    monkeypatch.setenv("LCSTUDY_NOWAIT", "1")
    res = tmp_path / "r"
    imgs = [str(KODAK / f"kodim0{i}.png") for i in (1, 2)]
    learned.run(codec="TINY", images=",".join(imgs), crop=128, repeats=1, kernels=False, macs=False,
                results_dir=str(res), progress=False, log=lambda *_: None)
    (run,) = layout.runs(res)
    items = run.items()
    assert all(r["bitstream"]["fingerprint"]["symbols"] > 0 for r in items)
    # the same run copied from another machine, one of its streams cut short
    other = res / "othernode" / run.path.relative_to(res / run.host)
    shutil.copytree(run.path, other)
    f = sorted((other / layout.ITEMS).glob("*.json"))[0]
    rec = json.loads(f.read_text())
    rec["bitstream"]["strings"][0][0]["b64"] = rec["bitstream"]["strings"][0][0]["b64"][:8]
    f.write_text(json.dumps(rec))
    assert decodability.execute(res, backends=[], log=lambda *_: None) == 0
    t = load_results(res, "decodability")
    d = t[t.row_type == "decode"]
    configs = {c.name for c in decodability.decoder_configs(res, torch.get_num_threads(), [])}
    assert set(d.decoder) == configs and set(d.enc_host) == {run.host, "othernode"}
    assert len(d) == 4 * len(configs)  # 2 hosts × 2 images × every decoder
    broken = d[(d.enc_host == "othernode") & (d.image == rec["image"])]
    assert set(broken.outcome) <= {"corrupt", "error"}
    plain = d[(d.enc_host == run.host) & d.dec_ulps.eq(0)]
    same = plain.dec_threads == plain.enc_threads
    assert set(plain[same].outcome) == {"identical"} and not d.degenerate.any()
    assert set(plain[~same].outcome) <= {"identical", "close"}  # 1 thread sums the convolutions in another order
    # what the phase takes by default: DECODE_LIMIT images per run (here both of each host's run)
    assert len(decodability._streams(res, 1)) == 2 and len(decodability._streams(res, None)) == 4
    # resumable: nothing is decoded twice
    notes = []
    decodability.execute(res, backends=[], log=notes.append)
    assert any("0 decodes written" in n for n in notes), notes
    # a backend decoder is calibrated on the first two distinct images of the codec's runs, whatever DECODE_LIMIT
    # took (quick decodes 1 image a run; its runs' streams of that image are the same image twice)
    import lcstudy.core.backends as backends

    seen = []
    monkeypatch.setattr(backends, "deploy", lambda codec, backend, calib, *a, **k: seen.append(
        [im.name for im in calib]) or SimpleNamespace(codec=codec))
    for limit in (1, 2):
        decodability._deployed("codec", DecoderConfig(threads=2, backend="channels_last"),
                               decodability._streams(res, limit), 2, print)
    assert seen == [["kodim01", "kodim02"]] * 2, seen


def test_the_chapter_states_the_matrix_the_degenerate_label_and_the_mitigation():
    import pandas as pd

    from lcstudy.chapters import decodability as ch
    from lcstudy.chapters.page import Page

    def row(codec, image, decoder, ulps, outcome, top, row_type="decode", **kw):
        return {"row_type": row_type, "codec": codec, "quality": 1, "weights_label": "w", "weights": "checkpoint",
                "enc_host": "a", "enc_backend": "eager", "enc_device": "cpu", "enc_threads": 2, "enc_run_id": codec,
                "item": image, "image": image, "dec_host": "a", "decoder": decoder, "dec_ulps": ulps,
                "outcome": outcome, "reason": "" if outcome == "identical" else "why", "scale_top_share": top,
                "scale_indexes_used": 30, "margin_ulps": 20.0, "at_risk": 0, "degenerate": top >= 0.95, **kw}

    t = pd.DataFrame([row("HP", i, "eager · cpu · 2thr", 0, "identical", 0.1) for i in "abcd"]
                     + [row("HP", i, "eager · cpu · 2thr · h_s+8192ulp", 8192, o, 0.1)
                        for i, o in zip("abcd", ["corrupt", "corrupt", "corrupt", "identical"])]
                     + [row("HP", i, "eager · cpu · 2thr · h_s+8192ulp · h_s-float64", 8192, "identical", 0.1,
                            row_type="mitigation", mitigation_cost=1.5, mitigated="eager · cpu · 2thr · h_s+8192ulp") for i in "abc"])
    tables = {"matrix": ch.matrix(t), "margins": ch.margins(t), "mitigation": ch.mitigation(t)}
    tables["summary"] = ch.summary(tables["matrix"])
    sim = tables["matrix"][tables["matrix"].simulated]
    assert sim.corrupt_images.tolist() == [0.75]
    page = Page("decodability")
    ch.findings(page, tables)
    text = " ".join(page.findings.sentences())
    assert "at most 0.750 of a codec's images (HP" in text
    assert "restores 1.00 of the images of HP that" in text and "corrupted, at 1.50× the decode time" in text
    assert "degenerate" not in text  # a trained model: no degenerate warning
    t2 = t.assign(scale_top_share=1.0, degenerate=True)
    page2 = Page("decodability")
    m2 = ch.matrix(t2)
    ch.findings(page2, {"matrix": m2, "margins": ch.margins(t2), "mitigation": ch.mitigation(t2),
                        "summary": ch.summary(m2)})
    assert "degenerate" in " ".join(page2.findings.sentences())


def test_a_variant_encoders_streams_are_decoded_by_the_reference_decoder_only():
    """A backend run's and a thread pass's streams (the standard book's 1-thread pass: 128 of its 368 decodes)
    under the reference decoder only; the main run's under every configuration — also when THREADS made the main
    runs; an eager run with no main run of its codec configuration on its host and device stands in for it."""
    from pathlib import Path

    from lcstudy.runs import decodability, layout

    ref, configs = DecoderConfig(threads=2), [DecoderConfig(threads=2, backend="onnxruntime"), DecoderConfig(threads=1),
                                              DecoderConfig(threads=2, ulps=1)]

    def run(threads=2, asked=None, backend="eager", device="cpu"):
        return layout.Run(Path(f"res/vm/{device}/HP-q1/x"), {"request": {"backend": backend, "threads": asked,
                                                                         "device": device},
                                                             "environ": {"threads": threads}})

    eager, dep, one = run(), run(backend="onnxruntime"), run(threads=1, asked=1)
    asked = run(asked=2)  # make book THREADS=2: the main runs asked for their threads too
    cuda = run(device="cuda")
    for group in ([(eager, {}), (dep, {}), (one, {})], [(asked, {}), (dep, {}), (one, {})]):
        main = group[0][0]
        for r, _ in group:
            assert decodability._pairs(r, ref, ref, group)
        for other in configs:
            assert decodability._pairs(main, other, ref, group)
            assert not decodability._pairs(dep, other, ref, group) and not decodability._pairs(one, other, ref, group)
    for other in configs:
        # THREADS=1 runs alone, or beside a main run on another device: decoded under every configuration
        assert decodability._pairs(one, other, ref, [(one, {})])
        assert decodability._pairs(one, other, ref, [(cuda, {}), (one, {})])
        assert not decodability._pairs(dep, other, ref, [(dep, {}), (one, {})])


def test_the_weights_digest_is_the_same_before_and_after_a_coding():
    """CompressAI's MaskedConv2d masks its weight in place on its first call: a fresh decoder and a run's encoder
    hold the same weights (CKBD and ELIC were skipped as 'other weights' before the mask was applied)."""
    from lcstudy.core.clocks import StageClock
    from lcstudy.core.instrument import encode_decode
    from lcstudy.core.codec_loading import load_codec

    c = load_codec("CKBD", 1, weights="random", seed=0)
    before = decoding.weights_digest(c.model)
    encode_decode(c, torch.rand(1, 3, 64, 64), StageClock("cpu"))
    assert decoding.weights_digest(c.model) == before


def test_a_bad_decode_limit_is_refused_before_any_work(tmp_path, capsys):
    from lcstudy.pipeline.__main__ import main

    for bad in (["--limit", "0"], ["--limit", "two"], ["--qualities", "highest"]):
        assert main(["decodability", "--results-dir", str(tmp_path / "none"), *bad]) == 2
        err = capsys.readouterr().err
        assert "DECODE_" in err and "give" in err, err


def test_the_profile_decides_how_many_images_a_run_decodes_unless_decode_limit_says(tmp_path, monkeypatch, capsys):
    """make book PROFILE=quick decodes 1 image a run (the preview's phase was a quarter of its book), the other
    profiles 2; DECODE_LIMIT overrides either; an unknown profile is refused before any work."""
    from lcstudy.pipeline.__main__ import main
    from lcstudy.runs import decodability

    seen = []
    monkeypatch.setattr(decodability, "execute", lambda res, backends, limit, qualities: seen.append(limit) or 0)
    monkeypatch.setattr("lcstudy.pipeline.signals.install", lambda *a, **k: None)  # no handlers left in pytest
    base = ["decodability", "--results-dir", str(tmp_path)]
    for extra, want in ((["--profile", "quick"], 1), (["--profile", "standard"], 2), (["--profile", "paper"], 2),
                        ([], 2), (["--profile", "quick", "--limit", "2"], 2), (["--profile", "quick", "--limit", "all"],
                                                                            None)):
        assert main(base + extra) == 0
        assert seen.pop() == want, extra
    assert main(base + ["--profile", "nope", "--limit", "1"]) == 2 and not seen
    assert "unknown profile" in capsys.readouterr().err


def test_a_run_fingerprints_only_the_items_its_profiles_phase_decodes(tmp_path, monkeypatch):
    """The untimed fingerprint decode is made for the first `decode_limit` items of a run (quick: 1) and for no
    item of a resolution-scaling run (the phase never decodes those): 1,595 s of a standard book went to decodes
    no phase read. Every item keeps its stream; the phase selects a run's items in the run's order (here not its
    files' name order), decodes only fingerprinted ones and says how many it skipped; the field changes no run id."""
    import dataclasses

    from lcstudy.runs import decodability, layout, learned
    from lcstudy.runs.params import resolve

    monkeypatch.setenv("LCSTUDY_NOWAIT", "1")
    res = tmp_path / "r"
    imgs = ",".join(str(KODAK / f"kodim0{i}.png") for i in (2, 1))  # the run's order is not its files' name order
    common = dict(codec="FP", crop=64, repeats=1, kernels=False, macs=False, results_dir=str(res), progress=False,
                  log=lambda *_: None, profile="quick")
    learned.run(images=imgs, **common)
    learned.run(images=imgs.split(",")[0], sizes="crop64,crop128", **{**common, "crop": None})
    runs = {bool(r.meta["request"]["sizes"]): r for r in layout.runs(res)}
    main, scaling = [sorted(runs[s].items(), key=lambda r: r["item"]) for s in (False, True)]
    assert runs[False].meta["request"]["fingerprints"] == 1 and runs[True].meta["request"]["fingerprints"] == 0
    assert [r["image"] for r in main] == ["kodim01", "kodim02"]
    assert [bool(r["bitstream"]["fingerprint"]) for r in main] == [False, True]  # the run's first item
    assert not any(r["bitstream"]["fingerprint"] for r in scaling)
    assert all(r["bitstream"]["strings"] for r in main + scaling)  # every stream kept
    for limit in (None, 1):  # the profile's limit selects the run's first item, the one fingerprinted
        assert [r["image"] for _, r in decodability._streams(res, limit)] == ["kodim02"]
    notes = []
    from lcstudy.core.decoding import DecoderConfig

    monkeypatch.setattr(decodability, "decoder_configs", lambda *a, **k: [DecoderConfig(threads=1)])  # one decoder
    decodability.execute(res, backends=[], limit=2, log=notes.append)
    assert any("1 of the 2 stored bitstreams selected have no encoder fingerprint" in n for n in notes), notes
    assert [(d["image"], d["decoder"]) for d in layout.read_decodes(res)] == [("kodim02", "eager · cpu · 1thr")]
    # FINGERPRINTS=0: streams kept, none to decode against; the phase says so and why, and decodes nothing
    res0 = tmp_path / "r0"
    learned.run(images=imgs, fingerprints=0, **{**common, "results_dir": str(res0)})
    notes = []
    assert decodability.execute(res0, backends=[], limit=None, log=notes.append) == 0
    assert any(n.startswith("note: none of the 2 stored bitstreams selected") for n in notes), notes
    assert not (res0 / layout.DECODES).exists()
    req = resolve(dict(codec="FP", images=imgs, crop=64, profile="quick", results_dir=str(res)))
    assert req.request_id == dataclasses.replace(req, fingerprints=None).request_id


def test_the_matrix_figure_gives_a_thread_pass_its_own_row():
    """The standard profile's 1-thread pass encodes the main run's codec configuration on the same host with the
    same backend: its row is named by its threads, not drawn over the main run's (whose cells the last one wrote)."""
    import pandas as pd

    from lcstudy.chapters import decodability as ch

    def row(threads, decoder, outcome, backend="eager"):
        return {"row_type": "decode", "codec": "HP", "quality": 1, "weights_label": "w", "enc_host": "vm",
                "enc_backend": backend, "enc_device": "cpu", "enc_threads": threads, "item": "a", "image": "a",
                "dec_host": "vm", "decoder": decoder, "dec_ulps": 0, "outcome": outcome, "reason": "",
                "degenerate": False}

    t = pd.DataFrame([row(2, "eager · cpu · 2thr", "identical"), row(2, "eager · cpu · 1thr", "close"),
                      row(1, "eager · cpu · 2thr", "corrupt"), row(2, "onnxruntime · cpu · 2thr", "close"),
                      row(2, "eager · cpu · 2thr", "close", backend="onnxruntime")])
    fig = ch.fig_matrix(ch.matrix(t))
    labels = [x.get_text() for x in fig.axes[0].get_yticklabels()]
    assert labels == ["HP · vm eager 2thr", "HP · vm eager 1thr", "HP · vm onnxruntime"], labels
    cols = [x.get_text() for x in fig.axes[0].get_xticklabels()]
    worst, ref = fig.axes[0].images[0].get_array(), cols.index("eager · cpu · 2thr")
    # colour index by outcome: identical 0, close 1, corrupt 2; the reference decoder's column holds both encoders'
    assert worst[0, ref] == 0 and worst[1, ref] == 2 and worst[2, ref] == 1  # none drawn over another
    assert worst.mask[1].sum() == len(cols) - 1  # the pass: the reference decoder only
