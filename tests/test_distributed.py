"""Several ranks for real: train_baseline and finetune under torchrun (gloo, 2 CPU ranks).

World size 2 trains the same weights as world size 1 (the MLP has no BatchNorm or dropout)
and the same masks; rank 0 alone logs; two torchrun invocations in two folders (two
"nodes") are one job whose outputs land on the node that runs the stage's own command
(DVC's); a killed rank, Ctrl-C and a bad train.nproc are one line each and leave no RUNNING
run and every earlier output as it was. The stages run as processes, without DVC in between.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from project import copy_built, env, runs, set_params, sh, start_long_training
from test_faults import one_line

from prunelab.cluster.postgres import free_port
from prunelab.parallel import launch

pytestmark = pytest.mark.e2e

# On top of project.TINY (train batches of 100 over 3,500 images; fine-tuning's of 96, whose last
# batch of 44 is split over the ranks): a schedule that prunes while fine-tuning, so masks change
# under DDP.
PRUNE = {"prune": {"sparsity": 0.9, "schedule": "polynomial", "initial_sparsity": 0.5, "steps": 4}}
STAGE = ("stages/train_baseline.py", "--seed", "0")
OUTPUTS = ("models/baseline/seed-0.pt", "models/finetuned.pt", "metrics/baseline/seed-0.json")


def stage(proj: Path, name: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    return sh(proj, sys.executable, f"stages/{name}.py", *args, check=False, timeout=300, TQDM_DISABLE="1", **extra_env)


def state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def digests(proj: Path) -> dict[str, str]:
    return {p: hashlib.sha256((proj / p).read_bytes()).hexdigest() for p in OUTPUTS if (proj / p).exists()}


def finished(proj: Path, name: str) -> int:
    return sum(r["status"] == "FINISHED" for r in runs(proj) if r["name"] == name)


@pytest.fixture(scope="module")
def proj(built, tmp_path_factory) -> Path:
    """The built project's baseline (world size 1), then prune and finetune at 1 (kept), then baseline
    and finetune at 2.

    Both fine-tunings start from world size 1's pruned model (prune trains nothing on this
    schedule), so they compare the fine-tuning alone.
    """
    proj = copy_built(built, tmp_path_factory.mktemp("ddp") / "prunelab", PRUNE)
    for nproc in (1, 2):
        set_params(proj, train={"nproc": nproc})
        for name, args in (("train_baseline", ("--seed", "0")), ("prune", ()), ("finetune", ())):
            if (nproc == 2 and name == "prune") or (nproc == 1 and name == "train_baseline"):
                continue  # world size 1's baseline is the built one: project.TINY's training, one process
            out = stage(proj, name, *args)
            assert out.returncode == 0, out.stderr
            if nproc == 2:
                assert f"{name}: 2 ranks (2 on this node)" in out.stdout.replace(" --seed 0", "")
        for path in ("models/baseline/seed-0.pt", "models/finetuned.pt", "metrics/finetune_history.csv"):
            target = proj / f"ws{nproc}" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((proj / path).read_bytes())
    return proj


def test_two_ranks_train_the_weights_and_masks_of_one_process(proj):
    for path in ("models/baseline/seed-0.pt", "models/finetuned.pt"):
        one, two = state(proj / "ws1" / path), state(proj / "ws2" / path)
        assert one["state_dict"].keys() == two["state_dict"].keys()
        for key in one["state_dict"]:
            torch.testing.assert_close(two["state_dict"][key], one["state_dict"][key], msg=f"{path} {key}")
    one, two = state(proj / "ws1/models/finetuned.pt"), state(proj / "ws2/models/finetuned.pt")
    assert one["masks"].keys() == two["masks"].keys() and one["masks"]
    for name in one["masks"]:
        assert torch.equal(one["masks"][name], two["masks"][name]), name  # the polynomial schedule's, at 90 %
    assert 0.89 < 1 - float(sum(m.sum() for m in two["masks"].values()) / sum(m.numel() for m in two["masks"].values()))
    # the per-epoch history (the same loss, summed over the ranks) agrees too
    h1 = (proj / "ws1/metrics/finetune_history.csv").read_text().splitlines()
    h2 = (proj / "ws2/metrics/finetune_history.csv").read_text().splitlines()
    assert h1[0] == h2[0] and len(h1) == len(h2) == 3
    for a, b in zip(h1[1:], h2[1:], strict=True):
        torch.testing.assert_close(
            torch.tensor([float(x) for x in b.split(",")]), torch.tensor([float(x) for x in a.split(",")])
        )


def test_rank_0_alone_logs_one_run_per_stage(proj):
    # world size 1's baseline is the built project's (logged in its store); here world size 2's
    expected = {"train_baseline seed 0": ["FINISHED"], "finetune": ["FINISHED", "FINISHED"]}
    for name, statuses in expected.items():
        assert [r["status"] for r in runs(proj) if r["name"] == name] == statuses  # one run per job, not per rank


def test_two_torchrun_invocations_on_two_nodes_are_one_job_whose_outputs_land_on_dvcs_node(proj, tmp_path):
    """Node 0 runs the stage's own command (DVC's node: prunelab's launcher, PRUNELAB_TORCHRUN), node 1
    plain torchrun, each in a folder of its own. Node 1 starts first: a c10d rendezvous numbers the nodes
    by host name, then process id, which would make it rank 0 here; `--node-rank` fixes the numbering, as
    docs/distributed.md says to."""
    set_params(proj, train={"nproc": 2})
    node1 = tmp_path / "node1"
    shutil.copytree(proj, node1, symlinks=True)  # the same commit, params and prepared dataset
    outputs = ("models/baseline/seed-0.pt", "metrics/baseline/seed-0.json")
    for folder in (proj, node1):
        for path in outputs:
            (folder / path).unlink()  # as DVC removes a stage's outputs before running it
    before = {folder: finished(folder, "train_baseline seed 0") for folder in (proj, node1)}
    port = free_port()

    def rendezvous(node: int) -> str:
        return f"--nnodes 2 --node-rank {node} --master-addr 127.0.0.1 --master-port {port}"

    def start(argv: list[str], cwd: Path, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            argv, cwd=cwd, env=env(TQDM_DISABLE="1", **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    torchrun = [sys.executable, "-m", "torch.distributed.run", *rendezvous(1).split(), "--nproc-per-node", "1"]
    nodes = [start([*torchrun, *STAGE], node1)]
    nodes.insert(0, start([sys.executable, *STAGE], proj, PRUNELAB_TORCHRUN=rendezvous(0)))
    outs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outs
    assert "2 ranks (1 on this node)" in outs[0][0]
    assert all((proj / path).exists() for path in outputs), "rank 0 wrote its outputs on another node"
    assert not any((node1 / path).exists() for path in outputs)
    after = {folder: finished(folder, "train_baseline seed 0") for folder in (proj, node1)}
    assert after == {proj: before[proj] + 1, node1: before[node1]}  # one job, one run, logged by rank 0
    two_nodes, one_node = state(proj / "models/baseline/seed-0.pt"), state(proj / "ws2/models/baseline/seed-0.pt")
    for key in one_node["state_dict"]:
        torch.testing.assert_close(two_nodes["state_dict"][key], one_node["state_dict"][key])


def ranks_of(launcher: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(launcher)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture
def untouched(proj):
    before = digests(proj)
    params = (proj / "params.yaml").read_text()
    yield
    (proj / "params.yaml").write_text(params)
    assert digests(proj) == before
    assert [r["name"] for r in runs(proj) if r["status"] == "RUNNING"] == []


@pytest.mark.parametrize("victim", [0, 1], ids=["rank-0-writer", "rank-1"])
def test_a_killed_rank_fails_the_stage_in_one_line_within_seconds(proj, untouched, victim):
    """Either rank: a killed rank 0 cannot end its own run, so the launcher marks it KILLED (``untouched``)."""
    proc = start_long_training(proj, nproc=2)
    ranks = ranks_of(proc.pid)  # in pid order: torchrun starts local rank 0 first
    assert len(ranks) == 2
    os.kill(ranks[victim], signal.SIGKILL)
    start = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - start < 15  # within seconds, not a collective's timeout
    assert proc.returncode == 1
    errors = [line for line in stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1, stderr
    assert f"rank {victim} (pid {ranks[victim]}) was killed by SIGKILL; every rank was stopped" in errors[0]
    assert not any(alive(pid) for pid in ranks)
    assert {r["status"] for r in runs(proj) if r["name"] == "train_baseline seed 0"} <= {"FINISHED", "FAILED", "KILLED"}


def test_ctrl_c_stops_every_rank(proj, untouched):
    proc = start_long_training(proj, nproc=2)
    ranks = ranks_of(proc.pid)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert one_line(subprocess.CompletedProcess([], 130, stdout, stderr)).startswith("interrupted")
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in ranks)
    assert sorted(r["status"] for r in runs(proj) if r["name"] == "train_baseline seed 0")[-1] == "KILLED"


@pytest.mark.parametrize(
    ("nproc", "batch", "says"),
    [
        (0, 100, "params: train.nproc = 0 is invalid; allowed: an integer >= 1"),
        (launch.cores() + 1, (launch.cores() + 1) * 10, "CPU cores per node on this machine"),
        (2, 99, "a divisor of train.batch_size (99)"),
    ],
)
def test_a_bad_nproc_is_one_line_naming_it(proj, untouched, nproc, batch, says):
    set_params(proj, train={"nproc": nproc, "batch_size": batch})
    out = stage(proj, "train_baseline", "--seed", "0")
    assert out.returncode == 2
    line = one_line(out)
    assert f"{nproc}" in line and says in line, line


def test_a_sweep_with_imp_levels_runs_as_two_ranks_and_matches_one(proj):
    """Every point's fine-tuning and every IMP level train on both ranks; rank 0 logs each point once."""
    original = (proj / "params.yaml").read_text()
    set_params(
        proj,
        sweep={"sparsities": [0.9], "finetune_epochs": 1},  # one point, one IMP level
        prune={"schedule": "iterative", "rewind": "init"},
        train={"epochs": 1},
    )
    results = {}
    try:
        for nproc in (1, 2):
            set_params(proj, train={"nproc": nproc})
            out = stage(proj, "sweep", "--method", "weight", "--seed", "0")
            assert out.returncode == 0, out.stderr
            results[nproc] = json.loads((proj / "results/sweep/weight/seed-0.json").read_text())["points"]
    finally:
        (proj / "params.yaml").write_text(original)
    assert [p["sparsity"] for p in results[2]] == [0.9]
    for one, two in zip(results[1], results[2], strict=True):
        for key in ("oneshot_test_accuracy", "finetuned_test_accuracy", "iterative_test_accuracy"):
            assert abs(one[key] - two[key]) <= 0.003, (key, one[key], two[key])  # a few images of 1,000 at most
        assert one["sparsity_prunable"] == two["sparsity_prunable"]
    names = [r["name"] for r in runs(proj) if r["name"].startswith("sweep weight seed 0")]
    assert names.count("sweep weight seed 0 0.9") == 2  # one per sweep, not one per rank
