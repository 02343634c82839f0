"""The engine that runs the network for extraction: PyTorch, or the same network compiled by
OpenVINO for this processor.

OpenVINO fuses each convolution with its activation and padding and runs the depthwise
convolutions of EfficientNet-Lite far faster than PyTorch's eager kernels: on a Xeon with
AMX, in bfloat16 on one thread, the three scales of a 566 px photograph take 44 ms of CPU
against PyTorch's 101 (`benchmarks/speed.py` measures the whole extraction). The features
agree within the rounding of bfloat16 (the maps within 2% of their largest value; a test
checks the descriptors). Training always runs in PyTorch.

`$LOOKALIKE_ENGINE` chooses: 'auto' (the default: OpenVINO when it is installed, else
PyTorch), 'torch' or 'openvino' (an error when it is not installed). The network is traced and
converted by OpenVINO's PyTorch front end the first time (about 1.5 s of CPU): directly, not
through `openvino.convert_model`, whose wrapper sends usage statistics over the network unless
the user has opted out; nothing here leaves the machine. It is kept, as OpenVINO's own files,
under
`$LOOKALIKE_CACHE/openvino` (default `~/.cache/lookalike/openvino`), named by a hash of the
weights, the layers read and the versions that made it: later processes read it in
milliseconds. A cache folder that cannot be written only costs the conversion each time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("lookalike")

ENGINES = ("auto", "torch", "openvino")
Network = Callable[[torch.Tensor], dict[str, torch.Tensor]]
"""`(1, 3, H, W)` float32 pixels -> the named feature maps, as the PyTorch module gives them."""


def chosen_engine(engine: str | None = None) -> str:
    """'torch' or 'openvino' for `engine` (None: `$LOOKALIKE_ENGINE`, else 'auto'); an unknown
    name, or 'openvino' without OpenVINO installed, is a ValueError saying what to do."""
    name = engine or os.environ.get("LOOKALIKE_ENGINE") or "auto"
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; allowed: {', '.join(ENGINES)}")
    if name == "torch":
        return name
    available = _openvino_version() is not None
    if name == "openvino" and not available:
        raise ValueError("the openvino engine needs the openvino package: pip install openvino")
    return "openvino" if available else "torch"


def _openvino_version() -> str | None:
    try:
        return importlib.metadata.version("openvino")
    except importlib.metadata.PackageNotFoundError:
        return None


def cache_folder() -> Path:
    """Where converted networks are kept: `$LOOKALIKE_CACHE/openvino` or
    `~/.cache/lookalike/openvino`."""
    root = os.environ.get("LOOKALIKE_CACHE") or Path.home() / ".cache" / "lookalike"
    return Path(root) / "openvino"


class OpenVinoNetwork:
    """`model` (a PyTorch module returning a dict of maps, in eval mode) compiled by OpenVINO
    for inputs `(1, 3, H, W)` of any size, on `threads` threads (0: as many as PyTorch uses
    in this process), in bfloat16 or float32. Callable as the module is; safe to call from
    several threads (each has its own inference request)."""

    def __init__(self, model: torch.nn.Module, *, threads: int, bfloat16: bool) -> None:
        import openvino as ov

        example = torch.zeros(1, 3, 64, 64)
        with torch.inference_mode():
            self.names = tuple(model(example))
        path = cache_folder() / f"{_model_key(model, self.names)}.xml"
        core = ov.Core()
        converted = None
        if path.is_file():
            try:
                converted = core.read_model(path)
            except Exception as exc:  # a damaged file in the cache: convert again
                logger.warning("converted network %s unreadable (%s): converting again", path, exc)
        if converted is None:
            converted = _convert(model, self.names, example)
            _save(ov, converted, path)
        config: dict[str, Any] = {
            "NUM_STREAMS": 1,
            # unpinned: OpenVINO pins a latency stream's threads to the first cores, so that
            # two extraction processes on two cores both ran on the first (40% idle)
            "ENABLE_CPU_PINNING": False,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if bfloat16 else "f32",
            # the thread count changes the last bits of float32 sums: as PyTorch would run
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
        }
        self.compiled = core.compile_model(converted, "CPU", config)
        self._local = threading.local()

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        pixels = np.ascontiguousarray(x.detach().float().contiguous().numpy())
        outputs = request.infer({0: pixels})
        maps = [np.array(outputs[self.compiled.output(i)]) for i in range(len(self.names))]
        return {name: torch.from_numpy(m) for name, m in zip(self.names, maps, strict=True)}


class _Outputs(torch.nn.Module):
    """The module's maps as a tuple in `names` order (what a converter traces)."""

    def __init__(self, model: torch.nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.model(x)
        return tuple(maps[name] for name in self.names)


def _convert(model: torch.nn.Module, names: tuple[str, ...], example: torch.Tensor) -> Any:
    """`model` traced on `example` and converted by OpenVINO's PyTorch front end, its input
    made `(1, 3, H, W)` of any size."""
    from openvino import PartialShape
    from openvino.frontend import FrontEndManager
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    # the TorchScript tracer is what this front end reads; PyTorch calls it deprecated
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(_Outputs(model, names).eval(), example)
    front_end = FrontEndManager().load_by_framework("pytorch")
    decoder = TorchScriptPythonDecoder(traced)  # held: the front end calls back into it
    converted = front_end.convert(front_end.load(decoder))
    converted.reshape({0: PartialShape([1, 3, -1, -1])})
    return converted


def _model_key(model: torch.nn.Module, names: tuple[str, ...]) -> str:
    """A hash of what the converted network depends on: the weights (as folded), the maps
    read, the code that defines the forward pass and the converter's version."""
    digest = hashlib.blake2b(digest_size=10)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    source = Path(__file__).parents[1] / "backbones" / "efficientnet.py"
    versions = [_openvino_version() or "", importlib.metadata.version("efficientnet-lite-pytorch")]
    digest.update("|".join([*names, *versions, type(model).__name__]).encode())
    digest.update(source.read_bytes())
    return digest.hexdigest()


def _save(ov: Any, converted: Any, path: Path) -> None:
    """Keep a converted network for later processes, written whole or not at all (another
    process may be writing the same one)."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.xml")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(converted, tmp, compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
        tmp.replace(path)
    except OSError as exc:  # a read-only home: convert again next time
        logger.debug("cannot keep the converted network in %s: %s", path.parent, exc)
        for leftover in (tmp, tmp.with_suffix(".bin")):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)


def build_network(model: torch.nn.Module, *, engine: str, threads: int, bfloat16: bool) -> Network:
    """The network `engine` ('torch' or 'openvino', as `chosen_engine` resolves) runs: the
    module itself, or its OpenVINO compilation (the module itself when that fails, said once in
    the log)."""
    if engine == "openvino":
        try:
            return OpenVinoNetwork(model, threads=threads, bfloat16=bfloat16)
        except Exception as exc:  # a converter that cannot handle this network: PyTorch can
            logger.warning("OpenVINO cannot run the network (%s); using PyTorch", exc)
    return model
