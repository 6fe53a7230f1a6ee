import pytest
import torch

import lcstudy
from lcstudy.codecs import CODECS, build_model, get_spec
from lcstudy.errors import DeviceError, InputError


def test_registry_has_the_eight_codecs_with_paper_labels():
    assert [s.label for s in CODECS] == ["FP", "HP", "MS-HP", "ARC", "DGM", "DGM-ATT", "CKBD", "ELIC"]
    assert get_spec("ARC") is get_spec("mbt2018") is get_spec("arc")
    assert get_spec("DGM").qualities == (1, 2, 3, 4, 5, 6)
    assert get_spec("FP").qualities == tuple(range(1, 9))
    assert get_spec("CKBD").qualities == (1,)


@pytest.mark.parametrize("label", ["FP", "HP", "MS-HP", "ARC", "DGM", "DGM-ATT"])
def test_registry_matches_compressai_zoo(label):
    """Our (N, M) per quality are what the zoo builds, and the classes are the zoo's."""
    from compressai.zoo import image as zoo

    spec = get_spec(label)
    assert set(spec.qualities) == set(zoo.cfgs[spec.name])
    for q in spec.qualities:
        assert spec.channels[q] == tuple(zoo.cfgs[spec.name][q])
    assert spec.model_class() is zoo.model_architectures[spec.name]


def test_seeded_random_weights_match_zoo_factory():
    from compressai.zoo import mbt2018_mean

    a = build_model(get_spec("MS-HP"), 2, seed=3)
    torch.manual_seed(3)
    b = mbt2018_mean(2)
    b.update(force=True)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = build_model(get_spec("MS-HP"), 2, seed=4)
    assert not torch.equal(sa["g_a.0.weight"], c.state_dict()["g_a.0.weight"])


def test_unknown_codec_lists_valid_names():
    with pytest.raises(InputError) as e:
        lcstudy.load_codec("JPEG-AI")
    for s in CODECS:
        assert s.label in str(e.value)


@pytest.mark.parametrize("name,q,msg", [("DGM", 7, "1–6"), ("FP", 0, "1–8"), ("ELIC", 2, "1 only")])
def test_quality_out_of_range_gives_the_range(name, q, msg):
    with pytest.raises(InputError, match=msg):
        lcstudy.load_codec(name, quality=q)


def test_quality_wrong_type():
    with pytest.raises(InputError, match="integer"):
        lcstudy.load_codec("FP", quality="high")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(DeviceError, match="cuda.is_available"):
        lcstudy.load_codec("FP", 1, device="cuda")


def test_bad_weights_value():
    with pytest.raises(InputError, match="pretrained"):
        lcstudy.load_codec("FP", 1, weights="imagenet")


def test_load_codec_reports_loading_time_and_weights():
    c = lcstudy.load_codec("HP", 1)
    assert c.weights == "random" and c.seed == 0
    assert 0 < c.load_seconds < 60
    assert not c.model.training
