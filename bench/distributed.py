"""Multi-process training (train.nproc) on this machine: throughput, equivalence, shared memory.

Each run is ``python -m torch.distributed.run --standalone --nproc-per-node WS`` of this script's
worker, which does what a stage's rank does: ``ddp.init``, ``load_prepared`` (memory-mapped), the
model, ``prunelab.train.fit.fit`` (DDP over gloo when WS > 1, each global batch of 128 split over
the ranks), ``ddp.shutdown``. WS 1 runs under torchrun too, as one plain process (fit's
one-process path). OMP_NUM_THREADS as prunelab's launcher sets it: all cores at WS 1, cores // WS.

1. Throughput: R1's MLP (784→1000→1000→500→200→10, no bias) on mnist-5k and cifar_cnn (no bias)
   on ``--cnn-images`` random uint8 3×32×32 images (``--cifar-root``: CIFAR-10's first that
   many), ``--epochs`` epochs, validation split emptied so fit's ``epoch_time`` is training alone
   (shuffle, steps, all-reduces). Images/s over epochs 2..N (epoch 1 is warm-up). ``--repeats``
   rounds, round-robin over cases and WS, WS 1 and 2 alternating first; medians, their ratio
   WS2/WS1 and each round's ratio.
2. Equivalence: neither model has BatchNorm or dropout, so round 1's final weights at WS 2 should
   equal WS 1's within ``torch.testing.assert_close``'s float32 tolerance (same initial weights,
   shuffling and global batches; only summation order differs, ~1e-7 relative). Adam's
   normalisation magnifies that in near-zero gradients: random labels (the synthetic CNN set)
   can miss while SGD would stay ~1e-9. Also: elements beyond it, reruns at one WS bit-identical.
3. Memory: a prepared file of >= ``--mem-gib`` GiB of uint8 3×224×224 training images, random
   pixels written with ``save_prepared`` (``--from-images``: random JPEGs in an image folder
   decoded by prunelab's imagefolder loader, which keeps 70 % for training; slower). One epoch
   of mlp hidden [16] at WS 1 and 2; fit keeps a set this large as uint8, so ranks read the
   mapping. The model is built as the stages build it (``build_for``: the normalisation counts
   the uint8 pixels in chunks, no float copy of the split). Per rank: peak RSS (VmHWM; ru_maxrss also
   counts the launcher's pages before exec) and /proc/self/smaps after training, all mappings
   and the dataset file's alone. Goal: peak RSS per rank at WS 2 <= 1.2× WS 1; the Pss summed
   over ranks shows one copy of the file, not WS copies.

Load: os.getloadavg() before and after, and the cores other processes used (``machine_load.py``).

Usage: python bench/distributed.py [--quick] [--epochs 2] [--repeats 3] [--cnn-images 4000] [--cifar-root DIR]
       [--mem-gib 1.0] [--from-images] [--json PATH]      # about 3.5 min on 2 cores; --quick 1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
OUT = ROOT / "bench" / "out" / "distributed.json"
BATCH = 128
MEM_SHAPE = (3, 224, 224)
CASES = {"mlp": [1000, 1000, 500, 200], "cifar_cnn": None}  # model: mlp widths (R1's) or None


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def smaps(path: str) -> tuple[dict[str, int], dict[str, int]]:
    """KiB per field of /proc/self/smaps: summed over all mappings, and over those of the file ``path``."""
    total: dict[str, int] = {}
    file: dict[str, int] = {}
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            head = line.split()
            if not head[0].endswith(":"):  # a mapping's header line: address range ... pathname
                inside = head[-1] == path
            elif len(head) == 3 and head[2] == "kB":
                for sums in (total, file) if inside else (total,):
                    sums[head[0][:-1]] = sums.get(head[0][:-1], 0) + int(head[1])
    return total, file


def worker(job: dict) -> None:
    """One rank (torchrun's environment): train as a stage does, write this rank's record."""
    import torch

    from prunelab.config import ModelConfig, TrainConfig
    from prunelab.data.spec import Split, load_prepared
    from prunelab.models import build_for
    from prunelab.parallel import current, ddp
    from prunelab.seeding import seed_everything
    from prunelab.train.fit import fit

    world = current()
    ddp.init("cpu")
    seed_everything(0)
    data = load_prepared(job["data"])
    if not job["validate"]:
        data = dataclasses.replace(data, val=Split(data.val.images[:0], data.val.labels[:0]))
    cfg = ModelConfig(name=job["model"], bias=False, **({"hidden": tuple(job["hidden"])} if job["hidden"] else {}))
    model = build_for(cfg, data)
    train = TrainConfig(epochs=job["epochs"], batch_size=BATCH)
    result = fit(model, data, train, seed=0, device=torch.device("cpu"), desc=job["model"], leave=False)
    out = Path(job["out"])
    with open("/proc/self/status", encoding="ascii") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    total, file = smaps(os.path.realpath(job["data"]))
    record = dict(rank=world.rank, threads=torch.get_num_threads(), train_images=len(data.train), peak_rss_kib=hwm)
    record |= dict(train_bytes=data.train.images.numel(), history=result.history, smaps_kib=total, file_kib=file)
    record["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if world.rank == 0:
        torch.save(model.state_dict(), out / "weights.pt")
    (out / f"rank{world.rank}.json").write_text(json.dumps(record))
    ddp.shutdown()


def launch(ws: int, job: dict, folder: Path) -> list[dict]:
    out = Path(tempfile.mkdtemp(prefix=f"ws{ws}-", dir=folder))
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores() // ws))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ws}"]
    run = subprocess.run(
        [*cmd, __file__, "--worker", json.dumps({**job, "out": str(out)})], env=env, capture_output=True, text=True
    )
    if run.returncode:
        sys.exit(f"{job['model']} at world size {ws} failed (exit {run.returncode}):\n{run.stderr[-4000:]}")
    return [json.loads((out / f"rank{r}.json").read_text()) | {"weights": str(out / "weights.pt")} for r in range(ws)]


def images_per_s(rank0: dict) -> float:
    timed = rank0["history"][1:] or rank0["history"]
    return rank0["train_images"] * len(timed) / sum(r["epoch_time"] for r in timed)


def prepare(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """The prepared files: mnist-5k, the CNN's images, the memory set."""
    import torch

    from prunelab.config import DataConfig
    from prunelab.data import DATASETS, DataSpec, save_prepared
    from prunelab.data.spec import Split

    gen = torch.Generator().manual_seed(0)

    def random_split(n: int, shape: tuple[int, ...]) -> Split:
        return Split(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen), torch.arange(n) % 10)

    def spec(name: str, train: Split, small: int) -> DataSpec:
        shape = tuple(train.images.shape[1:])
        val, test = random_split(small, shape), random_split(small, shape)
        return DataSpec(name, tuple(str(c) for c in range(10)), train, val, test)

    paths = {"mlp": save_prepared(DATASETS.get("mnist-5k")(DataConfig(), 0), folder / "mnist-5k.pt")}
    if args.cifar_root:
        cifar = DATASETS.get("cifar10")(DataConfig(name="cifar10", root=args.cifar_root), 0)
        train = Split(cifar.train.images[: args.cnn_images].clone(), cifar.train.labels[: args.cnn_images].clone())
        cnn = dataclasses.replace(cifar, train=train)
    else:
        cnn = spec("synthetic-32", random_split(args.cnn_images, (3, 32, 32)), 64)
    paths["cifar_cnn"] = save_prepared(cnn, folder / "cnn.pt")
    n = math.ceil(args.mem_gib * 2**30 / math.prod(MEM_SHAPE))
    start = time.perf_counter()
    if args.from_images:
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        for i in range(n):
            (folder / "images" / str(i % 10)).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (MEM_SHAPE[1], MEM_SHAPE[2], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "images" / str(i % 10) / f"{i}.jpg", quality=90)
        cfg = DataConfig(name="imagefolder", root=str(folder / "images"), image_size=MEM_SHAPE[1])
        memory = DATASETS.get("imagefolder")(cfg, 0)
    else:
        memory = spec("synthetic-224", random_split(n, MEM_SHAPE), 64)
    paths["memory"] = save_prepared(memory, folder / "memory.pt")
    gib, took, train = n * math.prod(MEM_SHAPE) / 2**30, time.perf_counter() - start, len(memory.train)
    print(f"memory set: {n:,} images ({gib:.2f} GiB decoded), {train:,} to train; written in {took:.0f} s")
    del memory
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 round, 1000 CNN images, 0.15 GiB")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cnn-images", type=int, default=4000)
    parser.add_argument("--cifar-root", help="CIFAR-10 folder or tarball: its first --cnn-images training images")
    parser.add_argument("--mem-gib", type=float, default=1.0, help="decoded size of the memory set")
    parser.add_argument("--from-images", action="store_true", help="memory set decoded from a JPEG image folder")
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.quick:
        args.repeats, args.cnn_images, args.mem_gib = 1, 1000, 0.15

    sys.stdout.reconfigure(line_buffering=True)  # progress lines show as they come, piped too
    import torch
    from machine_load import MachineLoad  # bench/ is on sys.path: it is the script's folder

    load_before = os.getloadavg()
    result: dict = {"cores": cores(), "torch": torch.__version__, "loadavg_before": load_before}
    loads = " ".join(f"{x:.2f}" for x in load_before)
    print(f"{cores()} cores; OMP_NUM_THREADS {cores()} at WS 1, {cores() // 2 or 1} per rank at WS 2; load {loads}")
    with tempfile.TemporaryDirectory(prefix="prunelab-distributed-") as tmp:
        folder = Path(tmp)
        data = prepare(args, folder)
        runs: dict[str, dict[int, list[list[dict]]]] = {c: {1: [], 2: []} for c in CASES}
        with MachineLoad() as load:
            for r in range(args.repeats):
                for case, hidden in CASES.items():
                    for ws in (1, 2) if r % 2 == 0 else (2, 1):
                        job = {"data": str(data[case]), "model": case, "hidden": hidden, "epochs": args.epochs}
                        runs[case][ws].append(launch(ws, job | {"validate": False, "memory": False}, folder))
                        print(f"  round {r + 1} {case} ws{ws}: {images_per_s(runs[case][ws][-1][0]):,.0f} img/s")
            job = {"data": str(data["memory"]), "model": "mlp", "hidden": [16], "epochs": 1, "validate": True}
            memory = {ws: launch(ws, job | {"memory": True}, folder) for ws in (1, 2)}
        result |= {"other_cores": load.other_cores, "steal_cores": load.steal_cores}
        throughput(runs, result)
        equivalence(runs, result, torch)
    load_after = os.getloadavg()
    memory_report(memory, result)
    result |= {"loadavg_after": load_after, "args": {**vars(args), "json": str(args.json)}}
    after = " ".join(f"{x:.2f}" for x in load_after)
    print(f"\nload average before {loads}, after {after}; while running: {load.describe()}")
    result["memory"]["from_images"] = args.from_images
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    print(f"written {args.json}")
    return 0


