"""Energy per timed call (lcstudy.core.energy): RAPL read from a fake powercap tree (package zones
only, wrap-around undone), NVML's shape, and the wiring from the monitor into the tables."""
import time

import pytest

import lcstudy
from lcstudy.core import energy


def _zone(root, name, label, uj, rng=1_000_000):
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{uj}\n")
    (z / "max_energy_range_uj").write_text(f"{rng}\n")
    return z


def test_rapl_sums_packages_only_and_undoes_a_wrap(tmp_path):
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 999_000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5)  # inside package 0: not counted twice
    p1 = _zone(tmp_path, "intel-rapl:1", "package-1", 10)
    _zone(tmp_path, "intel-rapl:2", "psys", 0)  # overlaps the packages
    m = energy.RaplMeter(tmp_path)
    assert len(m.zones) == 2
    a = m.read()
    (p0 / "energy_uj").write_text("1000\n")  # wrapped: 999000 -> 1000000 (=0) -> 1000
    (p1 / "energy_uj").write_text("30\n")
    assert m.joules(a, m.read()) == pytest.approx((2_000 + 20) / 1e6)


def test_rapl_absent_or_unreadable_is_not_exposed(tmp_path, monkeypatch):
    with pytest.raises(LookupError, match="no RAPL package zone"):
        energy.RaplMeter(tmp_path)
    z = _zone(tmp_path, "intel-rapl:0", "package-0", 1)
    (z / "energy_uj").unlink()  # as on kernels that make it root-only, or VMs without it
    with pytest.raises(LookupError, match="not readable"):
        energy.RaplMeter(tmp_path)
    monkeypatch.setenv("LCSTUDY_POWERCAP", str(tmp_path))
    energy.meter_for.cache_clear()
    try:
        assert energy.describe("cpu").startswith(energy.NOT_EXPOSED)
        assert energy.EnergyProbe("cpu").end() == {}
    finally:
        energy.meter_for.cache_clear()


class _Clockwork:
    """A meter whose counter grows at a known power: the energy of a call is power × its window."""

    source = "rapl"

    def __init__(self, watts):
        self.watts = watts

    def read(self):
        return time.perf_counter()

    def joules(self, a, b):
        return (b - a) * self.watts


@pytest.fixture
def quiet(monkeypatch):
    """Other agents' load must not blank the rows this test reads: contention is another test's subject."""
    from lcstudy.core import contention

    monkeypatch.setattr(contention, "is_contended", lambda other, wall: False)


def test_energy_reaches_the_tables_as_power_times_time(tmp_path, small_png, monkeypatch, quiet):
    watts = 40.0
    monkeypatch.setattr(energy, "meter_for", lambda device: (_Clockwork(watts), ""))
    codec = lcstudy.load_codec("tests.fakecodec:FakeHyperprior", weights="random")
    df = lcstudy.profile(codec, [small_png("a", 64, 64)], repeats=3, warmup=1, results_dir=tmp_path)
    tot = df[df.stage == "total"]
    assert len(tot) == 2 and tot.energy_j.notna().all()
    # the energy window brackets the timed window closely (the monitor's reads sit just outside the clock)
    for _, r in tot.iterrows():
        assert watts * r.seconds <= r.energy_j * 1.0001
        assert r.energy_j <= watts * r.seconds * 1.5 + watts * 2e-3
        assert r.energy_j_per_mp == pytest.approx(r.energy_j / (r.height * r.width / 1e6))
    assert df[df.stage != "total"].energy_j.isna().all()
    s = df.attrs["samples"]
    assert s[s.stage == "total"].energy_j.notna().all() and s[s.stage != "total"].energy_j.isna().all()


def test_no_counter_leaves_the_columns_blank(tmp_path, small_png, monkeypatch, quiet):
    monkeypatch.setattr(energy, "meter_for", lambda device: (None, "not exposed on this platform (test)"))
    codec = lcstudy.load_codec("tests.fakecodec:FakeHyperprior", weights="random")
    df = lcstudy.profile(codec, [small_png("a", 64, 64)], repeats=2, warmup=0, results_dir=tmp_path)
    assert df.energy_j.isna().all()


def test_assessment_energy_table_says_where_there_is_none(tmp_path, small_png, monkeypatch, quiet):
    from lcstudy.chapters.assessment import energy_table

    codec = lcstudy.load_codec("tests.fakecodec:FakeHyperprior", weights="random")
    monkeypatch.setattr(energy, "meter_for", lambda device: (_Clockwork(40.0), ""))
    on = lcstudy.profile(codec, [small_png("a", 64, 64)], repeats=2, warmup=0, results_dir=tmp_path / "on")
    t = energy_table(on)
    assert set(t.direction) == {"encode", "decode"} and (t.joules > 0).all()
    assert t.energy_source.str.startswith("RAPL").all()
    monkeypatch.setattr(energy, "meter_for", lambda device: (None, "not exposed on this platform (no zone)"))
    off = lcstudy.profile(codec, [small_png("a", 64, 64)], repeats=2, warmup=0, results_dir=tmp_path / "off")
    t = energy_table(off)
    assert len(t) == 1 and t.energy_source.iloc[0] == "not exposed on this platform (no zone)"
