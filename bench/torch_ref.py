"""Times the PyTorch reference GPTQ for `npm run bench` (bench/run.mjs).

    python3 torch_ref.py TORCH_GPTQ_PY ROWS COLS THREADS RUNS

TORCH_GPTQ_PY is the shared reference script (../shared/bench/torch_gptq.py): its gptq_fast
(lazy batch, blocks of 128, float32 on the CPU) is run RUNS times on the problem its own main
builds (W = randn(rows, cols), H = X^T X with X = randn(2 cols, cols), seed 0), 4-bit, groups
of 128. Prints one JSON line: wall and CPU seconds of each run (problem generation excluded).
"""
import importlib.util
import json
import sys
import time

import torch


def main():
    path, rows, cols, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    spec = importlib.util.spec_from_file_location("torch_gptq", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(2 * cols, cols)
    h = x.T @ x
    w = torch.randn(rows, cols)
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        ref.gptq_fast(w, h, 4, 128)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "wall": wall, "cpu": cpu}))


if __name__ == "__main__":
    main()
