#!/usr/bin/env bash
# One command: install, then run `talkset collect` on the bundled real clip and query the result.
# With ../shared beside the checkout (CI, the team's machines) the clip and weights come from there;
# on a user's machine the clip is fetched from its public source by the download stage, and the
# weights by scripts/fetch_weights.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
ROOT=${ROOT:-demo-root}
CLIP=../shared/data/clips/dvscripts_blackjournal.mp4
URL=https://github.com/distant-viewing/dvscripts/raw/3c567f7627aaaa7c4fde145e0657c4f3a3710d98/video/blackjournal.mp4
if [ -f "$CLIP" ]; then SRC=$CLIP; export TALKSET_WEIGHTS=${TALKSET_WEIGHTS:-$(cd ../shared/weights && pwd)};
else SRC=$URL; export TALKSET_WEIGHTS=${TALKSET_WEIGHTS:-$HOME/.cache/talkset/weights}; bash scripts/fetch_weights.sh; fi
.venv/bin/talkset collect "$SRC" --root "$ROOT" "$@"
for q in \
  "SELECT source, shot_idx, round(start_s,3) AS start_s, round(end_s,3) AS end_s, kept, reason FROM shots ORDER BY source, shot_idx" \
  "SELECT clip_id, round(end_s-start_s,2) AS seconds, num_people, num_frames, width, height FROM clips" \
  "SELECT clip_id, track_id, count(*) AS frames, round(avg(box[3]-box[1]),1) AS mean_box_w, round(avg(speaking_score),3) AS mean_speaking FROM frames GROUP BY ALL ORDER BY ALL"; do
  echo "\$ talkset sql \"$q\""; .venv/bin/talkset sql --root "$ROOT" "$q"; done
