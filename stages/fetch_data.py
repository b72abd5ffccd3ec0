"""Stage fetch_data: load the dataset named by data.name, split it, save it as tensors."""

import _bootstrap  # noqa: F401  (puts this checkout's src/ first on sys.path)
from prunelab import stage


def main() -> None:
    from prunelab import atomic, config, paths
    from prunelab.data import DATASETS, origin, save_prepared

    params = config.load_params()
    cfg, seed = config.section(params, config.DataConfig), config.seed(params)
    from prunelab import tracking

    tags = tracking.run_tags("fetch_data", dataset=cfg.name)
    data_params = {k: v for k, v in cfg.as_dict().items() if k != "augment"}  # augment is read by training
    print(f"fetch_data: {cfg.name} from {origin(cfg)}")
    with tracking.start_run("fetch_data", params={"data": data_params, "seed": seed}, tags=tags):
        spec = DATASETS.get(cfg.name)(cfg, seed)
        save_prepared(spec, paths.PREPARED_DATA)
        tracking.log_dataset(paths.PREPARED_DATA, spec.name, "output")
        summary = spec.summary()
        atomic.write_json(paths.DATA_SUMMARY, summary)
        tracking.log_metrics({f"{k}_samples": v for k, v in summary.items() if k in ("train", "val", "test")})
        tracking.log_artifacts([paths.DATA_SUMMARY])
        print(f"fetch_data: {summary}")


if __name__ == "__main__":
    stage.run(main)
