"""A torch network run by ONNX Runtime on the CPU: exported in memory when an actor starts.

Why (issue 15, "Batches" and CPU-seconds per video-second): on the CPU nodes PyTorch's eager
convolutions are the largest cost of the people and speaking stages, and ONNX Runtime's CPU
kernels run the same networks much faster with one thread (measured on this task's 2-core VM,
``torch.set_num_threads(1)`` / ``intra_op_num_threads=1``, CPU seconds, 2026-12-07):

- YOLO11n-pose (BatchNorm fused), 480x384 frames: PyTorch 0.054-0.060 s per frame in batches of
  8, ONNX Runtime 0.040 s run one frame at a time (0.045-0.047 in batches of 8); raw head outputs
  equal within 1.3e-3 px, tracks within 1e-3 px.
- Light-ASD's visual encoder (:meth:`talkset.annotators.light_asd._VisualEncoder.forward_folded`),
  250 face crops: 2.75 s -> 1.29 s (2.2x); embeddings equal within 6e-7.

The network is exported from the already loaded torch module with ``torch.onnx.export`` (the
TorchScript exporter, ``dynamo=False``, opset 17) into memory, so no file is written and nothing
is downloaded; the export costs about a second per network, once per actor. On a GPU the stages keep
PyTorch (batched on CUDA); :func:`use_onnxruntime` decides.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Sequence

RUNTIMES = ("auto", "torch", "onnxruntime")


def check_runtime(runtime: str, stage: str) -> None:
    """Raise ValueError naming ``stage`` unless ``runtime`` is one of :data:`RUNTIMES`."""
    if runtime not in RUNTIMES:
        raise ValueError(f"{stage} runtime must be one of {RUNTIMES}, got {runtime!r}")


def use_onnxruntime(runtime: str, device: str) -> bool:
    """Whether a stage should run its network with ONNX Runtime.

    ``runtime``: "auto" (ONNX Runtime when ``device`` is the CPU and ``onnxruntime`` imports),
    "torch" (never) or "onnxruntime" (always on the CPU; raises ImportError without it).
    ``device``: the torch device string the stage resolved ("cpu", "cuda", "cuda:0").
    Raises ValueError on an unknown ``runtime``."""
    check_runtime(runtime, "the")
    if runtime == "torch" or not str(device).startswith("cpu"):
        return False
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if runtime == "onnxruntime":
            raise
        return False
    return True


def session_from_module(
    module: Any,
    example: Any,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    threads: int = 1,
):
    """Export ``module`` (eval mode, CPU) for ``example`` inputs and open it in ONNX Runtime.

    ``dynamic_axes`` names the input/output axes that may change size between calls (batch,
    frames, height, width). ``threads``: ONNX Runtime intra-op threads (1 per Ray actor, as for
    torch; :func:`talkset.env.configure`). Returns an ``onnxruntime.InferenceSession`` on the
    CPU execution provider; its ``run`` takes and returns float32 numpy arrays.
    Raises RuntimeError naming the module when the export fails."""
    import onnxruntime as ort
    import torch

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, example, buf, dynamo=False, opset_version=17, input_names=list(input_names),
                output_names=list(output_names), dynamic_axes=dynamic_axes,
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - name the network, keep the cause
        raise RuntimeError(f"exporting {type(module).__name__} to ONNX failed ({type(exc).__name__}: {exc}); "
                           "run the stage with runtime='torch'") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def torch_threads() -> int:
    """The torch intra-op thread count of this process (what :func:`talkset.env.configure` set)."""
    import torch

    return max(1, int(torch.get_num_threads()))
