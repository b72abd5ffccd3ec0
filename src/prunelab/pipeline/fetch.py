"""Stage fetch_data: load the dataset named by data.name, split it, save it as tensors."""

from __future__ import annotations

from prunelab import atomic, config, paths
from prunelab.data import DATASETS, data_config, origin, save_prepared


def fetch_data() -> None:
    params = config.load_params()
    cfg, seed = data_config(params), config.seed(params)
    from prunelab import track  # mlflow's import is slow: a bad param is reported before it

    tags = track.run_tags("fetch_data", dataset=cfg.name)
    data_params = {k: v for k, v in cfg.as_dict().items() if k != "augment"}  # augment is read by training
    print(f"fetch_data: {cfg.name} from {origin(cfg)}")
    with track.start_run("fetch_data", params={"data": data_params, "seed": seed}, tags=tags):
        spec = DATASETS.get(cfg.name)(cfg, seed)
        save_prepared(spec, paths.PREPARED_DATA)
        track.log_dataset(paths.PREPARED_DATA, spec.name, "output")
        summary = spec.summary()
        atomic.write_json(paths.DATA_SUMMARY, summary)
        track.log_metrics({f"{k}_samples": v for k, v in summary.items() if k in ("train", "val", "test")})
        track.log_artifacts([paths.DATA_SUMMARY])
        print(f"fetch_data: {summary}")
