"""Method objects: what each registered method knows about itself, and where that knowledge lives."""

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from prunelab.config import MethodOptions, PruneConfig
from prunelab.errors import ConfigError
from prunelab.pruning import MASKS, METHODS, STRUCTURAL, MaskMethod
from prunelab.pruning.options import configure, point_config, sweep_config
from prunelab.pruning.schedule import gradual

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_declares_a_kind_and_options_of_its_own(name):
    method = METHODS.get(name)
    assert method.name == name
    assert method.kind(configure(method=name)) in (MASKS, STRUCTURAL)
    own = set(method.option_keys())
    assert issubclass(method.options, MethodOptions) and set(method.exclusive) <= own
    assert not own & set(PruneConfig.__dataclass_fields__)  # an option never shadows a shared key
    assert isinstance(configure(method=name).options, method.options)
    # a mask method is one whose default config keeps the architecture: it can follow a schedule
    assert isinstance(method, MaskMethod) == (method.kind(configure(method=name)) == MASKS)


@pytest.mark.parametrize("name", METHODS.names())
def test_schedule_is_allowed_exactly_for_mask_results(name):
    structural = METHODS.get(name).kind(configure(method=name)) == STRUCTURAL
    if structural:
        with pytest.raises(ConfigError, match=r"prune\.schedule = 'polynomial'.*'oneshot' with method"):
            configure(method=name, schedule="polynomial", sparsity=0.5)
    else:
        assert gradual(configure(method=name, schedule="polynomial", sparsity=0.5)) is not None


@pytest.mark.parametrize("name", METHODS.names())
def test_options_only_another_method_reads_are_refused_naming_their_owners(name):
    method = METHODS.get(name)
    if not method.by_threshold:
        owners = ", ".join(sorted(m.name for m in METHODS.values() if m.by_threshold))
        with pytest.raises(ConfigError, match=rf"prune\.threshold = 0.5.*null unless prune\.method is one of {owners}"):
            configure(method=name, threshold=0.5, sparsity=None)
    own = set(method.option_keys())
    for other in METHODS.values():
        for option in set(other.exclusive) - own:
            default = next(f.default for f in dataclasses.fields(other.options) if f.name == option)
            with pytest.raises(ConfigError, match=rf"prune\.{option} = .* unless prune\.method is one of"):
                configure(method=name, **{option: not default if isinstance(default, bool) else "other"})


@pytest.mark.parametrize(
    "study",
    [
        configure(),
        configure(method="unit", physical=True),
        configure(method="filter", threshold=0.5, sparsity=None, norm="l1"),
        configure(schedule="polynomial", sparsity=0.5, initial_sparsity=0.3),
    ],
)
@pytest.mark.parametrize("name", METHODS.names())
def test_a_sweep_point_is_the_study_config_for_one_method_at_one_k(study, name):
    own = set(METHODS.get(name).option_keys())
    given = {k: v for k, v in study.given.items() if k in own}
    gradual_structural = (
        study.schedule != "oneshot" and METHODS.get(name).kind(configure(method=name, **given)) == STRUCTURAL
    )
    if gradual_structural:
        with pytest.raises(ConfigError, match=rf"prune\.schedule.*sweep\.methods includes '{name}'"):
            point_config(study, name, 0.25)
        return
    cfg = point_config(study, name, 0.25)
    assert (cfg.method, cfg.sparsity, cfg.threshold) == (name, 0.25, None)
    assert cfg.initial_sparsity == min(study.initial_sparsity, 0.25)
    # the point's options are its method's own, as the study's section gives them; no other method's
    assert cfg.options == METHODS.get(name).options(**given)


def test_unit_is_structural_only_with_physical():
    unit = METHODS.get("unit")
    assert unit.kind(configure(method="unit")) == MASKS
    assert unit.kind(configure(method="unit", physical=True)) == STRUCTURAL


def test_nothing_outside_pruning_compares_a_method_name():
    """A method's behaviour is asked of its object; no `method == "unit"` elsewhere."""
    names = set(METHODS.names())
    offenders = []
    for path in [*(ROOT / "src" / "prunelab").rglob("*.py"), *(ROOT / "stages").glob("*.py")]:
        if (ROOT / "src" / "prunelab" / "pruning") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    consts = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
                    if any(isinstance(c, ast.Constant) and c.value in names for c in consts):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_report_plotting_and_sweep_config_import_no_torch():
    """The plot stage needs only these: it must not pay torch's start-up."""
    code = (
        "import sys; import prunelab.report.sweep, prunelab.report.figures, prunelab.pruning as p; "
        "p.sweep_config({}); p.configure(method='unit', physical=True); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sweep_config_lists_known_methods_when_one_is_unknown():
    with pytest.raises(ConfigError, match=r"sweep\.methods\[1\] = 'magnitude'.*'filter', 'random', 'unit', 'weight'"):
        sweep_config({"sweep": {"methods": ["weight", "magnitude"]}})
