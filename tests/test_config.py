import ast
from pathlib import Path

import pytest

from prunelab import config
from prunelab.config import ConfigError, DataConfig, FinetuneConfig, ModelConfig, PruneConfig, SweepConfig, TrainConfig
from prunelab.data import data_config
from prunelab.models import model_config
from prunelab.pruning import prune_config, sweep_config
from prunelab.pruning.options import configure

SECTIONS = [DataConfig, ModelConfig, TrainConfig, PruneConfig, FinetuneConfig, SweepConfig]
# a section whose names a registry holds is loaded by its plug-in package, which asks the registry
LOADERS = {"data": data_config, "model": model_config, "prune": prune_config, "sweep": sweep_config}


def load(params: dict, cls=None):
    name = next(iter(params)) if cls is None else cls.SECTION
    return LOADERS[name](params) if name in LOADERS else config.section(params, cls)


def test_config_imports_nothing_above_it():
    """Typed config is the bottom of the import graph: no plug-in, nothing that imports one."""
    imported = set()
    for path in Path(config.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    outside = {m for m in imported if m.startswith("prunelab") and not m.startswith("prunelab.config")}
    assert outside <= {"prunelab", "prunelab.errors", "prunelab.validate"}  # prunelab: only `paths` from it


def test_repo_params_yaml_is_valid_and_matches_defaults():
    params = config.load_params()
    for cls in SECTIONS:
        default = prune_config({}) if cls is PruneConfig else cls()  # the default method's own options
        assert load(params, cls) == default, f"params.yaml {cls.SECTION} differs from the defaults"
    assert config.seed(params) == 0


def test_defaults_reproduce_r1():
    assert ModelConfig().hidden == (1000, 1000, 500, 200) and ModelConfig().bias is False
    assert TrainConfig().epochs == 10
    assert SweepConfig().methods == ("weight", "unit")
    assert len(SweepConfig().sparsities) == 13 and SweepConfig().finetune_epochs > 0


@pytest.mark.parametrize(
    "section, key, value, allowed",
    [
        ("data", "name", "imagenet", "one of"),
        ("model", "name", "transformer", "one of"),
        ("prune", "method", "lottery", "one of"),
        ("prune", "schedule", "cyclic", "one of"),
        ("prune", "rewind", "epoch:-1", "'init', 'epoch:N'"),
        ("prune", "rewind", "epoch:two", "'init', 'epoch:N'"),
        ("prune", "rewind", 3, "'init', 'epoch:N'"),
        ("sweep", "seeds", [0, 0], "without duplicates"),
        ("sweep", "seeds", [0, -1], "integer >= 0"),
        ("sweep", "seeds", [1.5], "integer >= 0"),
        ("sweep", "seeds", [], "non-empty list"),
        ("prune", "sparsity", 1.0, "0 <= k < 1"),
        ("prune", "sparsity", -0.1, "0 <= k < 1"),
        ("prune", "sparsity", "0.5", "0 <= k < 1"),
        ("train", "epochs", 0, "integer >= 1"),
        ("train", "epochs", 2.5, "integer >= 1"),
        ("train", "batch_size", -8, "integer >= 1"),
        ("finetune", "batch_size", 0, "integer >= 1"),
        ("finetune", "patience", 0, "integer >= 1"),
        ("train", "lr", 0, "number > 0"),
        ("train", "device", "tpu", "one of"),
        ("sweep", "sparsities", [0.5, 0.5], "without duplicates"),
        ("sweep", "sparsities", [0.5, 1.2], "0 <= k < 1"),  # names the item: sweep.sparsities[1] = 1.2
        ("sweep", "sparsities", [], "non-empty list"),
        ("sweep", "methods", ["weight", "weight"], "without duplicates"),
        ("sweep", "methods", ["weight", "nope"], "one of"),
        ("sweep", "finetune_epochs", -1, "integer >= 0"),
        ("data", "val_fraction", 0.0, "strictly between 0 and 1"),
        ("prune", "include_classifier", "yes", "true or false"),
        ("data", "root", "", "a folder path, or null"),
        ("data", "root", 5, "a folder path, or null"),
        ("data", "image_size", 4, "integer >= 8"),
        ("data", "image_size", 4096, "from 8 to 1024"),
        ("data", "augment", "yes", "true or false"),
    ],
)
def test_invalid_values_name_key_value_and_what_is_allowed(section, key, value, allowed):
    cls = next(c for c in SECTIONS if c.SECTION == section)
    with pytest.raises(ConfigError) as err:
        load({section: {key: value}}, cls)
    message = str(err.value)
    shown = [repr(value)] + ([repr(v) for v in value] if isinstance(value, list) else [])
    assert f"{section}.{key}" in message and allowed in message
    assert any(s in message for s in shown), message


def test_unknown_key_is_an_error_listing_known_keys():
    with pytest.raises(ConfigError, match=r"prune\.sparsty.*known key of prune: method, sparsity"):
        prune_config({"prune": {"sparsty": 0.5}})


def test_rewind_is_for_the_iterative_schedule_which_is_for_masks():
    assert prune_config({"prune": {"schedule": "iterative", "rewind": "epoch:2"}}).rewind == "epoch:2"
    with pytest.raises(ConfigError, match=r"prune\.rewind = 'none'.*unless prune.schedule is 'iterative'"):
        prune_config({"prune": {"rewind": "none"}})
    with pytest.raises(ConfigError, match=r"prune\.schedule = 'iterative'.*removes structures once, physically"):
        prune_config({"prune": {"method": "filter", "sparsity": 0.5, "schedule": "iterative"}})
    # the replicate's seed is not a params key: it comes from the stage's seed
    with pytest.raises(ConfigError, match=r"prune\.seed.*a known key"):
        prune_config({"prune": {"seed": 1}})
    assert "seed" not in configure().as_dict()


def test_int_is_accepted_where_a_float_is_expected():
    assert prune_config({"prune": {"sparsity": 0}}).sparsity == 0.0


def test_fractions_must_leave_a_training_split():
    with pytest.raises(ConfigError, match="val_fraction"):
        DataConfig(val_fraction=0.5, test_fraction=0.5)


def test_imagefolder_needs_a_root_and_other_datasets_do_not():
    with pytest.raises(ConfigError, match=r"data\.root.*None.*class sub-folders.*imagefolder"):
        data_config({"data": {"name": "imagefolder"}})
    assert data_config({"data": {"name": "cifar10"}}).root is None
    assert data_config({"data": {"name": "imagefolder", "root": "photos"}}).root == "photos"


def test_threshold_and_sparsity_exclude_each_other_and_threshold_is_for_filter_only():
    with pytest.raises(ConfigError, match=r"prune\.threshold = 0\.5.*null while prune\.sparsity is set"):
        prune_config({"prune": {"method": "filter", "threshold": 0.5}})
    with pytest.raises(ConfigError, match=r"prune\.threshold.*unless prune\.method is one of filter"):
        prune_config({"prune": {"method": "weight", "threshold": 0.5, "sparsity": None}})
    with pytest.raises(ConfigError, match=r"prune\.sparsity = None"):
        prune_config({"prune": {"method": "filter", "sparsity": None}})
    with pytest.raises(ConfigError, match=r"prune\.norm = 'l3'"):
        prune_config({"prune": {"method": "filter", "norm": "l3"}})
    cfg = prune_config({"prune": {"method": "filter", "threshold": 0.5, "sparsity": None}})
    assert cfg.threshold == 0.5 and cfg.label == "threshold 0.5"


def test_bad_seed_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="seed"):
        config.seed({"seed": -1})
    # the single-model path prunes the baseline of `seed`: one must be trained for it
    with pytest.raises(ConfigError, match=r"seed = 3 .*one of sweep.seeds \[0, 1\]"):
        config.seed({"seed": 3, "sweep": {"seeds": [0, 1]}})
    assert config.seed({"seed": 1, "sweep": {"seeds": [0, 1]}}) == 1
    bad = tmp_path / "params.yaml"
    bad.write_text("prune: [unclosed\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        config.load_params(bad)
