"""Where quantization runs: one device, and under ``torchrun`` one process per device, data-parallel.

Every rank builds the same global batches and takes rows ``rank::world_size`` of each (``lm.data``). Its loss is
its share of the global batch's (the data term scaled by ``tokens / global_tokens``, terms every rank computes
alike, such as the ADMM penalty, by ``1 / world_size``), so the gradients summed over ranks are exactly those of
the global batch; DistributedDataParallel all-reduces them (``quant.train``). Every rank then takes the same
optimizer step from the same gradients, and projections, scales and Lagrange multipliers computed from identical
weights stay identical on all ranks without messages. The collectives here serve the rest: sums of statistics,
random generator states gathered for a checkpoint, barriers. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist

from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.data import Batch


@dataclass
class Runtime:
    device: torch.device = torch.device("cpu")
    rank: int = 0
    world_size: int = 1
    checkpoints: object | None = None  # resume.Checkpoints, when fine-tuning may be interrupted and resumed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def batch(self, b: Batch) -> Batch:
        """This rank's rows of a global batch, on the device."""
        if self.device.type == "cpu":
            return b
        return replace(b, inputs=b.inputs.to(self.device, non_blocking=True),
                       targets=b.targets.to(self.device, non_blocking=True))

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (a copy, on this rank's CPU)."""
        if not self.distributed:
            return values
        t = values.to(self.device).clone()
        dist.all_reduce(t)
        return t.cpu()

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``t`` (same shape and dtype on all ranks), on the CPU, in rank order."""
        if not self.distributed:
            return [t.cpu()]
        local = t.to(self.device)
        out = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(out, local)
        return [x.cpu() for x in out]

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()


LOCAL = Runtime()


def setup_runtime(device: str = "cpu") -> Runtime:
    """The device to run on (``--device``), and under ``torchrun`` the process group (gloo on CPU, nccl on GPU).

    Under torchrun ``--device cuda`` gives each process the GPU of its ``LOCAL_RANK``."""
    from asr_lm_quant.lm.device import checked_device

    dev = checked_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and dev.type == "cuda":
        if dev.index is not None:
            raise InputError(None, f"--device {device}: under torchrun give --device cuda; each process takes "
                                   "the GPU of its LOCAL_RANK", key="device")
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        checked_device(str(dev))
    elif world_size > 1 and dev.type != "cpu":
        raise InputError(None, f"--device {device}: torchrun runs on cpu or cuda only", key="device")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    return Runtime(dev, rank, world_size)
