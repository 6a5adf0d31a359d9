"""The built-in demo dataset: procedurally generated, music-like audio with honest labels.

Every track has a key and mode, a tempo, one to three synthesized instruments from a palette and
optional drums; a melody, chords and/or a bass line are played from the key's scale. A hidden
"style" sets the odds of each choice (a march is likely fast, major, brassy, with drums), so style
is a real multi-class task and the tags are multi-label facts about the audio. Each track is then
"recorded" its own way (EQ, room, saturation, noise floor, level, polarity: ssl_min/data/production.py),
drawn apart from the music, as the tracks of a real collection differ:

    tags:  plucked piano organ brass flute bell bass drums fast slow major minor high low
    style: ballad march dance chamber

    python -m ssl_min.demo data/demo      (make pretrain / make probe do this on first use)

writes, at 8 kHz mono wav (deterministic for a seed):
    data/demo/unlabeled/*.wav                     the pretraining pool (no labels)
    data/demo/{train,valid,test}/annotations.csv  the DL101 tutorial's layout: mp3_path + 0/1 tags
    data/demo/style/{train,valid,test}/annotations.csv   path + label (multi-class)
"""
import argparse
import csv
import json
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import soundfile as sf

from ssl_min.data.decode import worker_count
from ssl_min.data.production import produce

SR = 8000
INSTRUMENTS = ["plucked", "piano", "organ", "brass", "flute", "bell", "bass"]
TAGS = INSTRUMENTS + ["drums", "fast", "slow", "major", "minor", "high", "low"]
# style -> odds: instrument weights, P(drums), P(fast), P(major), P(high register)
STYLES = {
    "ballad":  ([3, 4, 1, 0.3, 2, 1, 1], 0.25, 0.15, 0.4, 0.5),
    "march":   ([0.3, 0.5, 1, 4, 1.5, 0.5, 1], 0.9, 0.8, 0.85, 0.5),
    "dance":   ([1, 1, 3, 1, 0.5, 1.5, 4], 0.95, 0.75, 0.5, 0.5),
    "chamber": ([3, 1.5, 1, 1, 3, 2, 0.3], 0.1, 0.4, 0.6, 0.5),
}
# The validation split is as large as the test split: the probe's L2 and readout, and the demo
# preset itself, are chosen on it, so it should be no noisier than what it is chosen for.
SPLITS = {"unlabeled": 1000, "train": 240, "valid": 160, "test": 160}
SECONDS = 8.0


def midi_hz(m):
    return 440.0 * 2 ** ((m - 69) / 12)


def recipe(instrument, f0):
    """An instrument's partials: (frequency ratios, amplitudes, decay rates), only those that sound
    (amplitude above 0, below Nyquist with a margin)."""
    if instrument == "bell":
        ratios, amps, decays = [1, 2.76, 5.4, 8.93], [1, 0.6, 0.4, 0.25], [1.2, 2.5, 4, 6]
    else:
        k = np.arange(1, 13)
        ratios = k * (1 + (0.0008 * k ** 2 if instrument == "piano" else 0))
        amps = {"plucked": 1 / k ** 1.2, "piano": 1 / k ** 1.6, "organ": np.isin(k, [1, 2, 3, 4, 6, 8]) * 0.8,
                "brass": 1 / k ** 0.8, "flute": np.where(k == 1, 1, 0.08 / k), "bass": np.where(k <= 3, 1 / k ** 2, 0)}[instrument]
        decays = {"plucked": 2.5 + 1.2 * k, "piano": 1.5 + 0.8 * k, "bass": 3 + 2 * k}.get(instrument, np.zeros(12))
    return [(r, a, d) for r, a, d in zip(ratios, amps, decays) if a != 0 and f0 * r <= SR / 2 - 200]


def draw_note(instrument, f0, dur, rng):
    """The random part of one note: a phase per sounding partial and, for a flute, its breath."""
    n = int(dur * SR)
    phases = [rng.uniform(0, 2 * np.pi) for _ in recipe(instrument, f0)]
    breath = rng.standard_normal(n) if instrument == "flute" else None
    return {"instrument": instrument, "f0": f0, "dur": dur, "phases": phases, "breath": breath}


