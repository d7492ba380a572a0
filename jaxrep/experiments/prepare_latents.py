"""Encode an image dataset into sharded SD-VAE latents: `python -m train.prepare_latents
--config=configs/prepare_latents.py:imagenet256 --config.data_dir=IMAGES --config.vae.path=VAE --workdir=OUT`.

REPA's `preprocessing/` in JAX, on every device of every process:
1. List the images (`jaxrep.data.images.list_images`: class folders or dataset.json), sorted, and cut the list into
   shards of `records_per_shard`; process p prepares shards p, p + P, p + 2P, ... (disjoint, together complete).
2. For each shard: read, ADM-centre-crop and PNG/JPEG-encode the images on `read_threads` threads, encode batches
   with the Flax SD-VAE split over the process's local devices, and write (mean, std, label, image bytes) records to
   `shard-*.array_record` (`jaxrep.data.latent_records`). A shard is written under a temporary name and renamed
   when complete, then its `shard-*.json` (count, size, SHA-256, skipped images) is written: a killed preparation
   redoes only unfinished shards, so no record is duplicated or missing.
3. When every process is done, process 0 writes `manifest.json`.
An unreadable image stops the run with one line naming it (`on_error='stop'`) or is skipped with a warning and
listed in its shard's json (`on_error='skip'`). `plan.json` pins the settings: resuming with others is refused.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import sys
import tempfile
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from configs import prepare_latents as prepare_configs
from jaxrep import files, parallel
from jaxrep.data.images import ImageReadError, center_crop_adm, encode_image, list_images, read_rgb
from jaxrep.data.latent_records import FORMAT, MANIFEST, DatasetError, encode_record, shard_info_name, shard_name
from jaxrep.run.logging import progress_bar
from jaxrep.run.workdir_lock import locks_workdir
from jaxrep.weights import hub
from jaxrep.weights.autoencoder_kl import HUB_FILES, load_autoencoder_kl

# Errors that mean bad input or a run that cannot go on (the command line prints them as one line).
EXPECTED_ERRORS = (DatasetError, ImageReadError)


def vae_weights_file(path: str) -> str:
    return path if files.path(path).is_file() else files.join(path, "diffusion_pytorch_model.safetensors")


def make_plan(config, entries, classes) -> dict:
    """The settings a resumed preparation must share with the first attempt."""
    listing = hashlib.sha256("\n".join(f"{e.path}\t{e.label}" for e in entries).encode()).hexdigest()
    return {"format": FORMAT, "num_images": len(entries), "listing_sha256": listing, "classes": classes,
            "image_size": config.image_size, "image_format": config.image_format,
            "records_per_shard": config.records_per_shard, "vae_sha256": files.file_sha256(vae_weights_file(config.vae.path))}


def check_plan(output_dir: str, plan: dict) -> None:
    path = files.join(output_dir, "plan.json")
    if files.path(path).is_file():
        previous = json.loads(files.path(path).read_text())
        changed = [name for name in plan if previous.get(name) != plan[name]]
        if changed:
            raise DatasetError(f"workdir: {output_dir!r} holds a preparation with other settings ({', '.join(changed)} "
                               "differ); use a new directory")
    elif jax.process_index() == 0:
        files.write_json_atomic(path, plan)


def shard_done(output_dir: str, index: int, num_shards: int) -> bool:
    info_path = files.join(output_dir, shard_info_name(index))
    path = files.join(output_dir, shard_name(index, num_shards))
    if not (files.path(info_path).is_file() and files.path(path).is_file()):
        return False
    return json.loads(files.path(info_path).read_text())["bytes"] == files.file_size(path)


def make_encoder(vae_path: str, dtype: str, mesh):
    """encode(uint8 images (B, H, W, 3)) -> (mean, std) NumPy (B, h, w, c), batch split over `mesh`."""
    model, params = load_autoencoder_kl(vae_path, dtype=jnp.dtype(dtype))
    params = jax.device_put(params, parallel.replicated_sharding(mesh))
    batch_sharding = parallel.batch_sharding(mesh)

    @functools.partial(jax.jit, out_shardings=batch_sharding)
    def encode(params, images):
        return model.apply(params, images.astype(jnp.float32) / 127.5 - 1.0, method="encode")

    return lambda images: jax.device_get(encode(params, jax.device_put(images, batch_sharding)))


def load_cropped(root: str, entry, image_size: int, image_format: str):
    """((cropped uint8 image, its encoded bytes), None) or (None, ImageReadError) for one listed image."""
    try:
        crop = center_crop_adm(read_rgb(files.join(root, entry.path)), image_size)
        return (crop, encode_image(crop, image_format)), None
    except ImageReadError as error:
        return None, error


def write_shard(config, output_dir, index, num_shards, entries, encode, pool, bar,
                after_batch: Callable[[], None]) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter

    path = files.join(output_dir, shard_name(index, num_shards))
    # ArrayRecord writes local files: the shard is written here, then moved or uploaded whole.
    temporary = (f"{path}.tmp" if files.is_local(path)
                 else os.path.join(tempfile.gettempdir(), f"jaxrep-{os.getpid()}-{shard_name(index, num_shards)}"))
    writer = ArrayRecordWriter(temporary, "group_size:1")
    count, skipped, latent_shape = 0, [], None
    loaded = pool.map(lambda entry: load_cropped(config.data_dir, entry, config.image_size, config.image_format),
                      entries)
    for start in range(0, len(entries), config.batch_size):
        batch_entries = entries[start:start + config.batch_size]
        images, labels = [], []
        for entry, (image, error) in zip(batch_entries, [next(loaded) for _ in batch_entries]):
            if error is not None:
                if config.on_error == "stop":
                    writer.close()
                    raise error
                print(f"warning: skipping {error}", file=sys.stderr, flush=True)
                skipped.append(entry.path)
                continue
            images.append(image)
            labels.append(entry.label)
        bar.update(len(batch_entries))
        if not images:
            continue
        padded = np.zeros((config.batch_size, *images[0][0].shape), np.uint8)  # one compiled shape
        padded[:len(images)] = np.stack([crop for crop, _ in images])
        mean, std = encode(padded)
        latent_shape = list(mean.shape[1:])
        for i, ((_, image_bytes), label) in enumerate(zip(images, labels)):
            writer.write(encode_record(mean[i], std[i], label, image_bytes))
        count += len(images)
        after_batch()
    writer.close()
    info = {"file": shard_name(index, num_shards), "count": count, "bytes": os.path.getsize(temporary),
            "sha256": files.file_sha256(temporary), "skipped": skipped, "latent_shape": latent_shape}
    files.publish(temporary, path)
    files.write_json_atomic(files.join(output_dir, shard_info_name(index)), info)


def write_manifest(output_dir: str, plan: dict, num_shards: int, vae_path: str) -> dict:
    shards = []
    for index in range(num_shards):
        info_path = files.join(output_dir, shard_info_name(index))
        if not shard_done(output_dir, index, num_shards):
            raise DatasetError(f"{info_path}: shard {index} is unfinished (did a process fail?); rerun to complete it")
        shards.append(json.loads(files.path(info_path).read_text()))
    latent_shape = next((s["latent_shape"] for s in shards if s["latent_shape"]), None)
    manifest = {**{k: plan[k] for k in ("format", "classes", "image_size", "image_format", "records_per_shard")},
                "num_images": plan["num_images"], "num_records": sum(s["count"] for s in shards),
                "num_skipped": sum(len(s["skipped"]) for s in shards),
                "num_classes": len(plan["classes"]) or None, "latent_shape": latent_shape,
                "vae": {"path": str(files.path(vae_path)), "sha256": plan["vae_sha256"]},
                "shards": [{k: s[k] for k in ("file", "count", "bytes", "sha256", "skipped")} for s in shards]}
    files.write_json_atomic(files.join(output_dir, MANIFEST), manifest)
    return manifest


@locks_workdir
def prepare(config, output_dir: str, *, after_batch: Callable[[], None] = lambda: None) -> dict:
    """Runs (or resumes) the preparation; returns {"written": the shard indices this process wrote in this call,
    "manifest": the manifest on process 0, None elsewhere}. `after_batch()` is called after each encoded batch
    (e.g. to report progress elsewhere, or to stop the process at a chosen point)."""
    local_devices = jax.local_devices()
    prepare_configs.validate(config, num_local_devices=len(local_devices))
    config = config.copy_and_resolve_references()
    config.vae.path = hub.resolve(config.vae.path, field="vae.path", files=HUB_FILES)  # hashed into the plan
    entries, classes = list_images(config.data_dir, config.labels_path)
    entries = entries[:config.max_images] if config.max_images else entries
    files.path(output_dir).mkdir(parents=True, exist_ok=True)
    plan = make_plan(config, entries, classes)
    check_plan(output_dir, plan)
    num_shards = -(-len(entries) // config.records_per_shard)
    process, processes = jax.process_index(), jax.process_count()
    todo = [s for s in range(process, num_shards, processes) if not shard_done(output_dir, s, num_shards)]
    shard_entries = {s: entries[s * config.records_per_shard:(s + 1) * config.records_per_shard] for s in todo}
    if todo:
        encode = make_encoder(config.vae.path, config.vae.dtype, parallel.make_mesh(local_devices))
        bar = progress_bar(sum(map(len, shard_entries.values())), desc=f"encode (process {process})", unit="img",
                           show=config.show_progress and process == 0)
        try:
            with concurrent.futures.ThreadPoolExecutor(config.read_threads) as pool:
                for index in todo:
                    write_shard(config, output_dir, index, num_shards, shard_entries[index], encode, pool, bar,
                                after_batch)
        finally:
            bar.close()
    print(f"process {process} of {processes}: wrote shards {todo} of {num_shards}", flush=True)
    parallel.barrier("jaxrep_prepare_latents_done")
    if process != 0:
        return {"written": todo, "manifest": None}
    manifest = write_manifest(output_dir, plan, num_shards, config.vae.path)
    print(f"prepared {manifest['num_records']} records in {num_shards} shards ({manifest['num_skipped']} skipped) "
          f"in {output_dir}", flush=True)
    return {"written": todo, "manifest": manifest}
