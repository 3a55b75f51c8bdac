"""torchrun/DDP helpers. Nothing happens at import: `init()` starts the process group when the
environment says this process was launched by torchrun with more than one rank."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init(device: str) -> torch.device:
    """Starts the process group under torchrun (gloo on CPU, nccl on CUDA); returns this rank's device."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if n > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def init_training(device: str, threads: int = 0) -> torch.device:
    """`init`, plus what every training loop sets: the CPU thread count (0: torch's default) and,
    on CUDA, TF32 matmuls and cuDNN autotuning."""
    dev = init(device)
    if threads:
        torch.set_num_threads(threads)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return dev


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is a clear error."""
    from .errors import UserError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but no CUDA GPU is available: use --device=cpu")
    return dev


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Makes every rank's parameters and buffers equal to rank `src`'s."""
    if world_size() > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def average_gradients(module: torch.nn.Module) -> None:
    """Data parallelism by hand (as NVlabs' stylegan3 does): the mean of every rank's gradients.

    Used instead of the DDP wrapper where a step needs double backward (R1) or runs a network
    frozen, which DDP's reducer does not support."""
    n = world_size()
    if n == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if grads:
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= n
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
