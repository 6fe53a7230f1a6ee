"""The run request and the package's shape (issue 25): the notebook parameters written once and checked
everywhere they are repeated, requests built by keyword only, and the import floors of ``lcstudy/``."""
import re
import subprocess

import pytest

from lcstudy.pipeline.__main__ import main
from lcstudy.runs.params import REQUEST_PARAM, RUN_NOTEBOOKS

from .conftest import ROOT

#: set by the Makefile's own RESULTS_DIR and PROFILE (shared with every target), so not in NB_PARAMS
MAKE_WIDE = ("results_dir", "profile")


def _cli_params(kind: str, capsys) -> list[str]:
    assert main(["params", kind]) == 0
    return capsys.readouterr().out.split()


@pytest.mark.parametrize("kind", list(RUN_NOTEBOOKS))
def test_params_cli_prints_the_one_list(kind, capsys):
    assert _cli_params(kind, capsys) == list(RUN_NOTEBOOKS[kind][1])


def test_params_cli_refuses_an_unknown_kind(capsys):
    assert main(["params", "lerned"]) == 2
    assert capsys.readouterr().err.strip() == "error: params 'lerned': not a run kind; valid: learned, standard"


def test_makefile_nb_params_are_the_list(capsys):
    """Asked of make itself (the variable as make expands it), not read with a regex."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "--eval", "print-%: ; @echo $($*)",
                          "print-NB_PARAMS"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == [p.upper() for p in _cli_params("learned", capsys) if p not in MAKE_WIDE]


def _notebook(kind: str) -> str:
    return (ROOT / "notebooks" / f"{RUN_NOTEBOOKS[kind][0]}.md").read_text()


@pytest.mark.parametrize("kind", list(RUN_NOTEBOOKS))
def test_notebook_parameters_cell_is_the_list(kind, capsys):
    cell = re.search(r":tags: \[parameters[^\n]*\n\n(.*?)```", _notebook(kind), re.S).group(1)
    names = [ln.split("=")[0].strip() for ln in cell.strip().splitlines() if ln.strip()]
    assert names == _cli_params(kind, capsys) + [REQUEST_PARAM]  # the pipeline's request last, not a user's parameter


@pytest.mark.parametrize("kind", list(RUN_NOTEBOOKS))
def test_notebook_call_passes_the_list(kind, capsys):
    """The notebook's ``<kind>.run(...)`` passes each parameter as itself, and nothing else."""
    call = re.search(rf"\b{kind}(?:_subject)?\.run\((.*?)\)\n", _notebook(kind), re.S).group(1)
    passed = re.findall(r"(\w+)=(\w+)", call)
    assert [k for k, v in passed if k != v] == []
    assert sorted(k for k, _ in passed) == sorted(_cli_params(kind, capsys) + [REQUEST_PARAM])


def test_readme_lists_the_parameters(capsys):
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"^Parameters: `([A-Z_\s]+)` \(and `RESULTS_DIR`, `PROFILE`\)", readme, re.M)
    assert m, "README: the 'Parameters: `CODEC …` (and `RESULTS_DIR`, `PROFILE`)' sentence is gone"
    assert m.group(1).split() == [p.upper() for p in _cli_params("learned", capsys) if p not in MAKE_WIDE]


def test_a_request_is_built_by_keyword_only(tmp_path):
    """A positional construction is refused: inserting a field cannot silently shift the values after it."""
    import dataclasses

    from lcstudy.runs.params import LearnedRequest, StandardRequest, resolve

    from .conftest import KODAK

    base = {"images": str(KODAK), "limit": 1, "results_dir": str(tmp_path)}
    for req, typ in ((resolve({**base, "codec": "HP"}), LearnedRequest),
                     (resolve(base, notebook="profile_standard"), StandardRequest)):
        assert type(req) is typ
        values = [getattr(req, f.name) for f in dataclasses.fields(typ)]
        with pytest.raises(TypeError):
            typ(*values)
        assert typ(**{f.name: getattr(req, f.name) for f in dataclasses.fields(typ)}) == req


