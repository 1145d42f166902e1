"""Train on the lent GPU machine: pack here, train there (bf16 autocast, channels_last), bring back fp16
checkpoint shards, unpack here into run folders that ``edge-ls train --finish`` and ``edge-ls export``
accept.

Why a script of its own: the device machine gets a copy of the repository and at most 64 MiB a call
(tree included), has no ``../shared`` data and no ``pip install`` of edge-ls, gives back at most 8
files of 16 MiB (64 MiB) a call, and forgets everything once it goes back. So:

* ``pack`` (here) reads the tiles the configs train and validate on (the trainer's own reader), stores
  them lossless (8-bit WebP / PNG), adds the pretrained weights as fp16 and the pure-Python packages the
  machine lacks, and splits everything into call folders ``.gpu/callN`` that fit beside the tree. The
  test split stays here: the finish step scores it here. rasterio is not needed there (no raster is
  read there), so no wheel travels.
* ``device`` (there, ``python3 training/gpu_train.py device ...``) makes ``edge_ls`` importable from
  the bare copy, stages each call folder in ``/tmp/edge_ls_gpu`` (kept while the machine stays warm),
  and trains with the trainer's own loop (``Trainer(..., tiles=..., finish_step=False)``); the best
  weights are cut into fp16 shards of at most 15 MiB, four of which come back per call (``--fetch``
  brings the next four: the fusion family needs three calls).
* ``unpack`` (here) checks every shard's sha256, joins them into ``runs/<name>/best.pt`` with the
  run's ``config.json`` and ``log.jsonl``; ``edge-ls train --config C --out runs/<name> --finish``
  then fits the temperature and threshold, scores val/test and exports the ONNX.
* ``dry-run`` (here, CPU) runs the whole chain with ``--device cpu`` in subprocesses: what the test
  suite checks.

The exact commands are in training/README.md ("When a GPU is lent").
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as a script: training/ itself must not shadow packages (config, datasets...)

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import time
import zipfile
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: Where the device keeps what the calls staged, and the runs it trained (lives while the machine is warm).
DEVICE_STORE = Path("/tmp/edge_ls_gpu")
MIB = 1 << 20
#: The device tool's limits: working tree per call, files back per call, size of one file back.
CALL_LIMIT = 64 * MIB
FILES_BACK = 8
SHARD_BYTES = 15 * MIB
SHARDS_PER_CALL = 4
#: The package folders pyproject.toml maps into ``edge_ls`` ([tool.setuptools.package-dir]).
PACKAGE_DIRS = {"training": "training", "export": "export", "engines": "engines", "profiles": "profiles"}


# ------------------------------------------------------------------------------ device-side bootstrap
def bootstrap(store: Path = DEVICE_STORE, repo: Path = REPO) -> None:
    """Make ``import edge_ls`` work on a bare copy of the repository (nothing pip-installed there):
    the package is assembled under ``store/site`` as setuptools' package-dir mapping would, and the
    pure-Python packages the pack carried (``store/lib``) join the path."""
    site = store / "site"
    target = site / "edge_ls"
    if target.exists():
        shutil.rmtree(target)
    ignore = shutil.ignore_patterns("__pycache__", "*.onnx", "*.tif")
    shutil.copytree(repo / "edge_ls", target, ignore=ignore)
    for sub, folder in PACKAGE_DIRS.items():
        shutil.copytree(repo / folder, target / sub, ignore=ignore)
    for path in (store / "lib", site):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


# ------------------------------------------------------------------------------ shards
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def write_shards(state: dict[str, Any], folder: Path, name: str, shard_bytes: int = SHARD_BYTES) -> dict:
    """A state_dict as fp16 shards of at most ``shard_bytes`` (floating tensors halved, counters kept)
    plus an index with each shard's keys and sha256: what comes back from the device, file by file."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    groups: list[dict[str, Any]] = [{}]
    size = 0
    for key, tensor in state.items():
        t = tensor.detach().cpu()
        t = t.half() if t.is_floating_point() else t
        nbytes = t.numel() * t.element_size()
        if nbytes > shard_bytes - MIB:
            raise ValueError(f"{key}: {nbytes} bytes do not fit a {shard_bytes}-byte shard")
        if groups[-1] and size + nbytes > shard_bytes - MIB // 2:
            groups.append({})
            size = 0
        groups[-1][key] = t.contiguous()
        size += nbytes
    shards = []
    for k, group in enumerate(groups):
        path = folder / f"{name}.shard{k:02d}.pt"
        torch.save(group, path)
        if path.stat().st_size > shard_bytes:
            raise ValueError(f"{path.name} came out at {path.stat().st_size} bytes (> {shard_bytes})")
        shards.append({"file": path.name, "sha256": sha256(path), "keys": len(group)})
    index = {"name": name, "dtype": "float16", "shards": shards, "tensors": len(state)}
    (folder / f"{name}.shards.json").write_text(json.dumps(index, indent=2))
    return index


