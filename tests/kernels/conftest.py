import os

import torch

# Triton kernels run in the CPU interpreter when there is no GPU; this must be set before triton
# is first imported anywhere in the test session.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
