"""Interaction tables: ``turns`` (speaking segments) and ``interactions`` (one row per clip).

The MIT paper describes its clips by interaction pattern -- talking-listening, turn-taking,
over-talking (Sec. 3.2, Fig. 2) -- but gives no rule that finds them. These two DuckDB views do,
from the ``speaking_score`` column of the ``frames`` view (one value per person and frame in
[-1, 1], > 0 speaking; :mod:`talkset.stages.speaking`). :func:`create_views` defines them on a
connection that has ``frames`` and ``clips``; :func:`talkset.storage.catalog.connect` calls it, so
both are queryable in ``talkset sql``::

    talkset sql --root R "SELECT clip_id FROM interactions WHERE turns_per_min >= 3 AND share_2plus >= 0.10"

Views, not written tables (decided for issue 14): a view is a pure function of the committed
``frames`` / ``clips`` rows, so it needs no backfill for roots collected before it existed, can never
be stale or half-written after a crash (the ``frames`` view already hides uncommitted clips), follows
``talkset compact`` or any other re-layout of the shards for free, and takes other thresholds without
rewriting anything (``create_views(con, InteractionConfig(on=0.3))``). The cost is computing it per
query: it reads 4 narrow columns of ``frames`` (no keypoints) and runs window functions over them.

Turns, per person (``clip_id``, ``track_id``), frames in ``frame_idx`` order, a frame without a
face (null score) counts as -1 (silent):

1. hysteresis: a run of consecutive frames with score > ``off`` is a segment when at least one of
   its frames reaches ``on`` (two-threshold connectivity, so a score wobbling around 0 inside a
   sentence does not split it, and a bump that never reaches ``on`` is no speech);
2. bridging: segments of the same person whose gap is <= ``bridge_s`` join into one turn (the
   pause between two phrases of one speaker);
3. minimum length: turns shorter than ``min_turn_s`` are dropped.

``start_s`` = first frame / fps, ``end_s`` = (last frame + 1) / fps (exclusive), ``mean_score`` the
mean speaking score over every frame of the turn (bridged pauses included). A turn is a
``backchannel`` when it lasts <= ``backchannel_max_s`` and lies entirely inside a longer turn of
another person ("mm-hm", "right" while the other speaks).

Interactions, per committed clip (clips without any turn included, with ``pattern`` 'silent'):
``turn_count`` counts turns that are not backchannels; ``switches`` counts consecutive turns
(not backchannels, ordered by start) whose speakers differ, with ``mean_gap_s`` the mean silence
before the next speaker over switches that have one and ``mean_overlap_s`` the mean time both speak
over switches where the next speaker starts before the previous one ends. ``share_0`` /
``share_1`` / ``share_2plus``: share of the clip's frames in which 0, 1, 2 or more people are
inside a turn (backchannels included). ``longest_monologue_s``: the longest turn (a listener's
backchannel does not interrupt it). ``main_speaker_share``: the top speaker's share of all turn
time. The pattern rule, applied in order::

    no turn at all                                          -> 'silent'
    share_2plus / (share_1 + share_2plus) >= overtalk_share -> 'over-talking'
    speakers <= 1 or main_speaker_share >= listening_share  -> 'talking-listening'
    otherwise                                               -> 'turn-taking'

i.e. over-talking when at least ``overtalk_share`` (0.2) of the speech time has two or more
voices, talking-listening when one person does >= ``listening_share`` (0.8) of the talking, and
turn-taking when several people hold the floor by turns.

Defaults, checked on the blackjournal demo clip (61.6 s, 25 fps; tests/test_interactions.py): the
guest's 50 s of frames > 0 become 14 turns of 0.6-9.7 s (mean score 0.76-0.93; pauses between his
sentences of 0.32 s and more stay gaps), the interviewer seen from behind gets one 3.8 s turn inside
the guest's (his only frames > 0, mean score 0.21): 15 turns, 14.6 per minute, 2 switches (gap
0.56 s, overlap 3.8 s), 6.2 % of frames with two voices, the guest 93 % of the talking ->
talking-listening.

Cost (``benchmarks/interactions_scale.py``, 3.24 M synthetic ``frames`` rows = MIT's size, one
Parquet file, DuckDB 2 threads, 2-core VM shared with other jobs, load ~2, 2026-12-07): every turn
1.1 s, the issue's ``interactions`` query 0.77 s, patterns per clip 0.62 s, a plain ``frames``
aggregate 0.06 s (at load 20-40: 1.0-5 s); ``interactions`` reads ``turns`` once (``MATERIALIZED``): without it, 0.93 s instead of
0.16 s at 300 k rows.

Plan (issue 14, last part): islands are found among the frames above ``off`` only (``frame_idx -
row_number()``, one window over those rows) and a turn's mean score by a hash join of the turns with
its person's frame rows, instead of three running windows (two sums and a row number) over every
frame; the join reuses the ``s`` rows, so ``frames`` is bound once less per view. Same rows, same
mean scores (compared on the blackjournal root and the 3.24 M-row root of
``benchmarks/duckdb_scale.py``, max difference 0.0); process CPU time on that compacted root (29 %
of its frames above 0; 2-core VM shared with other jobs, load ~2.4): all of ``turns`` 0.61-0.69 s
instead of 1.76-1.79 s, ``interactions`` 0.74-0.80 s instead of 1.33-1.39 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from talkset.config import Config


@dataclass
class InteractionConfig(Config):
    """Thresholds of the ``turns`` / ``interactions`` views (module docstring for the rules).

    Scores are ``speaking_score`` values in [-1, 1]; times in seconds of the clip.
    """

    on: float = 0.2  #: a segment must reach this score somewhere to be speech
    off: float = 0.0  #: frames with score > off continue a segment (off <= on)
    bridge_s: float = 0.3  #: same-person segments closer than this join into one turn
    min_turn_s: float = 0.2  #: shorter turns are dropped
    backchannel_max_s: float = 1.0  #: a turn this short inside another person's longer turn is a backchannel
    overtalk_share: float = 0.2  #: share of speech time with >= 2 voices that makes a clip over-talking
    listening_share: float = 0.8  #: the main speaker's share of turn time that makes it talking-listening

    def validate(self) -> InteractionConfig:
        """Raise ``ValueError`` for thresholds that cannot define turns; returns ``self``."""
        for name in ("on", "off", "bridge_s", "min_turn_s", "backchannel_max_s", "overtalk_share", "listening_share"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"InteractionConfig.{name} must be a finite number (got {v!r})")
        if not -1.0 <= self.off <= self.on <= 1.0:
            raise ValueError(f"InteractionConfig needs -1 <= off <= on <= 1 (got off={self.off}, on={self.on})")
        if min(self.bridge_s, self.min_turn_s, self.backchannel_max_s) < 0:
            raise ValueError("InteractionConfig: bridge_s, min_turn_s and backchannel_max_s must be >= 0")
        if not (0 < self.overtalk_share <= 1 and 0 < self.listening_share <= 1):
            raise ValueError("InteractionConfig: overtalk_share and listening_share must be in (0, 1]")
        return self


#: columns of the ``turns`` view, in order
TURNS_COLUMNS = (
    "clip_id", "source", "track_id", "turn_idx", "start_frame", "end_frame", "start_s", "end_s", "duration_s",
    "mean_score", "backchannel",
)
#: columns of the ``interactions`` view, in order
INTERACTIONS_COLUMNS = (
    "clip_id", "source", "duration_s", "people", "speakers", "turn_count", "turns_per_min", "switches",
    "mean_gap_s", "mean_overlap_s", "share_0", "share_1", "share_2plus", "longest_monologue_s", "backchannels",
    "main_speaker", "main_speaker_share", "pattern",
)
PATTERNS = ("talking-listening", "turn-taking", "over-talking", "silent")


def _num(x: float) -> str:
    return repr(float(x))


def turns_sql(cfg: InteractionConfig | None = None) -> str:
    """The ``turns`` view's query over the ``frames`` and ``clips`` relations.

    One row per turn: clip_id, source, track_id, turn_idx (0.. in start order within the clip),
    start_frame / end_frame (clip frame indices, end exclusive), start_s / end_s / duration_s
    (seconds, from ``clips.fps``), mean_score (float64 in [-1, 1]), backchannel (bool).
    """
    c = (cfg or InteractionConfig()).validate()
    return f"""