def read_shards(index_path: Path, folders: list[Path]) -> dict[str, Any]:
    """The state_dict back in fp32 from the shards found in ``folders``; refused when one is missing
    or its sha256 differs (a run folder is never made from a partial or corrupt checkpoint)."""
    import torch

    from edge_ls.errors import ModelError

    index = json.loads(index_path.read_text())
    state: dict[str, Any] = {}
    for shard in index["shards"]:
        found = [f / shard["file"] for f in folders if (f / shard["file"]).is_file()]
        if not found:
            raise ModelError(f"shard {shard['file']} of {index['name']} not found: fetch it first (--fetch)")
        if sha256(found[0]) != shard["sha256"]:
            raise ModelError(f"shard {found[0]} does not match its sha256: fetch it again")
        part = torch.load(found[0], map_location="cpu", weights_only=True)
        state.update({k: v.float() if v.is_floating_point() else v for k, v in part.items()})
    if len(state) != index["tensors"]:
        raise ModelError(
            f"{index['name']}: {len(state)} tensors in the shards, the index says {index['tensors']}"
        )
    return state


# ------------------------------------------------------------------------------ pack (here)
def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of what the device tool sends without being asked: tracked and untracked-not-ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    return sum((repo / p).stat().st_size for p in out.decode().split("\0") if p and (repo / p).is_file())


