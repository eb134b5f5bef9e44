"""PyTorch anchor for bench/gpu.ts: the same models as the webgpu side, fp32, on CUDA.

  python3 bench/gpu/torch_cuda.py [--device cuda|cpu] [--settings fmnist-cnn/64,mobilenetv2-frozen/32,...]
                                  [--steps 30] [--transfer-steps 10] [--warmup 5] [--size 224]

Prints one JSON line per setting, as soon as it is measured:
  {"system": "pytorch-cuda", "model": "fmnist-cnn", "batch": 64, "img_per_s": N, "ms_per_step": ..., ...}
Models, as drover builds them (bench/compute.ts, bench/compute-transfer.ts):
  fmnist-cnn            conv3x3 32 valid relu, maxpool2, conv3x3 64 valid relu, maxpool2, dense 128
                        relu, dropout 0.25, dense 10; 28x28x1; Adam 1e-3
  mobilenetv2-frozen    Keras MobileNetV2 (alpha 1) cut at out_relu, global average pooling, dense 10
                        softmax; backbone frozen (batch norm in inference mode, no backward pass
                        through it); only the head trains; Adam 1e-3
  mobilenetv2-finetune  the same with blocks 15, 16 and Conv_1 training too (batch norm frozen)
Weights are random (speed does not depend on them), input synthetic and resident on the device.
TF32 is off (strict fp32, as WebGPU computes); cudnn.benchmark on. Timing: warm-up steps, then a
synchronize, the timed steps, a read of the last loss (which waits for the device).
Exits 3 with a message on stderr when the device is not available (no CUDA).
"""
import argparse
import json
import sys
import time

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda")
parser.add_argument("--settings", default="fmnist-cnn/64,fmnist-cnn/256,fmnist-cnn/1024,mobilenetv2-frozen/32,mobilenetv2-finetune/32")
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--transfer-steps", type=int, default=10)
parser.add_argument("--warmup", type=int, default=5)
parser.add_argument("--size", type=int, default=224)
args = parser.parse_args()

if args.device == "cuda" and not torch.cuda.is_available():
    print("torch.cuda.is_available() is false: no PyTorch CUDA figures", file=sys.stderr)
    sys.exit(3)
device = torch.device(args.device)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True
torch.manual_seed(0)
CLASSES = 10


def fmnist_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, CLASSES),
    )


def conv_bn(cin, cout, kernel, stride=1, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
    if relu:
        layers.append(nn.ReLU6())
    return layers


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = conv_bn(cin, hidden, 1) if expand != 1 else []
        layers += conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += conv_bn(hidden, cout, 1, relu=False)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2_features():
    """Keras MobileNetV2, alpha 1: stem, block_0 .. block_16, Conv_1 (out_relu, 1280 channels)."""
    blocks = [nn.Sequential(*conv_bn(3, 32, 3, 2)), InvertedResidual(32, 16, 1, 1)]
    cin = 16
    for expand, cout, repeat, stride in [(6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(repeat):
            blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    blocks.append(nn.Sequential(*conv_bn(320, 1280, 1)))
    return nn.ModuleList(blocks)  # 0 stem, 1 block_0, k+1 block_k, 18 Conv_1


class Transfer(nn.Module):
    """Backbone (batch norm always in inference mode) + global average pooling + dense 10."""

    def __init__(self, train_from):
        super().__init__()
        self.features = mobilenet_v2_features()
        self.head = nn.Linear(1280, CLASSES)
        self.train_from = train_from  # index of the first module that trains; len(features) = frozen
        for i, module in enumerate(self.features):
            for name, p in module.named_parameters():
                # Conv weights of the fine-tuned blocks train; batch norm gamma/beta stay frozen.
                p.requires_grad = i >= train_from and p.dim() == 4

    def train(self, mode=True):
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, x):
        with torch.no_grad():
            for module in self.features[: self.train_from]:
                x = module(x)
        for module in self.features[self.train_from:]:
            x = module(x)
        return self.head(x.mean((2, 3)))


def build(model_name):
    if model_name == "fmnist-cnn":
        return fmnist_cnn(), [1, 28, 28]
    if model_name == "mobilenetv2-frozen":
        return Transfer(train_from=19), [3, args.size, args.size]
    if model_name == "mobilenetv2-finetune":
        return Transfer(train_from=16), [3, args.size, args.size]  # block_15_expand up
    raise SystemExit(f"unknown model {model_name}")


def measure(model_name, batch):
    model, shape = build(model_name)
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, CLASSES, (batch,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    sync()
    steps = args.steps if model_name == "fmnist-cnn" else args.transfer_steps
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss_value = loss.item()  # waits for the device
    seconds = time.perf_counter() - start
    trainable = sum(p.numel() for p in params)
    del model, opt, x, y
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "system": f"pytorch-{device.type}",
        "model": model_name,
        "batch": batch,
        "img_per_s": round(steps * batch / seconds, 1),
        "ms_per_step": round(1000 * seconds / steps, 3),
        "steps": steps,
        "warmup": args.warmup,
        "input": shape[1:] + shape[:1],
        "trainable_params": trainable,
        "loss": round(loss_value, 4),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "tf32": False,
    }


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


for setting in args.settings.split(","):
    name, batch = setting.split("/")
    try:
        print(json.dumps(measure(name, int(batch))), flush=True)
    except Exception as err:  # one failed setting must not hide the others
        print(json.dumps({"system": f"pytorch-{device.type}", "model": name, "batch": int(batch), "img_per_s": 0,
                          "note": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"}), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
