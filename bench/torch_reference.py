"""PyTorch anchor for bench/train.ts: the same reference CNN, batch and optimizer, img/s.

Prints one JSON line: {"system": "pytorch", "img_per_s": N, ...}. Run with Debian's python3
(python3-torch). Input is random data of the Fashion-MNIST shape: speed does not depend on it.
"""
import json
import sys
import time

import torch
from torch import nn

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 100
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
torch.set_num_threads(threads)
torch.manual_seed(0)

# Keras-style fmnist-cnn: conv3x3 32 (valid), pool, conv3x3 64 (valid), pool, dense 128, dropout 0.25, dense 10.
model = nn.Sequential(
    nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
x = torch.rand(batch, 1, 28, 28)
y = torch.randint(0, 10, (batch,))


def step():
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()


for _ in range(10):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
seconds = time.perf_counter() - start
print(json.dumps({"system": f"pytorch {torch.__version__} ({threads} thread{'s' if threads > 1 else ''})",
                  "img_per_s": round(steps * batch / seconds, 1), "ms_per_step": round(1000 * seconds / steps, 2)}))