def _encode_pair(image: Any, mask: Any) -> tuple[bytes, bytes, str]:
    """Lossless bytes of one tile (8-bit WebP for 3 bands, PNG for 1 or 4) and its 0/1 mask (PNG)."""
    import cv2
    import numpy as np

    from edge_ls.errors import InputError

    u = np.round(image * 255.0)
    if float(np.abs(u - image * 255.0).max()) > 1e-3:
        raise InputError("the GPU pack stores 8-bit tiles losslessly; these tiles are not 8-bit")
    hwc = np.ascontiguousarray(np.moveaxis(u.astype(np.uint8), 0, -1))
    if hwc.shape[-1] == 3:
        ok, img = cv2.imencode(".webp", hwc[..., ::-1], [cv2.IMWRITE_WEBP_QUALITY, 101])  # >100: lossless
        ext = "webp"
    elif hwc.shape[-1] in (1, 4):
        ok, img = cv2.imencode(".png", hwc, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        ext = "png"
    else:
        raise InputError(f"the GPU pack stores 1, 3 or 4 bands, not {hwc.shape[-1]}")
    ok2, m = cv2.imencode(".png", mask.astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok and ok2
    return img.tobytes(), m.tobytes(), ext


def _decode_pair(img: bytes, mask: bytes, ext: str) -> tuple[Any, Any]:
    import cv2
    import numpy as np

    from edge_ls.pixel_math import to_unit_range

    a = cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_UNCHANGED)
    a = a[..., None] if a.ndim == 2 else (a[..., ::-1] if ext == "webp" else a)
    planar = np.ascontiguousarray(np.moveaxis(a, -1, 0))
    n = planar.shape[0]  # the runtime's 8-bit scaling, bit for bit what the trainer's reader gives
    image = to_unit_range(planar, np.zeros(n, np.float32), np.full(n, 1 / 255, np.float32))
    return image, cv2.imdecode(np.frombuffer(mask, np.uint8), cv2.IMREAD_UNCHANGED)


def data_key(data: Any) -> str:
    """Runs with the same tiles, split, statistics and GSDs share one data pack (fusion, fusion_gan)."""
    fields = ("roots", "bands", "split_file", "seed", "gsd_m", "mean", "std", "scale_gsd")
    blob = json.dumps({f: getattr(data, f) for f in fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _pack_data(cfg: Any, folder: Path, part_bytes: int) -> list[Path]:
    """The train and val tiles of ``cfg.data`` as zip parts of at most ``part_bytes`` + an index."""
    from edge_ls.training.tileset import load_tiles

    key = data_key(cfg.data)
    tiles = load_tiles(cfg.data)
    index: dict[str, Any] = {
        "key": key,
        "names": tiles.source_names,
        "gsd": tiles.source_gsd,
        "mean": list(tiles.mean),
        "std": list(tiles.std),
        "skipped": tiles.skipped,
        "pairs": {"train": [], "val": []},
    }
    parts: list[Path] = []
    zf: zipfile.ZipFile | None = None
    size = 0
    for split in ("train", "val"):
        for k, (image, mask) in enumerate(getattr(tiles, split)):
            img, m, ext = _encode_pair(image, mask)
            if zf is None or size + len(img) + len(m) > part_bytes:
                if zf is not None:
                    zf.close()
                parts.append(folder / f"data-{key}-{len(parts):02d}.zip")
                zf = zipfile.ZipFile(parts[-1], "w", zipfile.ZIP_STORED)
                size = 0
            stem = f"{split}/{k:05d}"
            zf.writestr(f"{stem}.{ext}", img)
            zf.writestr(f"{stem}.mask.png", m)
            size += len(img) + len(m) + 200
            source = getattr(tiles, f"{split}_source")[k]
            index["pairs"][split].append([parts[-1].name, stem, ext, source])
    if zf is not None:
        zf.close()
    index_path = folder / f"data-{key}.json"
    index_path.write_text(json.dumps(index))
    return [index_path, *parts]


def _pack_weights(cfg: Any, folder: Path) -> tuple[Path | None, dict | None]:
    """The pretrained weights a run starts from, as fp16 in the format its loader reads, with the
    provenance of the original file (the finish step records the original, read here)."""
    import numpy as np
    import torch

    from edge_ls.training import networks as models

    prov = models.pretrained_provenance(cfg.model.name, cfg.model.pretrained)
    if prov is None:
        return None, None
    if prov["encoder"] == "vgg16":
        import h5py

        src = models.hed_vgg16_weights(cfg.model.pretrained)
        out = folder / "hed_vgg16.fp16.h5"
        with h5py.File(src, "r") as fin, h5py.File(out, "w") as fout:
            for group, _ in models.HED_CONVS:
                for var in ("0", "1"):
                    fout[f"{group}/vars/{var}"] = np.asarray(fin[f"{group}/vars/{var}"], np.float16)
    else:
        variant = models.PRETRAINED_ENCODERS[cfg.model.name]
        src = models.efficientnet_lite_weights(variant, cfg.model.pretrained)
        state = torch.load(src, map_location="cpu", weights_only=True)
        out = folder / f"efficientnet_lite{variant}.fp16.pth"
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, out)
    return out, prov


def _vendor(module: str, lib: Path) -> Path:
    """Copy a pure-Python package that the device lacks (e.g. efficientnet_lite_pytorch) into lib/."""
    import importlib

    src = Path(importlib.import_module(module).__file__).parent
    shutil.copytree(src, lib / src.name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    return lib / src.name


def _folder_bytes(path: Path) -> int:
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def pack(
    configs: list[str],
    out: Path,
    call_bytes: int | None = None,
    max_minutes: float | None = None,
    device: str = "cuda",
) -> dict[str, Any]:
    """Build ``out/callN`` folders and ``out/plan.json``: the device calls that stage everything and
    train ``configs`` in order (the last call trains; the ones before it only stage)."""
    from edge_ls.training.config import load_config

    if call_bytes is None:
        call_bytes = CALL_LIMIT - tree_bytes() - 2 * MIB
    if call_bytes < 4 * MIB:
        raise SystemExit(f"only {call_bytes / MIB:.1f} MiB left beside the tree for a call: shrink the tree")
    if out.exists():
        shutil.rmtree(out)
    staging = out / "staging"
    staging.mkdir(parents=True)
    runs, items, seen = [], [], set()
    for path in configs:
        cfg = load_config(path)
        key = data_key(cfg.data)
        if key not in seen:
            seen.add(key)
            items += _pack_data(cfg, staging, min(call_bytes, 30 * MIB))
        weights, prov = _pack_weights(cfg, staging)
        if weights is not None:
            items.append(weights)
        if cfg.model.name in ("edge_lite", "cascade_refiner") and "efficientnet_lite_pytorch" not in {
            p.name for p in items
        }:
            items.append(_vendor("efficientnet_lite_pytorch", staging / "lib"))
        cfg.run.device = device
        cfg.run.autocast = "bf16"
        cfg.run.channels_last = True
        if max_minutes is not None:
            cfg.run.max_minutes = max_minutes
        runs.append(
            {
                "name": cfg.run.name,
                "config_file": str(path),
                "config": cfg.to_dict(),
                "data": key,
                "weights": weights.name if weights else "",
                "pretrained_weights": prov,
                "init_from": cfg.model.init_from,
            }
        )
    manifest = staging / "manifest.json"
    manifest.write_text(
        json.dumps({"runs": runs, "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    )
    # greedy: every item into the first call with room; the manifest travels with the last call
    calls: list[list[Path]] = []
    sizes: list[int] = []
    for item in sorted(items, key=_folder_bytes, reverse=True):
        n = _folder_bytes(item)
        if n > call_bytes:
            raise SystemExit(
                f"{item.name} ({n / MIB:.1f} MiB) does not fit a call ({call_bytes / MIB:.1f} MiB)"
            )
        k = next((i for i, s in enumerate(sizes) if s + n <= call_bytes), None)
        if k is None:
            calls.append([])
            sizes.append(0)
            k = len(calls) - 1
        calls[k].append(item)
        sizes[k] += n
    calls[-1].append(manifest)
    plan = []
    for k, members in enumerate(calls, start=1):
        folder = out / f"call{k}"
        folder.mkdir()
        for item in members:
            shutil.move(str(item), folder / item.name)
        rel = folder.resolve().relative_to(REPO) if folder.resolve().is_relative_to(REPO) else folder
        last = k == len(calls)
        command = f"python3 training/gpu_train.py device --stage {rel}"
        if last:
            command += " --train " + ",".join(r["name"] for r in runs) + ' --out "$OUT"'
        plan.append({"carry": [str(rel)], "command": command, "mib": round(sizes[k - 1] / MIB, 1)})
    shutil.rmtree(staging)
    result = {"calls": plan, "call_mib": round(call_bytes / MIB, 1), "runs": [r["name"] for r in runs]}
    (out / "plan.json").write_text(json.dumps(result, indent=2))
    return result


# ------------------------------------------------------------------------------ device (there)
def _stage(folder: Path, store: Path) -> None:
    """Move a call folder's files into the store (data, weights, lib/, manifest) for later calls."""
    for item in folder.iterdir():
        dest = store / item.name
        if item.is_dir():
            shutil.copytree(item, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(item, dest)


def load_packed_tiles(cfg: Any, store: Path) -> Any:
    """The TileSet of a packed data set (train + val), built as the trainer builds it from folders."""
    from edge_ls.training.tileset import build_tileset

    index = json.loads((store / f"data-{data_key(cfg.data)}.json").read_text())
    zips: dict[str, zipfile.ZipFile] = {}
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    sources: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    try:
        for split in ("train", "val"):
            for part, stem, ext, source in index["pairs"][split]:
                if part not in zips:
                    if not (store / part).is_file():
                        raise SystemExit(f"{part} was not staged: run every call of the plan, in order")
                    zips[part] = zipfile.ZipFile(store / part)
                zf = zips[part]
                parts[split].append(_decode_pair(zf.read(f"{stem}.{ext}"), zf.read(f"{stem}.mask.png"), ext))
                sources[split].append(source)
    finally:
        for zf in zips.values():
            zf.close()
    mean, std = tuple(index["mean"]), tuple(index["std"])
    return build_tileset(cfg.data, parts, sources, index["names"], mean, std, index["gsd"], index["skipped"])


def _send_back(run_dir: Path, out: Path, first: int) -> list[str]:
    """Copy shards ``first .. first+3`` (and, with the first, the index, config and log) into $OUT/<run>."""
    name = run_dir.name
    index = json.loads((run_dir / "shards" / f"{name}.shards.json").read_text())
    dest = out / name
    dest.mkdir(parents=True, exist_ok=True)
    sent = []
    for shard in index["shards"][first : first + SHARDS_PER_CALL]:
        shutil.copy2(run_dir / "shards" / shard["file"], dest / shard["file"])
        sent.append(shard["file"])
    for extra in (f"shards/{name}.shards.json", "config.json", "log.jsonl"):
        shutil.copy2(run_dir / extra, dest / Path(extra).name)
    left = len(index["shards"]) - first - len(sent)
    print(
        f"{name}: sent shards {first}..{first + len(sent) - 1} of {len(index['shards'])}"
        + (
            f"; {left} left: next call  python3 training/gpu_train.py device --fetch {name} "
            f'--from-shard {first + len(sent)} --out "$OUT"'
            if left > 0
            else "; all sent"
        ),
        flush=True,
    )
    return sent


def device_main(args: argparse.Namespace) -> int:
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    for folder in args.stage or []:
        _stage(Path(folder), store)
        print(f"staged {folder} -> {store}", flush=True)
    if not args.train and not args.fetch:
        return 0
    bootstrap(store)
    import torch

    import edge_ls

    print(
        f"edge_ls from {Path(edge_ls.__file__).parent}; torch {torch.__version__}, "
        f"cuda {torch.cuda.is_available()}",
        flush=True,
    )
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = Path(args.out)
    if args.fetch:
        _send_back(store / "runs" / args.fetch, out, args.from_shard)
        return 0
    from edge_ls.training.config import config_from_dict
    from edge_ls.training.trainer import BEST, Trainer

    manifest = json.loads((store / "manifest.json").read_text())
    runs = {r["name"]: r for r in manifest["runs"]}
    sent_files = 0
    for name in args.train.split(","):
        if name not in runs:
            raise SystemExit(f"run '{name}' is not in the pack (packed: {', '.join(runs)})")
        spec = runs[name]
        cfg = config_from_dict(spec["config"], f"pack:{name}")
        if args.device:
            cfg.run.device = args.device
        if args.max_minutes is not None:
            cfg.run.max_minutes = args.max_minutes
        if spec["weights"]:
            cfg.model.pretrained = str(store / spec["weights"])
        if cfg.model.init_from:
            cfg.model.init_from = str(store / "runs" / Path(cfg.model.init_from).name)
        run_dir = store / "runs" / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        tiles = load_packed_tiles(cfg, store)
        trainer = Trainer(
            cfg,
            run_dir,
            progress=lambda m: print(m, flush=True),
            tiles=tiles,
            finish_step=False,
            config_source=spec["config_file"],
        )
        result = trainer.fit()
        print(f"{name}: {json.dumps(result)}", flush=True)
        state = torch.load(run_dir / BEST, map_location="cpu", weights_only=True)
        write_shards(state, run_dir / "shards", name, args.shard_bytes)
        if sent_files == 0:  # 4 shards + index, config, log: 7 of the call's 8 files, <= 64 MiB
            sent_files += len(_send_back(run_dir, out, 0)) + 3
        else:
            print(
                f"{name}: nothing sent yet: next call  python3 training/gpu_train.py device --fetch {name} "
                '--from-shard 0 --out "$OUT"',
                flush=True,
            )
    return 0


# ------------------------------------------------------------------------------ unpack (here)
def unpack(folders: list[Path], runs_dir: Path) -> list[Path]:
    """Join the shards each run sent back (over one or more calls' folders) into ``runs_dir/<name>``."""
    from edge_ls.training.trainer import BEST, atomic_save

    made = []
    indexes = {p.name: p for f in folders for p in sorted(f.glob("*/*.shards.json"))}
    if not indexes:
        raise SystemExit(f"no <run>/<run>.shards.json under {', '.join(map(str, folders))}")
    for index_path in indexes.values():
        run_folders = [f / index_path.parent.name for f in folders if (f / index_path.parent.name).is_dir()]
        state = read_shards(index_path, run_folders)
        run_dir = runs_dir / index_path.parent.name
        if (run_dir / "last.pt").exists():
            raise SystemExit(f"{run_dir} holds a local run (last.pt): choose another --runs folder")
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_save(state, run_dir / BEST)
        for extra in ("config.json", "log.jsonl"):
            shutil.copy2(index_path.parent / extra, run_dir / extra)
        shutil.copy2(index_path, run_dir / "gpu_shards.json")
        made.append(run_dir)
        print(
            f"{run_dir}: best.pt from {len(json.loads(index_path.read_text())['shards'])} fp16 shards",
            flush=True,
        )
    return made


# ------------------------------------------------------------------------------ dry run (here, CPU)
def dry_run(
    configs: list[str], work: Path, max_minutes: float | None, call_mib: float, shard_mib: float
) -> Path:
    """The whole chain on this machine's CPU: pack, every device call in a subprocess (staging into a
    store of its own, the package assembled from the tree as there), fetch calls, unpack."""
    plan = pack(configs, work / "pack", int(call_mib * MIB), max_minutes, device="cpu")
    store = work / "store"
    outs = []
    for k in range(1, len(plan["calls"]) + 1):
        out = work / f"out{k}"
        out.mkdir(parents=True, exist_ok=True)
        folder = work / "pack" / f"call{k}"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "device",
            "--stage",
            str(folder),
            "--store",
            str(store),
            "--out",
            str(out),
            "--shard-bytes",
            str(int(shard_mib * MIB)),
        ]
        if k == len(plan["calls"]):
            cmd += ["--train", ",".join(plan["runs"]), "--device", "cpu"]
        subprocess.run(cmd, check=True)
        outs.append(out)
    for name in plan["runs"]:
        index = json.loads((store / "runs" / name / "shards" / f"{name}.shards.json").read_text())
        for first in range(SHARDS_PER_CALL, len(index["shards"]), SHARDS_PER_CALL):
            out = work / f"fetch-{name}-{first}"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "device",
                "--fetch",
                name,
                "--from-shard",
                str(first),
                "--store",
                str(store),
                "--out",
                str(out),
            ]
            subprocess.run(cmd, check=True)
            outs.append(out)
        for out in outs:
            _check_limits(out)
    unpack(outs, work / "runs")
    return work / "runs"


def _check_limits(out: Path) -> None:
    """What one call sends back must fit the device tool's limits (8 files, 16 MiB each, 64 MiB)."""
    files = [p for p in out.rglob("*") if p.is_file()]
    if len(files) > FILES_BACK or any(p.stat().st_size > 16 * MIB for p in files):
        raise SystemExit(f"{out}: {len(files)} files back, over the device tool's limits")
    if sum(p.stat().st_size for p in files) > 64 * MIB:
        raise SystemExit(f"{out}: over 64 MiB back")


# ------------------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="training/gpu_train.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("pack", help="here: build .gpu/callN folders and .gpu/plan.json")
    p.add_argument("--config", action="append", required=True, help="training config; repeat, in order")
    p.add_argument("--out", default=".gpu", help="pack folder, ignored by git (default .gpu)")
    p.add_argument(
        "--max-minutes", type=float, help="training budget per run there (overrides run.max_minutes)"
    )
    d = sub.add_parser("device", help="there: stage call folders, train, send shards back")
    d.add_argument("--stage", action="append", help="a call folder to stage (repeatable)")
    d.add_argument("--train", default="", help="comma-separated run names to train, in order")
    d.add_argument("--fetch", default="", help="a trained run whose next shards to send back")
    d.add_argument("--from-shard", type=int, default=0)
    d.add_argument("--out", default=os.environ.get("OUT", "out"), help="folder that comes back ($OUT)")
    d.add_argument("--store", default=str(DEVICE_STORE))
    d.add_argument("--device", default="", help="override run.device (cpu for a dry run)")
    d.add_argument("--max-minutes", type=float)
    d.add_argument("--shard-bytes", type=int, default=SHARD_BYTES)
    u = sub.add_parser("unpack", help="here: join the shards into runs/<name>/best.pt")
    u.add_argument("folders", nargs="+", help="the folders each call's files came back in")
    u.add_argument("--runs", default="runs", help="where the run folders go (default runs/)")
    r = sub.add_parser("dry-run", help="here: the whole chain on the CPU")
    r.add_argument("--config", action="append", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--max-minutes", type=float)
    r.add_argument("--call-mib", type=float, default=40.0, help="bytes per call (small: more calls)")
    r.add_argument("--shard-mib", type=float, default=15.0, help="bytes per shard (small: more shards)")
    args = parser.parse_args(argv)
    if args.step == "device":
        return device_main(args)
    if args.step == "pack":
        print(json.dumps(pack(args.config, Path(args.out), max_minutes=args.max_minutes), indent=2))
    elif args.step == "unpack":
        unpack([Path(f) for f in args.folders], Path(args.runs))
    else:
        print(dry_run(args.config, Path(args.work), args.max_minutes, args.call_mib, args.shard_mib))
    return 0


if __name__ == "__main__":
    sys.exit(main())