WITH s AS (
    SELECT f.clip_id, c.source, f.track_id, f.frame_idx, c.fps::DOUBLE AS fps,
           coalesce(f.speaking_score, -1.0)::DOUBLE AS score
    FROM frames f JOIN clips c ON c.clip_id = f.clip_id
    WHERE c.fps > 0
), w AS (
    -- frames above off only: frame_idx - rank is constant along a run of consecutive frame indices and
    -- different between runs (a frame at or below off, or a missing frame row, ends a run)
    SELECT *, frame_idx - row_number() OVER (PARTITION BY clip_id, track_id ORDER BY frame_idx) AS island
    FROM s WHERE score > {_num(c.off)}
), seg AS (
    SELECT clip_id, any_value(source) AS source, track_id, any_value(fps) AS fps,
           min(frame_idx) AS f0, max(frame_idx) + 1 AS f1
    FROM w
    GROUP BY clip_id, track_id, island
    HAVING max(score) >= {_num(c.on)}
), br AS (
    SELECT *, sum(CASE WHEN prev_f1 IS NULL OR (f0 - prev_f1) / fps > {_num(c.bridge_s)} + 1e-9 THEN 1 ELSE 0 END)
                  OVER (PARTITION BY clip_id, track_id ORDER BY f0) AS turn_no
    FROM (SELECT *, lag(f1) OVER (PARTITION BY clip_id, track_id ORDER BY f0) AS prev_f1 FROM seg)
), t AS (
    SELECT clip_id, any_value(source) AS source, track_id, any_value(fps) AS fps,
           min(f0) AS start_frame, max(f1) AS end_frame
    FROM br GROUP BY clip_id, track_id, turn_no
    HAVING (max(f1) - min(f0)) / any_value(fps) >= {_num(c.min_turn_s)} - 1e-9
), k AS MATERIALIZED (
    -- mean score over every frame row of the turn (bridged pauses included): a hash join on the
    -- person, ~1.3 turns per person, instead of running sums over every frame (module docstring)
    SELECT t.clip_id, any_value(t.source) AS source, t.track_id, any_value(t.fps) AS fps, t.start_frame, t.end_frame,
           fsum(f.score) / count(*) AS mean_score,
           t.start_frame / any_value(t.fps) AS start_s, t.end_frame / any_value(t.fps) AS end_s,
           (t.end_frame - t.start_frame) / any_value(t.fps) AS duration_s
    FROM t JOIN s AS f ON f.clip_id = t.clip_id AND f.track_id = t.track_id
                        AND f.frame_idx >= t.start_frame AND f.frame_idx < t.end_frame
    GROUP BY t.clip_id, t.track_id, t.start_frame, t.end_frame
)
SELECT k.clip_id, k.source, k.track_id,
       (row_number() OVER (PARTITION BY k.clip_id ORDER BY k.start_frame, k.track_id) - 1)::INTEGER AS turn_idx,
       k.start_frame::INTEGER AS start_frame, k.end_frame::INTEGER AS end_frame,
       k.start_s, k.end_s, k.duration_s, k.mean_score,
       (k.duration_s <= {_num(c.backchannel_max_s)} + 1e-9 AND EXISTS (
           SELECT 1 FROM k AS o
           WHERE o.clip_id = k.clip_id AND o.track_id <> k.track_id AND o.start_frame <= k.start_frame
             AND o.end_frame >= k.end_frame AND o.end_frame - o.start_frame > k.end_frame - k.start_frame
       )) AS backchannel