def test_one_request_type_per_run_kind(tmp_path):
    """Issue 25: each run kind has its own request type holding only its own fields (a standard run has no codec,
    a learned run no sweep); a request stored before the split, which held both kinds' fields, reads back as the
    type of its kind with the same id, and a stored request of the other kind is refused by a typed reader."""
    import dataclasses
    import json

    from lcstudy.errors import InputError
    from lcstudy.runs.params import LearnedRequest, RunRequest, StandardRequest, request_dict

    reqs = _fixed_requests(tmp_path)
    learned, standard = ({f.name for f in dataclasses.fields(reqs[k])} for k in ("learned", "standard"))
    assert {"codec", "quality", "weights", "backend", "sizes"} <= learned and not {"sweep", "codecs"} & learned
    assert {"sweep", "codecs"} <= standard and not {"codec", "quality", "weights", "backend", "sizes"} & standard
    with pytest.raises(TypeError):
        RunRequest(**{f.name: getattr(reqs["standard"], f.name) for f in dataclasses.fields(RunRequest)})
    before = {"codec": "", "quality": 0, "weights": "random", "weights_path": "", "weights_hash": "", "seed": 0,
              "kernels": True, "macs": True, "codec_args": None, "kernels_crop": None, "sizes": [],
              "backend": "eager", "sweep": "full", "codecs": []}  # the one type's defaults, as run.json held them
    for kind, typ in (("learned", LearnedRequest), ("standard", StandardRequest)):
        stored = {**before, **json.loads(json.dumps(request_dict(reqs[kind])))}
        back = RunRequest.from_dict(stored)
        assert type(back) is typ and back == reqs[kind] and back.request_id == GOLDEN_IDS[kind]
    with pytest.raises(InputError, match="standard run's request"):
        LearnedRequest.from_dict(request_dict(reqs["standard"]))
    with pytest.raises(InputError, match="unknown fields quality"):  # not a default: not a field left from before
        RunRequest.from_dict({**request_dict(reqs["standard"]), "quality": 3})


def _readme_floors() -> tuple[str, ...]:
    """The floors of ``lcstudy/``, lowest first, as the README's Layout states them."""
    m = re.search(r"floors, lowest first: ([^.]*)\.", (ROOT / "README.md").read_text())
    assert m, "README: the Layout's 'floors, lowest first: `core` → …' sentence is gone"
    return tuple(re.findall(r"`(\w+)`", m.group(1)))


FLOORS = _readme_floors()


def test_the_readme_floors_are_the_subpackages():
    subpackages = {p.parent.name for p in (ROOT / "lcstudy").glob("*/__init__.py")}
    assert sorted(FLOORS) == sorted(subpackages) and len(set(FLOORS)) == len(FLOORS)