def partials(instrument, f0, dur, phases, breath=None):
    """One note: (samples,) float64. Each instrument is a recipe of partials and an envelope."""
    n = int(dur * SR)
    t = np.arange(n) / SR
    vibrato = 1 + (0.004 * np.sin(2 * np.pi * 5.5 * t) if instrument in ("flute", "brass") else 0)
    phase = 2 * np.pi * f0 * np.cumsum(vibrato) / SR
    x = np.zeros(n)
    for (r, a, d), p in zip(recipe(instrument, f0), phases):
        x += a * np.sin(r * phase + p) * np.exp(-d * t)
    attack = {"brass": 0.06, "flute": 0.08, "organ": 0.01}.get(instrument, 0.003)
    env = np.minimum(1, t / attack) * np.minimum(1, (dur - t) / 0.02).clip(0)
    if instrument == "flute":
        x += 0.05 * breath * np.exp(-8 * t)
    if instrument == "brass":
        env *= 0.8 + 0.2 * np.minimum(1, t / 0.15)
    return x * env / max(1e-9, np.abs(x).max(initial=0.0))


def drums(n_samples, beat, snare_noise, hat_noise):
    """Kick on beats 1 and 3, snare on 2 and 4, hi-hat on eighths. The noises: (0.25 s,) and one more."""
    out = np.zeros(n_samples)
    t = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-30 * t)) * t) * np.exp(-12 * t)
    snare = (0.6 * snare_noise + 0.4 * np.sin(2 * np.pi * 190 * t)) * np.exp(-20 * t)
    hat = np.diff(hat_noise) * np.exp(-60 * t) * 0.3
    i = 0
    while (start := int(i * beat / 2 * SR)) < n_samples:
        for sound, on in ((kick, i % 4 == 0), (snare, i % 4 == 2), (hat, True)):
            if on:
                end = min(n_samples, start + len(sound))
                out[start:end] += sound[:end - start]
        i += 1
    return out


