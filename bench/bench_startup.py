"""What starting the app costs in CPU: importing it, and building the FastAPI + Gradio app.

Two things the app skips, each measured both ways, alternately, in the same run:

- ``chat.gradio_stubs.skip_stub_regeneration``: Gradio rewrites its components' type stubs on
  every import. Each row is a fresh ``python -c "import chat.server"`` (CPU time of the child).
- ``chat.server.one_gradio_app``: Gradio builds a FastAPI app each time a Blocks is created or
  closed, and throws it away. Each row is one ``build_app`` in this process (after a warm-up),
  over a scripted backend: the model is not what is measured.

CPU seconds, not wall time: the figures hold on a busy machine. Prints a Markdown table.

    python bench/bench_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

IMPORT = "import chat.server"
SKIPPED = "from chat.gradio_stubs import skip_stub_regeneration; skip_stub_regeneration(); " + IMPORT
MEASURED = (
    "import resource, sys; exec(sys.argv[1]); r = resource.getrusage(resource.RUSAGE_SELF); "
    "print(r.ru_utime + r.ru_stime)"
)


def import_seconds(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MEASURED, code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(out.stdout.strip().splitlines()[-1])


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_seconds(runs: int) -> dict[str, list[float]]:
    os.environ["CHAT_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-startup-")
    from guard_fakes import ScriptedBackend
    from support import free_port

    import chat.server
    from chat import ChatEngine, Settings

    def build() -> None:
        chat.server.build_app(ChatEngine({"local": ScriptedBackend(["Hi"])}), Settings(port=free_port()))

    build()  # warm-up: first-use imports and caches
    shipped = chat.server.one_gradio_app
    times: dict[str, list[float]] = {"as shipped": [], "with Gradio's throwaway apps": []}
    for _ in range(runs):
        for label, wrapper in (
            ("as shipped", shipped),
            ("with Gradio's throwaway apps", contextlib.nullcontext),
        ):
            chat.server.one_gradio_app = wrapper
            start = cpu()
            build()
            times[label].append(cpu() - start)
    chat.server.one_gradio_app = shipped
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    imports: dict[str, list[float]] = {"as shipped (stubs skipped)": [], "Gradio regenerating its stubs": []}
    for _ in range(args.runs):
        imports["as shipped (stubs skipped)"].append(import_seconds(SKIPPED))
        imports["Gradio regenerating its stubs"].append(import_seconds(IMPORT))
    builds = build_seconds(args.runs)

    print(f"{args.runs} runs of each, alternating; CPU seconds (median, min-max)\n")
    print("| step | variant | CPU s (median) | min | max |")
    print("|---|---|---|---|---|")
    for step, rows in (("import chat.server", imports), ("build_app", builds)):
        for variant, values in rows.items():
            print(
                f"| {step} | {variant} | {statistics.median(values):.2f} | "
                f"{min(values):.2f} | {max(values):.2f} |"
            )
    print(f"\n({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
