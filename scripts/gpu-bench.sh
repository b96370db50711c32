#!/usr/bin/env bash
# GPU benchmark (issue 18), one prepared script for a machine with an NVIDIA GPU: builds
# with the `cuda` feature (scripts/setup-cuda.sh: pinned onnxruntime-gpu and CUDA
# libraries from PyPI), then classifies a crops corpus (--faces whole) and a photos corpus
# (--faces detect) on each device, and records per run: wall time, images/s, facebatch's
# busy time per stage, and the GPU's utilisation and memory sampled by nvidia-smi every
# 200 ms. Writes OUT.md and OUT.json (default docs/benchmarks-gpu).
#
#   scripts/gpu-bench.sh                        # cpu and cuda, default sizes
#   DEVICES=cpu CROPS=2000 PHOTOS=50 scripts/gpu-bench.sh /tmp/gpu-dry-run   # no GPU: the flow
#
# On a machine without PyPI, set FACEBATCH_ORT_LIB to an onnxruntime-gpu 1.31 library whose
# CUDA 13 and cuDNN 9 libraries the loader finds; otherwise scripts/setup-cuda.sh fetches
# the pinned wheels. The corpora are hard links cycling over data/samples (faces and photos), so the script
# needs nothing outside the checkout. The question it answers: is GPU inference ever the
# bottleneck, or do decoding and detection on the CPU cores feed it too slowly?
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/benchmarks-gpu}
devices=${DEVICES:-cpu cuda}
crops_n=${CROPS:-20000}
photos_n=${PHOTOS:-600}
batch=${BATCH:-256}
work=.cache/gpu-bench
mkdir -p "$work"

if [[ " $devices " == *" cuda "* ]]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  if [ -n "${FACEBATCH_ORT_LIB:-}" ]; then
    # A GPU build of ONNX Runtime already on the machine (with its CUDA libraries on the
    # loader path): no PyPI needed.
    cargo build --release --locked --features cuda
  else
    scripts/setup-cuda.sh
    # shellcheck disable=SC1091 # written by setup-cuda.sh
    . .cache/cuda-env.sh
  fi
else
  cargo build --release --locked
fi
fb=target/release/facebatch

# Corpora: hard links cycling over the bundled samples (built once per size).
python3 - "$work" "$crops_n" "$photos_n" <<'EOF'
import os, sys
work, crops_n, photos_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def farm(src_dir, dst, n, exts=(".jpg", ".jpeg", ".png")):
    stamp = os.path.join(dst, ".count")
    if os.path.exists(stamp) and open(stamp).read() == str(n):
        return
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(src_dir) for f in fs
                   if f.lower().endswith(exts) and "truncated" not in f)
    os.makedirs(dst, exist_ok=True)
    for i in range(n):
        sub = os.path.join(dst, f"{i // 1000:03d}")
        os.makedirs(sub, exist_ok=True)
        src = files[i % len(files)]
        link = os.path.join(sub, f"{i:06d}{os.path.splitext(src)[1]}")
        if not os.path.exists(link):
            os.link(src, link)
    open(stamp, "w").write(str(n))
farm("data/samples/faces", os.path.join(work, "crops"), crops_n)
farm("data/samples/photos", os.path.join(work, "photos"), photos_n)
EOF

results="$work/results.jsonl"
: > "$results"
for device in $devices; do
  for corpus in crops photos; do
    faces=whole
    [ "$corpus" = photos ] && faces=detect
    smi="$work/smi-$device-$corpus.csv"
    : > "$smi"
    sampler=
    if [ "$device" = cuda ]; then
      nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits \
        -lms 200 > "$smi" &
      sampler=$!
    fi
    start=$(date +%s.%N)
    "$fb" --no-progress -q classify "$work/$corpus" --out "$work/$device-$corpus.parquet" \
      --faces "$faces" --device "$device" --batch-size "$batch" --max-error-rate 1 \
      > "$work/$device-$corpus.txt"
    end=$(date +%s.%N)
    [ -z "$sampler" ] || kill "$sampler" || true
    python3 - "$device" "$corpus" "$start" "$end" "$work/$device-$corpus.txt" "$smi" \
      >> "$results" <<'EOF'
import json, re, sys
device, corpus, start, end, txt, smi = sys.argv[1:]
text = open(txt).read()
images = int(re.search(r"^(\d+) images", text, re.M).group(1))
busy = {}
m = re.search(r"busy time per stage: (.*)", text)
if m:
    busy = {k: float(v.rstrip("s")) for k, v in (p.strip().split(" ") for p in m.group(1).split(","))}
util = [tuple(float(x) for x in line.split(",")) for line in open(smi) if line.strip()]
wall = float(end) - float(start)
print(json.dumps({
    "device": device, "corpus": corpus, "images": images, "wall_s": round(wall, 2),
    "images_per_s": round(images / wall, 1), "busy_s": busy,
    "gpu_util_mean": round(sum(u for u, _ in util) / len(util), 1) if util else None,
    "gpu_util_max": max((u for u, _ in util), default=None),
    "gpu_mem_max_mib": max((m for _, m in util), default=None),
}))
EOF
    tail -1 "$results"
  done
done

python3 - "$results" "$out" "$batch" <<'EOF'
import datetime, json, os, platform, sys
results, out, batch = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(results)]
machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
json.dump({"machine": machine, "batch_size": int(batch), "results": rows},
          open(out + ".json", "w"), indent=2)
lines = [
    "# classify on the GPU", "",
    f"Generated by `scripts/gpu-bench.sh` on {datetime.date.today()} ({machine}), "
    f"`--batch-size {batch}`. Busy times are thread-seconds per stage; GPU utilisation "
    "is nvidia-smi's, sampled every 200 ms.", "",
    "| device | corpus | images | wall s | images/s | busiest stages (s) | GPU util mean / max % | GPU mem max MiB |",
    "|---|---|---:|---:|---:|---|---:|---:|",
]
for r in rows:
    top = sorted(r["busy_s"].items(), key=lambda kv: -kv[1])[:3]
    util = "-" if r["gpu_util_mean"] is None else f"{r['gpu_util_mean']} / {r['gpu_util_max']}"
    mem = "-" if r["gpu_mem_max_mib"] is None else f"{r['gpu_mem_max_mib']:.0f}"
    lines.append(f"| {r['device']} | {r['corpus']} | {r['images']} | {r['wall_s']} | "
                 f"{r['images_per_s']} | " + ", ".join(f"{k} {v:.1f}" for k, v in top) +
                 f" | {util} | {mem} |")
open(out + ".md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
