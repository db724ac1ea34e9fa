"""The ``--device`` option: a torch device that exists on this machine, or a clear error."""

from __future__ import annotations

from asr_lm_quant.errors import InputError


def checked_device(name: str):
    """``torch.device(name)`` if this machine has it; otherwise an InputError that says so."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(None, f"--device {name!r}: not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(None, f"--device {name}: this machine has no CUDA GPU that torch can use")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(None, f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(None, f"--device {name}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(None, f"--device {name}: only cpu, cuda and mps are supported")
    return dev


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX). Elsewhere torch emulates bf16
    and autocast makes CPU training several times slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
