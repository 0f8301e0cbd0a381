#!/usr/bin/env bash
# For a user's machine without ../shared: download the offline weights from their publishers into
# ${TALKSET_WEIGHTS:-$HOME/.cache/talkset/weights}. Run once, with network. talkset itself never
# downloads at run time.
set -euo pipefail
dest=${TALKSET_WEIGHTS:-$HOME/.cache/talkset/weights}
mkdir -p "$dest"
get() { # url file sha256
  if [ -f "$dest/$2" ]; then echo "have $2"; return; fi
  echo "fetch $2"; curl -fL --retry 3 -o "$dest/$2.part" "$1" && mv "$dest/$2.part" "$dest/$2"
  [ -z "$3" ] || echo "$3  $dest/$2" | sha256sum -c -
}
get https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n-pose.pt yolo11n-pose.pt ""
get https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx face_detection_yunet_2026may.onnx ""
get https://github.com/Junhua-Liao/Light-ASD/raw/main/weight/finetuning_TalkSet.model light-asd_finetuning_TalkSet.model efc375833887eefa9d209dc92810e18519b04c3c73ea35a549f2a7f40b7d94d5
get https://github.com/Junhua-Liao/Light-ASD/raw/main/weight/pretrain_AVA_CVPR.model light-asd_pretrain_AVA_CVPR.model d44bc3ea7baa8e0946fa3921311714a630ed8b90a1928fab0dbe30d918909317
echo "weights in $dest  (export TALKSET_WEIGHTS=$dest)"