def throughput(runs: dict, result: dict) -> None:
    print(f"\n{'case':<10} {'ws':>3} {'threads/rank':>12} {'img/s median':>13}  per round")
    for case in CASES:
        speeds = {ws: [images_per_s(ranks[0]) for ranks in runs[case][ws]] for ws in (1, 2)}
        ratio = statistics.median(speeds[2]) / statistics.median(speeds[1])
        for ws in (1, 2):
            each, threads = ", ".join(f"{s:,.0f}" for s in speeds[ws]), runs[case][ws][0][0]["threads"]
            print(f"{case:<10} {ws:>3} {threads:>12} {statistics.median(speeds[ws]):>13,.0f}  {each}")
        per_round = [b / a for a, b in zip(speeds[1], speeds[2])]
        print(f"{case:<10} ratio ws2/ws1 {ratio:.2f} (per round {', '.join(f'{x:.2f}' for x in per_round)})")
        result[case] = {"images_per_s": speeds, "ratio": ratio, "ratio_per_round": per_round}


def equivalence(runs: dict, result: dict, torch) -> None:
    """Round 1's final weights at WS 2 against WS 1 (assert_close's float32 rtol 1.3e-6, atol 1e-5)."""
    print(f"\n{'case':<10} {'max |w2 - w1|':>14} {'assert_close':>13} {'beyond tol.':>16} {'reruns identical':>17}")
    for case in CASES:
        w = {ws: [torch.load(ranks[0]["weights"]) for ranks in runs[case][ws]] for ws in (1, 2)}
        a, b = w[2][0], w[1][0]
        diff = max(float((a[k] - b[k]).abs().max()) for k in b)
        bad = sum(int(((a[k] - b[k]).abs() > 1e-5 + 1.3e-6 * b[k].abs()).sum()) for k in b)
        total = sum(t.numel() for t in b.values())
        try:
            torch.testing.assert_close(a, b)
        except AssertionError:
            close = False
        else:
            close = True
        same = [all(all(torch.equal(s[k], w[ws][0][k]) for k in s) for s in w[ws][1:]) for ws in (1, 2)]
        reruns = f"ws1 {same[0]}, ws2 {same[1]}"
        print(f"{case:<10} {diff:>14.3g} {'pass' if close else 'FAIL':>13} {f'{bad:,}/{total:,}':>16} {reruns:>17}")
        result[case] |= dict(max_abs_weight_diff=diff, assert_close=close, beyond_tolerance=bad, weights=total)
        result[case]["reruns_identical"] = {"1": same[0], "2": same[1]}


