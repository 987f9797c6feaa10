#!/usr/bin/env bash
# One command for a local GPU run with nvidia-docker: build the image, start PostgreSQL and
# SeaweedFS (S3), upload a video, run the worker on it once, and show the events it wrote.
#
#   scripts/local-run.sh [VIDEO_FILE] [VIDEO_ID]
#
# VIDEO_FILE defaults to ../shared/media/short_hamilton_clip.mp4 next to the checkout (or
# $ANALYZER_SHARED_DIR/media/...), VIDEO_ID to 1. Needs Docker with Compose v2 and the NVIDIA
# Container Toolkit. Weights: weights/ is used when it holds files; otherwise they are copied from
# $ANALYZER_SHARED_DIR/models when that exists, else the image downloads them (WEIGHTS_SOURCE=upstream);
# either way their sha256 is checked.
# Run it twice with the same VIDEO_ID: the second run is skipped as already done (exit 0).
# Stop everything with: docker compose --profile worker down   (-v also drops the data)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
shared="${ANALYZER_SHARED_DIR:-$repo/../shared}"
video="${1:-$shared/media/short_hamilton_clip.mp4}"
video_id="${2:-1}"
weight_files=(retinaface_mobilenet0.25.pth yunet_n.pth insightface_genderage_2018.pth)

if [[ ! -f "$video" ]]; then
  echo "usage: $0 [VIDEO_FILE] [VIDEO_ID]   (no video at $video)" >&2
  exit 2
fi
if [[ ! "$video_id" =~ ^[1-9][0-9]*$ ]]; then
  echo "VIDEO_ID must be a positive integer, got '$video_id'" >&2
  exit 2
fi
video="$(realpath "$video")"
compose=(docker compose --profile worker)

echo "== weights"
mkdir -p weights
if [[ -n "$(ls -A weights)" ]]; then
  export WEIGHTS_SOURCE=context
  echo "using weights/: $(find weights -maxdepth 1 -type f -printf '%f ')"
elif [[ -d "$shared/models" ]]; then
  export WEIGHTS_SOURCE=context
  for name in "${weight_files[@]}"; do
    cp "$shared/models/$name" weights/
  done
  echo "copied ${weight_files[*]} from $shared/models into weights/"
else
  export WEIGHTS_SOURCE=upstream
  echo "weights/ is empty: the image build downloads the weights"
fi

echo "== build the GPU image and start PostgreSQL and S3"
"${compose[@]}" build worker
"${compose[@]}" up -d --wait postgres s3

key="videos/$(date -u +%Y/%m/%d)/$(date -u +%H%M%S)-${RANDOM}${RANDOM}_$(basename "$video")"
echo "== upload $video as s3://videos-local/$key"
"${compose[@]}" run --rm --no-deps --entrypoint /opt/venv/bin/python \
  -v "$video:/input/video:ro" worker \
  -c 'import os, sys, boto3
boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"]).upload_file(
    "/input/video", os.environ["S3_BUCKET"], sys.argv[1])' "$key"

echo "== register video $video_id in the videos table"
"${compose[@]}" exec -T postgres psql -v ON_ERROR_STOP=1 -q -U analyzer -d analyzer \
  -v id="$video_id" -v key="$key" <<'SQL'
CREATE TABLE IF NOT EXISTS videos (id bigint PRIMARY KEY, s3_key text NOT NULL);
INSERT INTO videos (id, s3_key) VALUES (:id, :'key')
  ON CONFLICT (id) DO UPDATE SET s3_key = EXCLUDED.s3_key;
SQL

echo "== run the worker on video $video_id"
status=0
"${compose[@]}" run --rm -e VideoKey="$key" -e video_id="$video_id" worker || status=$?
echo "worker exit code: $status (table in README: exit codes)"

echo "== events of video $video_id"
"${compose[@]}" exec -T postgres psql -U analyzer -d analyzer -c "
  SELECT start_ms, end_ms, gender, round(gender_score::numeric, 1) AS gender_score, age,
         round(det_score::numeric, 3) AS det_score, face_count, box_x, box_y, box_w, box_h
  FROM events WHERE video_id = ${video_id} ORDER BY start_ms, event_key"
exit "$status"
