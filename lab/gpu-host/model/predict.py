# A cog model for the recorded run on a lent GPU machine (docs/hardware-validation.md).
# setup() puts WEIGHTS_GIB GiB of float16 "weights" on the GPU (and, with FAIL_AFTER_ALLOC=1, raises after
# allocating them, as a broken upgrade would); predict() multiplies on the GPU and returns the device's name.
import os
import time

import torch
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self):
        gib = float(os.environ.get('WEIGHTS_GIB', '4'))
        cols = 65536
        rows = int(gib * (1 << 30) / 2 / cols)
        self.w = torch.randn(rows, cols, dtype=torch.float16, device='cuda')
        torch.cuda.synchronize()
        if os.environ.get('FAIL_AFTER_ALLOC') == '1':
            raise RuntimeError('setup failed on purpose after putting %.1f GiB on %s (FAIL_AFTER_ALLOC=1)'
                               % (gib, torch.cuda.get_device_name(0)))

    def predict(self, n: int = Input(default=2048, ge=1, le=65536)) -> str:
        start = time.perf_counter()
        a = torch.randn(n, self.w.shape[0], dtype=torch.float16, device='cuda')
        out = (a @ self.w).float().abs().mean().item()
        torch.cuda.synchronize()
        name = os.environ.get('MODEL_NAME', 'model')
        took = time.perf_counter() - start
        return '%s: %s n=%d mean=%.4f in %.3f s' % (name, torch.cuda.get_device_name(0), n, out, took)