FROM k
"""


def interactions_sql(cfg: InteractionConfig | None = None) -> str:
    """The ``interactions`` view's query over ``turns``, ``frames`` and ``clips``.

    One row per committed clip: clip_id, source, duration_s, people (person tracks in ``frames``),
    speakers (people with a turn that is not a backchannel), turn_count, turns_per_min, switches,
    mean_gap_s / mean_overlap_s (seconds, null without such switches), share_0 / share_1 / share_2plus
    (shares of the clip's frames, sum 1), longest_monologue_s, backchannels, main_speaker (track_id),
    main_speaker_share, pattern (one of :data:`PATTERNS`; rule in the module docstring).
    """
    c = (cfg or InteractionConfig()).validate()
    return f"""
WITH tu AS MATERIALIZED (  -- the turns view computed once, not once per reference
    SELECT clip_id, track_id, start_frame, end_frame, duration_s, backchannel FROM turns
), cl AS (
    SELECT clip_id, source, duration_s, num_frames, fps::DOUBLE AS fps FROM clips
), ppl AS (
    SELECT clip_id, count(DISTINCT track_id) AS people FROM frames GROUP BY clip_id
), tk AS (
    SELECT clip_id,
           count(DISTINCT track_id) FILTER (WHERE NOT backchannel) AS speakers,
           count(*) FILTER (WHERE NOT backchannel) AS turn_count,
           count(*) FILTER (WHERE backchannel) AS backchannels,
           max(duration_s) FILTER (WHERE NOT backchannel) AS longest_monologue_s
    FROM tu GROUP BY clip_id
), per_track AS (
    SELECT clip_id, track_id, sum(duration_s) AS talk_s FROM tu GROUP BY clip_id, track_id
), main AS (
    SELECT clip_id, arg_max(track_id, talk_s) AS main_speaker, max(talk_s) / sum(talk_s) AS main_speaker_share
    FROM per_track GROUP BY clip_id
), seq AS (
    SELECT clip_id, track_id, start_frame, end_frame,
           lag(track_id) OVER o AS prev_track, lag(end_frame) OVER o AS prev_end
    FROM tu WHERE NOT backchannel
    WINDOW o AS (PARTITION BY clip_id ORDER BY start_frame, end_frame, track_id)
), sw AS (
    SELECT s.clip_id, count(*) AS switches,
           avg((s.start_frame - s.prev_end) / cl.fps) FILTER (WHERE s.start_frame > s.prev_end) AS mean_gap_s,
           avg((least(s.prev_end, s.end_frame) - s.start_frame) / cl.fps)
               FILTER (WHERE s.start_frame < s.prev_end) AS mean_overlap_s
    FROM seq s JOIN cl USING (clip_id)
    WHERE s.prev_track IS NOT NULL AND s.prev_track <> s.track_id
    GROUP BY s.clip_id
), ev AS (
    -- sweep line over turn boundaries: how many people are inside a turn between two events
    SELECT clip_id, f, sum(d) AS d FROM (
        SELECT clip_id, start_frame AS f, 1 AS d FROM tu
        UNION ALL SELECT clip_id, end_frame AS f, -1 AS d FROM tu
    ) GROUP BY clip_id, f
), run AS (
    SELECT clip_id, sum(d) OVER o AS n, lead(f) OVER o - f AS len
    FROM ev WINDOW o AS (PARTITION BY clip_id ORDER BY f)
), occ AS (
    SELECT clip_id, coalesce(sum(len) FILTER (WHERE n = 1), 0) AS f_1,
           coalesce(sum(len) FILTER (WHERE n >= 2), 0) AS f_2
    FROM run WHERE len IS NOT NULL GROUP BY clip_id
), j AS (
    SELECT cl.clip_id, cl.source, cl.duration_s, coalesce(ppl.people, 0)::INTEGER AS people,
           coalesce(tk.speakers, 0)::INTEGER AS speakers, coalesce(tk.turn_count, 0)::INTEGER AS turn_count,
           CASE WHEN cl.duration_s > 0 THEN coalesce(tk.turn_count, 0) * 60.0 / cl.duration_s END AS turns_per_min,
           coalesce(sw.switches, 0)::INTEGER AS switches, sw.mean_gap_s, sw.mean_overlap_s,
           coalesce(occ.f_1, 0) / greatest(cl.num_frames, 1) AS share_1,
           coalesce(occ.f_2, 0) / greatest(cl.num_frames, 1) AS share_2plus,
           tk.longest_monologue_s, coalesce(tk.backchannels, 0)::INTEGER AS backchannels,
           main.main_speaker, main.main_speaker_share
    FROM cl LEFT JOIN ppl USING (clip_id) LEFT JOIN tk USING (clip_id) LEFT JOIN main USING (clip_id)
            LEFT JOIN sw USING (clip_id) LEFT JOIN occ USING (clip_id)
)
SELECT clip_id, source, duration_s, people, speakers, turn_count, turns_per_min, switches, mean_gap_s,
       mean_overlap_s, greatest(1.0 - share_1 - share_2plus, 0.0) AS share_0, share_1, share_2plus,
       longest_monologue_s, backchannels, main_speaker, main_speaker_share,
       CASE WHEN main_speaker IS NULL THEN 'silent'
            WHEN share_2plus >= {_num(c.overtalk_share)} * (share_1 + share_2plus) THEN 'over-talking'
            WHEN speakers <= 1 OR main_speaker_share >= {_num(c.listening_share)} THEN 'talking-listening'
            ELSE 'turn-taking' END AS pattern
FROM j
"""


def create_views(con, cfg: InteractionConfig | None = None) -> None:
    """Create or replace the ``turns`` and ``interactions`` views on the DuckDB connection ``con``.

    ``con`` must already have relations named ``frames`` (``clip_id``, ``track_id``, ``frame_idx``,
    ``speaking_score``) and ``clips`` (``clip_id``, ``source``, ``fps``, ``num_frames``, ``duration_s``),
    as :func:`talkset.storage.catalog.connect` makes them. Raises ``ValueError`` for a bad ``cfg``.
    """
    con.execute(f"CREATE OR REPLACE VIEW turns AS {turns_sql(cfg)}")
    con.execute(f"CREATE OR REPLACE VIEW interactions AS {interactions_sql(cfg)}")