def memory_report(memory: dict, result: dict) -> None:
    first = memory[1][0]
    size = f"{first['train_images']:,} training images, {first['train_bytes'] / 2**30:.2f} GiB uint8"
    print(f"\nmemory: {size}, one epoch of mlp [16]; MiB; file: the dataset file's mappings alone")
    keys = ["Rss", "Pss", "Shared_Clean", "Private_Clean", "Private_Dirty"]
    heads = ["peak RSS", "ru_maxrss", *keys, "file Rss", "file Pss"]
    widths = [9, 9, *[13] * len(keys), 9, 9]
    print(f"{'ws':>3} {'rank':>4} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths)))
    for ws, ranks in memory.items():
        for r in ranks:
            values = [r["peak_rss_kib"], r["ru_maxrss_kib"], *(r["smaps_kib"].get(k, 0) for k in keys)]
            values += [r["file_kib"].get("Rss", 0), r["file_kib"].get("Pss", 0)]
            print(f"{ws:>3} {r['rank']:>4} " + " ".join(f"{v / 1024:>{w}.0f}" for v, w in zip(values, widths)))

    def total(get) -> dict[int, float]:
        return {ws: sum(get(r) for r in ranks) / 1024 for ws, ranks in memory.items()}

    peak = {ws: max(r["peak_rss_kib"] for r in ranks) / 1024 for ws, ranks in memory.items()}
    pss, file_pss = total(lambda r: r["smaps_kib"]["Pss"]), total(lambda r: r["file_kib"].get("Pss", 0))
    file_rss = total(lambda r: r["file_kib"].get("Rss", 0))
    ok = peak[2] / peak[1] <= 1.2
    print(f"peak RSS per rank: ws2 {peak[2]:.0f} / ws1 {peak[1]:.0f} = {peak[2] / peak[1]:.2f} (goal <= 1.2: {ok})")
    print(f"Pss summed over ranks: ws2 {pss[2]:.0f} / ws1 {pss[1]:.0f} = {pss[2] / pss[1]:.2f}")
    print(
        f"the file's Pss summed: ws2 {file_pss[2]:.0f} / ws1 {file_pss[1]:.0f} = {file_pss[2] / file_pss[1]:.2f}"
        f"; its Rss summed: ws2 {file_rss[2]:.0f}, ws1 {file_rss[1]:.0f}"
    )
    result["memory"] = dict(ranks=memory, peak_rss_mib=peak, pss_total_mib=pss, file_pss_total_mib=file_pss)
    result["memory"] |= dict(file_rss_total_mib=file_rss, peak_ratio=peak[2] / peak[1], goal_met=ok)


if __name__ == "__main__":
    sys.exit(main())
