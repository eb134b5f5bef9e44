"""torchvision + PIL DataLoader side of bench/data-pipeline.ts: the same transforms on the same
JPEGs (random rotation +-20 deg, horizontal flip, resize + centre crop 224, to float [0, 1]).
Prints one JSON line: images, seconds, img/s, CPU ms per image (main + worker processes)."""
import argparse
import json
import os
import sys
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
import torchvision.transforms as T
from torchvision.transforms import InterpolationMode


class Files(Dataset):
    def __init__(self, files, transform):
        self.files = files
        self.transform = transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with open(self.files[i], 'rb') as f:
            image = Image.open(f).convert('RGB')
        return self.transform(image), 0


def cpu_seconds(pids):
    """utime + stime of the given processes, from /proc (children are not reaped yet)."""
    tick = os.sysconf('SC_CLK_TCK')
    total = 0.0
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except FileNotFoundError:
            pass
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--dir', required=True)
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--images', type=int, default=1024)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--interp', choices=['bilinear', 'nearest'], default='bilinear')
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(os.path.join(args.dir, f) for f in os.listdir(args.dir) if f.endswith('.jpg'))
    interp = InterpolationMode.BILINEAR if args.interp == 'bilinear' else InterpolationMode.NEAREST
    transform = T.Compose([
        T.RandomRotation(20, interpolation=interp, fill=0),
        T.RandomHorizontalFlip(),
        T.Resize(224, interpolation=InterpolationMode.BILINEAR),
        T.CenterCrop(224),
        T.ToTensor(),
    ])
    # Enough epochs to cover warm-up + the measured images.
    epochs_files = files * (1 + (args.images + args.batch) // len(files))
    loader = DataLoader(Files(epochs_files, transform), batch_size=args.batch, shuffle=True,
                        num_workers=args.workers, persistent_workers=False, prefetch_factor=2)
    it = iter(loader)
    next(it)  # warm-up: workers started, first batch out
    pids = [os.getpid()] + [w.pid for w in getattr(it, '_workers', [])]
    cpu0 = cpu_seconds(pids)
    t0 = time.perf_counter()
    n = 0
    while n < args.images:
        x, _ = next(it)
        assert x.shape[1:] == (3, 224, 224)
        n += x.shape[0]
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds(pids) - cpu0
    del it
    print(json.dumps({'images': n, 'seconds': seconds, 'imgPerSec': n / seconds, 'cpuMsPerImg': 1000 * cpu / n}))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
