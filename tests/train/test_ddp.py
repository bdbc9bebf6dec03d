"""Training under DistributedDataParallel (gloo, 2 CPU processes) keeps the replicas equal."""

import os
import socket

import numpy as np
import torch
import torch.multiprocessing as mp
from PIL import Image

from adapix.train.config import load_run_config

TINY_OVERRIDES = ["model.N=16", "model.M=24", "model.Nh=16", "model.ctx_hidden=24",
                  "model.syntax_dim=8", "model.postfilter_channels=8"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, data: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from adapix.train.loop import Trainer
    run = load_run_config(None, TINY_OVERRIDES + [
        f"train.data={data}", f"train.out={out}/run", "train.crop=64", "train.batch=2",
        "train.steps=3", "train.compile=false", "train.bf16=false", "train.val_every=0",
        "train.val_holdout=1", "train.channels_last=false", "train.max_side=0"])
    tr = Trainer(run, resume=False, progress=False)
    tr.fit()
    torch.save(tr.model.state_dict(), f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_keep_replicas_equal(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(data / f"{i}.png")
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path), str(data)), nprocs=2,
                       join=True, start_method="spawn")
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    init = load_run_config(None, TINY_OVERRIDES).model
    from adapix.model import AdapixModel
    torch.manual_seed(0)
    fresh = AdapixModel(init).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and training did change the weights
    assert any(not torch.equal(a[k], fresh[k]) for k in a if a[k].is_floating_point())