def _module_of(path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """module → the ``lcstudy`` modules it imports, anywhere in its body (function-local imports included),
    relative imports resolved; ``from pkg import name`` counts as ``pkg.name`` where that is a module."""
    import ast

    files = {_module_of(p): p for p in (ROOT / "lcstudy").rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # lcstudy.core.stats.StopRule → lcstudy.core.stats
                    t = t.rpartition(".")[0]
                if t.startswith("lcstudy") and t != mod:
                    deps.add(t)
        graph[mod] = deps
    return graph


def _floor(mod: str) -> int:
    parts = mod.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else -1


def test_imports_go_down_the_floors():
    """No module imports from a higher floor (a package's ``__init__`` counts as its floor; ``lcstudy`` and
    its top-level modules are below ``core``, except ``lcstudy/__init__``, the public API over every floor)."""
    up = sorted(f"{m} → {d}" for m, ds in _import_graph().items() if m != "lcstudy" for d in ds
                if d != "lcstudy" and _floor(d) > _floor(m))
    assert up == []


def test_no_import_cycle():
    """Between modules, function-local imports included (they hide a cycle from Python, not from a reader)."""
    graph = _import_graph()
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                cycles.append(" → ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_codec_table_and_its_sources_sit_below_loading():
    """The split of the old ``core/registry.py`` by job: the table (every fact about a codec), where codecs come
    from, and loading one. The first two import neither loading nor weights (function-local imports included),
    so a parameter check that looks a codec up never reaches the code that builds models."""
    graph = _import_graph()
    table, sources = graph["lcstudy.core.codec_table"], graph["lcstudy.core.codec_sources"]
    assert not table & {"lcstudy.core.codec_sources", "lcstudy.core.codec_loading", "lcstudy.core.weights"}
    assert not sources & {"lcstudy.core.codec_loading", "lcstudy.core.weights"}
    assert {"lcstudy.core.codec_sources", "lcstudy.core.codec_table", "lcstudy.core.weights"} \
        <= graph["lcstudy.core.codec_loading"]


def test_first_guess_rates_use_the_named_factors(monkeypatch, tmp_path):
    """A GPU's and one thread's first-guess rates come from the two named factors, in the warm-up rule's
    guess and in the cost model's alike (one function, not the numbers written twice)."""
    import dataclasses

    from lcstudy.core.codec_sources import get_spec
    from lcstudy.pipeline.cost import predict_one
    from lcstudy.runs import profiles as P
    from lcstudy.runs.params import resolve

    from .conftest import KODAK

    hp = get_spec("HP")
    base = P.reference_rate(hp, 1, "cpu", 2)
    assert base == hp.ref_s_per_mpx[0]
    assert P.reference_rate(hp, 1, "cuda", 2) == base / P.GPU_SPEEDUP_GUESS
    assert P.reference_rate(hp, 1, "cpu", 1) == base * P.ONE_THREAD_SLOWDOWN_GUESS
    assert P.reference_seconds("HP", 1, 2_000_000, "cuda") == pytest.approx(2 * base / P.GPU_SPEEDUP_GUESS)
    req = dataclasses.replace(resolve({"codec": "HP", "images": str(KODAK), "limit": 1, "results_dir": str(tmp_path),
                                       "kernels": False, "macs": False}), device="cuda")
    before = predict_one(req, {}, {})
    monkeypatch.setattr(P, "GPU_SPEEDUP_GUESS", P.GPU_SPEEDUP_GUESS * 2)
    assert predict_one(req, {}, {}) < before


def test_a_codecs_facts_are_in_its_spec():
    """Every built-in codec carries its reference rate per channel configuration, and each without zoo weights
    the file of the RD points its paper quotes (which ``make data`` brings): nothing kept in a side table."""
    from lcstudy.core.codec_table import CODECS

    from .conftest import REFERENCE

    for s in CODECS:
        assert len(s.ref_s_per_mpx) == len(s.lowest_quality_per_config()), s.label
        assert [s.config_index(q) for q in s.lowest_quality_per_config()] == list(range(len(s.ref_s_per_mpx)))
        assert bool(s.paper_rd) == (not s.pretrained), s.label
        assert not s.paper_rd or (REFERENCE / "compressai-results" / s.paper_rd).is_file(), s.paper_rd


def test_nothing_defined_twice():
    """No module binds a top-level function or class name twice, and no dict literal repeats a key: the
    first of each is dead, and a merge leaves such pairs silently (the later one wins)."""
    import ast

    twice = []
    for path in sorted((ROOT / "lcstudy").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        seen = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name in seen:
                    twice.append(f"{path.relative_to(ROOT)}:{node.lineno} def {node.name}")
                seen.add(node.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
                twice += [f"{path.relative_to(ROOT)}:{node.lineno} key {k!r}" for k in sorted(set(keys), key=str)
                          if keys.count(k) > 1]
    assert not twice, "; ".join(twice)


#: request ids of two fixed requests as the code before the enums computed them (commit 05399c6, 4 Dec): a closed set
#: made an enum must not change a run's identity, or every stored run would be measured again
GOLDEN_IDS = {"learned": "851c21384362", "standard": "8ab58288c323"}


def _fixed_requests(tmp_path):
    from lcstudy.runs.params import resolve

    from .conftest import KODAK

    base = {"images": str(KODAK), "limit": 2, "results_dir": str(tmp_path), "profile": "quick"}
    return {"learned": resolve({**base, "codec": "HP", "quality": 2, "weights": "random", "seed": 3}),
            "standard": resolve({**base, "sweep": "short"}, notebook="profile_standard")}


def test_closed_sets_are_enums_and_keep_the_run_ids(tmp_path):
    """Run kind, weights mode and plan role are enums: a wrong value fails where the value is made, a plain
    string read back from run.json becomes the member, and the ids are those computed before the enums."""
    import dataclasses
    import json

    from lcstudy.core.weights import Weights
    from lcstudy.pipeline.plan import PlannedRun, Role
    from lcstudy.runs.layout import RunKind
    from lcstudy.runs.params import RunRequest, request_dict

    reqs = _fixed_requests(tmp_path)
    assert reqs["learned"].kind is RunKind.LEARNED and reqs["standard"].kind is RunKind.STANDARD
    assert reqs["learned"].weights is Weights.RANDOM
    for kind, req in reqs.items():
        stored = json.loads(json.dumps(request_dict(req)))  # what run.json holds: plain strings
        assert stored["kind"] == kind and type(stored["kind"]) is str
        back = RunRequest.from_dict(stored)
        assert back == req and back.kind is RunKind(kind) and back.request_id == req.request_id
        assert req.request_id == GOLDEN_IDS[kind]
    with pytest.raises(TypeError, match="kind"):  # the kind is the request's type, not a field to set
        dataclasses.replace(reqs["learned"], kind="standard")
    with pytest.raises(ValueError, match="pretrianed"):
        dataclasses.replace(reqs["learned"], weights="pretrianed")
    assert PlannedRun("profile_codec", (), "main").role is Role.MAIN
    with pytest.raises(ValueError, match="mian"):
        PlannedRun("profile_codec", (), "mian")


#: a run of several sizes resolved before sizes were values (computed at e22ce91, when they were text)
GOLDEN_SIZED_ID = "7a5ff4177d60"


def test_sizes_are_values_and_keep_the_run_ids(tmp_path):
    """A request's sizes are :class:`ItemSize` values from SIZES on (nothing downstream parses their text
    again); run.json holds their text, reads back to the same values, and the id is the one made when they were
    text."""
    import json

    from lcstudy.core.images import ItemSize
    from lcstudy.runs.params import LearnedRequest, RunRequest, request_dict, resolve

    from .conftest import KODAK

    req = resolve({"images": str(KODAK), "limit": 2, "results_dir": str(tmp_path), "profile": "quick",
                   "codec": "HP", "quality": 2, "sizes": "crop64,96x64"})
    assert req.sizes == (ItemSize(crop=64), ItemSize(resize=(96, 64)))
    stored = json.loads(json.dumps(request_dict(req)))
    assert stored["sizes"] == ["crop64", "96x64"]
    back = LearnedRequest.from_dict(stored)
    assert back == req and all(isinstance(s, ItemSize) for s in back.sizes)
    assert RunRequest.from_json(json.dumps(stored)).request_id == req.request_id == GOLDEN_SIZED_ID


def test_the_chapters_name_stage_kinds_by_the_enum():
    """The chapters filter stage rows by ``StageKind`` members, not by string literals: a renamed kind would
    otherwise leave a chapter silently empty (seen failing on the chapters before they used the enum)."""
    import re

    pattern = re.compile(r'\b(stage_)?kind\b[^\n]*"(partition|sub|aggregate)"')
    found = [f"{p.name}: {line.strip()}" for p in sorted((ROOT / "lcstudy" / "chapters").glob("*.py"))
             for line in p.read_text().splitlines() if pattern.search(line)]
    assert found == [], found


def test_run_json_has_one_writer():
    """``run.json`` is written by the run protocol alone (through ``layout.write_meta``); the runner, which
    measures the notebook's wall time, hands it to ``protocol.record_notebook_seconds`` (it wrote the file
    itself before)."""
    import re

    writers = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "lcstudy").rglob("*.py")
                     if re.search(r"\bwrite_meta\(|RUN_META\b[^\n]*write", p.read_text())
                     and p.name != "layout.py")
    assert writers == ["lcstudy/runs/protocol.py"], writers


def test_family_and_stage_kind_are_enums():
    """A codec's family and a stage row's kind are closed sets: a spec with a family that does not exist fails
    where it is built (not later, as a stage table without ``AEy``), the built-in codecs and the detector give
    members, and each stage key has the kind the tables sum by."""
    import dataclasses

    from lcstudy.core.instrument import Family, StageKind, stage_kind
    from lcstudy.core.codec_table import CODECS
    from lcstudy.errors import InputError

    assert all(type(s.family) is Family for s in CODECS)
    hp = next(s for s in CODECS if s.label == "HP")
    assert dataclasses.replace(hp, family="auto").family is Family.AUTO
    with pytest.raises(InputError, match="hyperprio'"):
        dataclasses.replace(hp, family="hyperprio")
    kinds = {s: stage_kind(s) for s in ("total", "network", "g_a", "misc", "AEy/rans", "AEy/other")}
    assert kinds == {"total": (StageKind.AGGREGATE, True), "network": (StageKind.AGGREGATE, False),
                     "g_a": (StageKind.PARTITION, True), "misc": (StageKind.PARTITION, False),
                     "AEy/rans": (StageKind.SUB, True), "AEy/other": (StageKind.SUB, False)}
    assert all(type(k) is StageKind for k, _ in kinds.values())


def test_done_is_decided_once_and_counts_the_phases(tmp_path, monkeypatch):
    """"Is this run done?" has one answer (:func:`layout.find_complete`), which the plan and the runner both
    ask: a complete run that lacks a phase the request now wants (its MAC count, say) is not done, on this
    platform or any other."""
    from lcstudy.pipeline import plan, runner
    from lcstudy.runs import layout

    path = layout.run_dir(tmp_path, "host", "cpu", "HP-q1", "abc123")
    path.mkdir(parents=True)
    layout.write_meta(path, {"schema_version": layout.SCHEMA_VERSION, "request_id": "r1", "run_id": "abc123",
                             "complete": True, "phases_done": ["timing"], "request": {"device": "cpu"}})
    (path / layout.NOTEBOOK).write_text("{}")
    assert layout.find_complete(tmp_path, "r1", "cpu", "abc123", ("timing",)).path == path
    assert layout.find_complete(tmp_path, "r1", "cpu", None, ("timing",)).path == path
    assert layout.find_complete(tmp_path, "r1", "cpu", "abc123", ("timing", "macs")) is None
    assert layout.find_complete(tmp_path, "r1", "cpu", None, ("timing", "macs")) is None
    # neither caller decides by itself: both pass the request's phases to the one function
    import inspect

    for mod in (plan, runner):
        src = inspect.getsource(mod)
        assert "phases_done" not in src, f"{mod.__name__} decides 'done' by itself"
        assert "find_complete(" in src and "req.phases)" in src, mod.__name__


# --- one resolver: the kernel is handed the pipeline's request ------------------------------------------------

def test_the_kernel_is_handed_the_request_resolved_once(tmp_path, monkeypatch):
    """``make run``: the parameters are resolved once, in the runner; the notebook gets the request itself (no raw
    strings patched for it), which reads back as the same request with the same id."""
    from lcstudy.pipeline import notebooks
    from lcstudy.pipeline.runner import run_notebook
    from lcstudy.runs import params as P

    from .conftest import KODAK

    calls, handed = [], []
    real = P.resolve
    monkeypatch.setattr(P, "resolve", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(notebooks, "execute", lambda name, out, nb_params, **k: handed.append(nb_params))
    given = {"codec": "HP", "quality": "2", "images": str(KODAK), "limit": "1", "weights": "random", "crop": "64",
             "results_dir": str(tmp_path)}
    assert run_notebook("profile_codec", given) == 1  # the fake kernel wrote no results: said, exit 1
    assert len(calls) == 1 and len(handed) == 1
    assert list(handed[0]) == [REQUEST_PARAM]
    back = P.request_of(handed[0], "profile_codec")
    assert back == real(given) and back.request_id == real(given).request_id
    assert len(calls) == 1  # reading the request back resolved nothing


def test_a_handed_request_is_checked_not_resolved(tmp_path, monkeypatch):
    import json

    from lcstudy.errors import InputError
    from lcstudy.runs import params as P

    reqs = _fixed_requests(tmp_path)
    monkeypatch.setattr(P, "resolve", lambda *a, **k: pytest.fail("a handed request was resolved again"))
    for kind, req in reqs.items():
        nb = RUN_NOTEBOOKS[kind][0]
        assert P.request_of({REQUEST_PARAM: req.to_json()}, nb) == req
    text = reqs["learned"].to_json()
    edited = json.loads(text)
    edited["quality"] = 3  # its id left as it was
    with pytest.raises(InputError, match="edited by hand"):
        P.request_of({REQUEST_PARAM: json.dumps(edited)}, "profile_codec")
    with pytest.raises(InputError, match="unknown fields colour"):
        P.request_of({REQUEST_PARAM: json.dumps({**json.loads(text), "colour": 1})}, "profile_codec")
    with pytest.raises(InputError, match="not a run request"):
        P.request_of({REQUEST_PARAM: "{not json"}, "profile_codec")
    wrong_quality = {**json.loads(text), "quality": 99}
    with pytest.raises(InputError, match="not a run request"):  # one line, not the KeyError of its id
        P.request_of({REQUEST_PARAM: json.dumps(wrong_quality)}, "profile_codec")
    with pytest.raises(InputError, match="a standard run's request"):
        P.request_of({REQUEST_PARAM: reqs["standard"].to_json()}, "profile_codec")


def test_a_file_replaced_after_resolving_is_refused(tmp_path):
    """The runner hashes the images and a checkpoint before it may wait long for the lock; the kernel, handed that
    request, refuses a file replaced meanwhile rather than measure it under the old id (both run kinds)."""
    import shutil

    import torch

    from lcstudy.core.codec_sources import get_spec
    from lcstudy.core.weights import build_model
    from lcstudy.errors import InputError
    from lcstudy.runs import learned, standard_subject
    from lcstudy.runs.params import resolve

    from .conftest import KODAK

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copy(KODAK / "kodim01.png", imgs / "kodim01.png")
    ck = tmp_path / "fp.pth"
    torch.save(build_model(get_spec("FP"), 1, seed=5).state_dict(), ck)
    shutil.copy(ck, tmp_path / "kept.pth")
    base = {"images": str(imgs), "crop": 64, "repeats": 1, "results_dir": str(tmp_path / "r")}
    lreq = resolve({**base, "codec": "FP", "weights": str(ck), "kernels": False, "macs": False})
    sreq = resolve({**base, "codecs": "JPEG", "sweep": "short"}, notebook="profile_standard")

    torch.save(build_model(get_spec("FP"), 1, seed=6).state_dict(), ck)  # another checkpoint, same name
    with pytest.raises(InputError, match="fp.pth changed since the run was resolved"):
        learned.run(request=lreq.to_json(), progress=False)
    shutil.copy(tmp_path / "kept.pth", ck)  # the one resolved, back
    shutil.copy(KODAK / "kodim02.png", imgs / "kodim01.png")  # another image, same name
    for run, req in ((learned.run, lreq), (standard_subject.run, sreq)):
        with pytest.raises(InputError, match="kodim01.png changed since the run was resolved"):
            run(request=req.to_json(), progress=False)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("run.json"))  # nothing written
