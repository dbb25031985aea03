"""Shard-job and read throughput, measured (prints figures; not a test).

1. Write: images/s of ``i2i shard`` (Ray Data, local output) vs ``webdataset.ShardWriter`` in one process doing the
   same decode/validate/resize/PNG-encode work, on the demo edges→photo data.
2. Read from an S3 server on 127.0.0.1 (moto): images/s streaming our shards vs one GET per image object.

    python benchmarks/shard_throughput.py [--tile-size 64] [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def bench_writes(src: str, work: str, load_size: int) -> dict:
    import webdataset as wds

    from pipelines import importers
    from pipelines.shard import ShardConfig, _encode, run_shard, sample_key

    listing = importers.scan(src)
    n = len(listing.files)
    cfg = ShardConfig(source=src, output=f"{work}/ours", load_size=load_size, samples_per_shard=128)
    t0 = time.perf_counter()
    run_shard(cfg)
    ours = time.perf_counter() - t0
    os.makedirs(f"{work}/wds", exist_ok=True)
    t0 = time.perf_counter()
    with wds.ShardWriter(f"{work}/wds/shard-%06d.tar", maxcount=128, verbose=0) as sink:
        for f in listing.files:
            with open(listing.file_uri(f), "rb") as fh:
                sample = _encode(fh.read(), True, cfg)
            sink.write({"__key__": sample_key(f.relpath), **sample})
    single = time.perf_counter() - t0
    return {"images": n, "ours_s": ours, "ours_img_s": n / ours, "shardwriter_s": single,
            "shardwriter_img_s": n / single}


def start_s3():
    """moto on 127.0.0.1, published through the standard AWS_* environment (before Ray starts: workers inherit it)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL_S3=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    return server


def bench_s3_reads(src: str, load_size: int, run: int) -> dict:
    import boto3

    from pipelines import storage
    from pipelines.manifest import read_manifest
    from pipelines.shard import ShardConfig, run_shard

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
    bucket = f"bench{run}"
    s3.create_bucket(Bucket=bucket)
    out = f"s3://{bucket}/shards"
    run_shard(ShardConfig(source=src, output=out, load_size=load_size, samples_per_shard=128))
    m = read_manifest(out)
    keys = []  # the same samples as individual objects (one PNG per image, as a folder-of-files dataset is read)
    for uri in m.shard_uris(out, "train"):
        with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(uri))) as tar:
            for mem in tar.getmembers():
                key = f"files/{mem.name}"
                s3.put_object(Bucket=bucket, Key=key, Body=tar.extractfile(mem).read())
                keys.append(key)
    n_images = len(keys)
    t0 = time.perf_counter()
    got = 0
    for entry in m.splits["train"].shards:
        body = s3.get_object(Bucket=bucket, Key=f"shards/{entry.path}")["Body"]
        with tarfile.open(fileobj=body, mode="r|") as tar:  # streaming: one GET per shard
            for mem in tar:
                got += len(tar.extractfile(mem).read()) > 0
    stream = time.perf_counter() - t0
    t0 = time.perf_counter()
    for key in keys:
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    per_object = time.perf_counter() - t0
    assert got == n_images
    return {"images": n_images, "stream_img_s": n_images / stream, "per_object_img_s": n_images / per_object}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tile-size", type=int, default=64)
    p.add_argument("--max-per-photo", type=int, default=60)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    import ray

    from pipelines.demo_data import build_demo

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as work:
        build_demo(work, tile_size=args.tile_size, max_per_photo=args.max_per_photo)
        src = f"{work}/edges2photo"
        server = start_s3()
        t0 = time.perf_counter()
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        print(f"ray.init: {time.perf_counter() - t0:.1f} s (not counted below)")
        for i in range(args.repeat):
            w = bench_writes(src, f"{work}/run{i}", args.tile_size)
            print(f"write  run {i}: {w['images']} A|B images -> {args.tile_size}px pairs | i2i shard (Ray Data): "
                  f"{w['ours_img_s']:.0f} img/s ({w['ours_s']:.2f} s) | wds.ShardWriter, 1 process: "
                  f"{w['shardwriter_img_s']:.0f} img/s ({w['shardwriter_s']:.2f} s)")
        for i in range(args.repeat):
            r = bench_s3_reads(src, args.tile_size, i)
            print(f"S3 read run {i}: {r['images']} PNGs | streaming shards: {r['stream_img_s']:.0f} img/s | "
                  f"one GET per image: {r['per_object_img_s']:.0f} img/s")
        ray.shutdown()
        server.stop()


if __name__ == "__main__":
    main()