def draw_score(rng):
    """Every random choice of one track, in order -> (score, tags, style). The score is what
    `render` needs: for each instrument its notes ([start sample, [chord notes]]) and gain, and
    the drums' beat, noises and gain. Drawing is cheap; `render` does the arithmetic."""
    style = rng.choice(list(STYLES))
    weights, p_drums, p_fast, p_major, p_high = STYLES[style]
    k = rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])
    w = np.asarray(weights, float)
    instruments = list(rng.choice(INSTRUMENTS, size=k, replace=False, p=w / w.sum()))
    has_drums, fast, major, high = (rng.random() < p for p in (p_drums, p_fast, p_major, p_high))
    bpm = rng.uniform(130, 180) if fast else rng.uniform(60, 95)
    beat = 60 / bpm
    key = rng.integers(0, 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11] if major else [0, 2, 3, 5, 7, 8, 10])
    voices = []
    for inst in instruments:
        role = "bass" if inst == "bass" else rng.choice(["melody", "chords"], p=[0.65, 0.35])
        base = 36 if role == "bass" else (72 if high else 55)
        notes, t = [], 0.0
        degree = rng.integers(0, 7)
        while t < SECONDS:
            dur = beat * rng.choice([0.5, 1, 2] if role == "melody" else [2, 4])
            degree = int(np.clip(degree + rng.integers(-2, 3), -3, 10))
            chord = [degree, degree + 2, degree + 4] if role == "chords" else [degree]
            start, length = int(t * SR), min(dur, SECONDS - t)
            notes.append((start, [draw_note(inst, midi_hz(base + key + scale[d % 7] + 12 * (d // 7)), length, rng)
                                  for d in chord]))
            t += dur
        voices.append((notes, rng.uniform(0.5, 1.0)))
    score = {"voices": voices, "drums": None}
    if has_drums:
        gain, n = rng.uniform(0.3, 0.7), int(0.25 * SR)
        score["drums"] = (beat, rng.standard_normal(n), rng.standard_normal(n + 1), gain)
    tags = {name: int(name in instruments) for name in INSTRUMENTS}
    tags.update(drums=int(has_drums), fast=int(fast), slow=int(not fast), major=int(major),
                minor=int(not major), high=int(high), low=int(not high))
    return score, tags, str(style)


def render(score, recording=None):
    """score (draw_score) -> (samples,) float32. `recording`, a generator of its own, draws how the
    track was recorded (ssl_min/data/production.py); None renders it clean, at a peak of -6 dBFS."""
    n = int(SECONDS * SR)
    mix = np.zeros(n)
    for notes, gain in score["voices"]:
        voice = np.zeros(n)
        for start, chord in notes:
            for note in chord:
                sound = partials(**note)
                voice[start:start + len(sound)] += sound / len(chord)
        mix += gain * voice / max(1e-9, np.abs(voice).max())
    if score["drums"] is not None:
        beat, snare_noise, hat_noise, gain = score["drums"]
        mix += gain * drums(n, beat, snare_noise, hat_noise)
    mix = produce(mix, SR, recording)[0] if recording is not None else 0.5 * mix / np.abs(mix).max()
    return mix.astype(np.float32)


def make_track(rng, recording=None):
    """-> (audio (samples,) float32, tags dict, style). The music (and so every label) follows
    from `rng` alone; `recording` draws how it was recorded (render)."""
    score, tags, style = draw_score(rng)
    return render(score, recording), tags, style


def _render_to(job):
    """One track in a worker: (score, recording seed or None, path) -> writes the wav."""
    score, recording, path = job
    sf.write(path, render(score, None if recording is None else np.random.default_rng(recording)), SR,
             subtype="PCM_16")


def build(root, seed=0, sizes=None, produced=True, workers=None):
    """Writes the demo dataset under root (skips when root/manifest.json says it is complete).
    produced: each track recorded its own way (production.py; track i of split s draws it from
    the seed (seed, s, i)); False: every track clean, the same way (the lesson's control).
    The scores are drawn in order from one generator; rendering them is independent per track, so
    `workers` processes do it (default: decode.worker_count's rule, one for a small build): the
    bytes written do not depend on how many."""
    root = Path(root)
    sizes = sizes or SPLITS
    manifest = {"seed": seed, "sizes": sizes, "sample_rate": SR, "seconds": SECONDS, "tags": TAGS,
                "styles": list(STYLES), "recording": "produced" if produced else "clean"}
    if (root / "manifest.json").exists() and json.loads((root / "manifest.json").read_text()) == manifest:
        return root
    rng = np.random.default_rng(seed)
    workers = worker_count(workers, sum(sizes.values()), sum(sizes.values()) * SECONDS)
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        for s, (split, count) in enumerate(sizes.items()):
            folder = root / split
            (folder / "audio").mkdir(parents=True, exist_ok=True)
            rows, style_rows, jobs = [], [], []
            for i in range(count):              # the scores in order, from the one generator
                score, tags, style = draw_score(rng)
                rel = f"audio/{split}_{i:04d}.wav"
                jobs.append((score, (seed, s, i) if produced else None, folder / rel))
                rows.append([rel] + [tags[t] for t in TAGS])
                style_rows.append([f"../../{split}/{rel}", style])
            list(pool.map(_render_to, jobs, chunksize=4) if pool else map(_render_to, jobs))
            if split == "unlabeled":
                continue
            with open(folder / "annotations.csv", "w", newline="") as f:
                csv.writer(f).writerows([["mp3_path"] + TAGS] + rows)
            (root / "style" / split).mkdir(parents=True, exist_ok=True)
            with open(root / "style" / split / "annotations.csv", "w", newline="") as f:
                csv.writer(f).writerows([["path", "label"]] + style_rows)
    (root / "manifest.json").write_text(json.dumps(manifest))
    print(f"wrote the demo dataset to {root}: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
          + f" tracks of {SECONDS:.0f} s")
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default="data/demo", help="where to write it")
    parser.add_argument("--seed", type=int, default=0, help="the whole dataset follows from it")
    parser.add_argument("--clean", action="store_true", help="every track recorded the same clean way (no drawn "
                        "production): the control of the lesson in README.md")
    args = parser.parse_args(argv)
    build(args.root, args.seed, produced=not args.clean)
