"""A training step's peak memory against `googlenet.train.memory`'s estimate, which `googlenet train`
uses to refuse a run that cannot fit (the system's out-of-memory killer ends one without a word).

Each case is a real `googlenet train` on the built-in data, one process, no loader workers, stopped
after 2 steps; its peak resident memory (the kernel's VmHWM, read by the process as it ends) minus
that of a process that has only imported the trainer is what the step needed. That, less the weights' copies, the batch and the fixed part, over
the summed layer outputs (the estimate's `activations` before its factor) is what sets
`ACTIVATION_FACTOR`.

    .venv/bin/python benchmarks/train_memory.py --json benchmarks/results/train_memory.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from googlenet.bench.command import save_run
from googlenet.model.googlenet import build_model
from googlenet.train.memory import (
    ACTIVATION_FACTOR,
    AUTOCAST_SHARE,
    estimate_training_memory,
    gib,
    layer_output_bytes,
)

CASES = [  # (variant, input size, batch, --amp)
    ("paper", 128, 16, False),
    ("paper", 224, 16, False),
    ("paper", 320, 16, False),
    ("bn", 128, 16, False),
    ("bn", 224, 16, False),
    ("bn", 320, 16, False),
    ("paper", 224, 16, True),
    ("bn", 224, 16, True),
]


# Runs a command in a fresh Python and prints its peak resident memory. The kernel's VmHWM counts from
# the exec (rusage's ru_maxrss would not do: it carries the parent's peak over fork and exec).
_REPORT_PEAK = (
    "import sys, runpy\n"
    "try:\n"
    "    if sys.argv[1:]:\n"
    "        sys.argv = sys.argv[1:]\n"
    "        runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "except SystemExit as stop:\n"
    "    if stop.code not in (0, None):\n"
    "        raise\n"
    "finally:\n"
    "    status = open('/proc/self/status').read()\n"
    "    sys.stderr.write('VmHWM ' + status.split('VmHWM:')[1].split()[0] + '\\n')\n"
)


def peak_rss(module_args: list[str], prelude: str = "") -> int:
    """Peak resident bytes of `python -m MODULE ARGS...` (none: just `prelude`) in a fresh process."""
    command = [sys.executable, "-c", prelude + "\n" + _REPORT_PEAK, *module_args]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(module_args)} failed:\n{done.stderr}")
    return int(done.stderr.rsplit("VmHWM ", 1)[1].split()[0]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    base = peak_rss([], prelude="import torch, googlenet.train.engine")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (variant, size, batch, amp) in enumerate(CASES):
            command = ["googlenet", "train", "--variant", variant, "--input-size", str(size),
                       "-b", str(batch), "-j", "0", "--stop-after-steps", "2", "-o", f"{tmp}/run{i}"]  # fmt: skip
            if amp:
                command.append("--amp")
            peak = peak_rss(command)
            with torch.device("meta"):
                model = build_model(variant, num_classes=10)
            outputs = int(layer_output_bytes(model, size) * batch * (AUTOCAST_SHARE if amp else 1.0))
            estimate = estimate_training_memory(variant, 10, size, batch, loader_batches=1, autocast=amp)
            row = {
                "variant": variant, "input_size": size, "batch": batch, "amp": amp,
                "step_bytes": peak - base, "layer_output_bytes": outputs, "estimate_bytes": estimate.total,
                "measured_over_outputs": round(
                    (peak - base - estimate.weights - estimate.batches - estimate.fixed) / outputs, 2
                ),
                "measured_over_estimate": round((peak - base) / estimate.total, 2),
            }  # fmt: skip
            rows.append(row)
            print(f"{variant:5s} {size:4d} px b{batch} {'bf16' if amp else 'fp32'}: step {gib(peak - base)}, "
                  f"outputs {gib(outputs)} (x{row['measured_over_outputs']}), estimate {gib(estimate.total)} "
                  f"(measured/estimate {row['measured_over_estimate']})", flush=True)  # fmt: skip
    ratios = [r["measured_over_outputs"] for r in rows]
    print(
        f"measured over summed outputs: {min(ratios)}-{max(ratios)}; ACTIVATION_FACTOR = {ACTIVATION_FACTOR}"
    )
    if args.json:
        save_run(args.json, args, {"base_bytes": base, "activation_factor": ACTIVATION_FACTOR, "cases": rows})


if __name__ == "__main__":
    main()
