"""The machine a run is on and what the harness chose for it: torch threads, compute dtype and
4-bit kernels, said in the run header and stored with the run's provenance.

The choices are the ones that are fast and never change a verdict:

- **threads**: at most one per core this process may use (its CPU affinity, which containers
  and taskset narrow), where torch would count the whole machine; fewer where OMP_NUM_THREADS or
  the split between pytest-xdist workers says so. Two processes that each take every core run
  10-15x slower (OpenMP threads fight over the cores).
- **dtype**: float32 on CPU, on any CPU. bf16 matmuls (AVX512-BF16) are faster but round every
  product to 8 bits of mantissa, which moves label scores near a tie and so can move a verdict;
  on CUDA, bf16 where the GPU has it, else fp16 (what QLoRA is trained in).
- **4-bit kernels**: bitsandbytes' own CPU path, with its repacking for inference turned off
  (harness/models.py: on AVX512-BF16 CPUs the repack cuts gradients). The `kernels`
  package's faster CPU GEMM needs a download from the hub, which the harness never does.
- **on CPU only**, two choices that change no number beyond fp32 rounding: training's LM head
  projects only the answer tokens (harness/candidate/train.py), and the candidate is scored
  with its adapter merged into an fp32 copy of the dequantized base where memory allows
  (harness/models.py `with_adapter`).
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ones that set CPU matmul speed


@dataclass(frozen=True)
class Machine:
    device: str          # cpu | cuda
    name: str            # lscpu's model name, or the GPU's
    cores: int           # cores this process may use
    flags: tuple[str, ...]
    threads: int         # torch threads chosen
    dtype: str           # compute dtype
    kernels: str         # what runs the 4-bit matmuls

    def text(self) -> str:
        flags = ", ".join(self.flags) or "none of " + "/".join(FLAGS)
        where = (f"{self.name} ({self.cores} core{'s' * (self.cores != 1)}; {flags})" if self.device == "cpu"
                 else self.name)
        return f"on {where}: {self.threads} torch thread{'s' * (self.threads != 1)}, {self.dtype} compute, {self.kernels}"

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> tuple[str, ...]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return tuple(flag for flag in FLAGS if flag in present)
    except OSError:
        pass
    return ()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def chosen() -> Machine:
    """Apply the thread choice (once per process) and describe the machine and the choices."""
    import torch

    from harness.models import compute_dtype  # the one place that decides the dtype

    dtype = str(compute_dtype()).removeprefix("torch.")
    if torch.cuda.is_available():
        return Machine("cuda", torch.cuda.get_device_name(0), usable_cores(), (), torch.get_num_threads(), dtype,
                       "bitsandbytes CUDA NF4")
    cores = usable_cores()
    # only ever lowered: an explicit OMP_NUM_THREADS, or the split between pytest-xdist workers
    # (harness/plugin.py), already chose fewer
    if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() > cores:
        torch.set_num_threads(cores)
    return Machine("cpu", cpu_name(), cores, cpu_flags(), torch.get_num_threads(), dtype,
                   "bitsandbytes CPU NF4 (no repack); LM head on answer tokens in training; candidate merged "
                   "into fp32 for scoring where memory allows")
