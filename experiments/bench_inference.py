"""Inference benchmark (the paper's Table 6 for this machine): a thin entry to ``python -m mtfcdd.benchmark``.

    python experiments/bench_inference.py [model/backbone=efficientnet_lite0] [data.image_size=299] [ckpt_path=PATH]
        [run=[eager,fast,onnx_fp32,onnx_int8]] [batch_sizes=[1,8]] [rounds=5]

Every Hydra override of ``conf/benchmark.yaml`` works; results go to the Hydra run directory
(``benchmark.md``, ``benchmark.json``). See :mod:`mtfcdd.benchmark`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtfcdd.benchmark import main

if __name__ == "__main__":
    main()
