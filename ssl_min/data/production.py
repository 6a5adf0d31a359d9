"""How a demo track was "recorded": a production drawn per track, independent of its music.

Real collections differ in how each piece was recorded and mixed (the microphone's colour, the
room, the noise floor, the level, a bit of saturation), and those differences have nothing to do
with the labels. A hand-crafted statistic such as the mean of the MFCCs mixes them up with the
instruments; CLMR's effects (ssl_min/augment/) teach an encoder to ignore them. Without them the
demo would reward the statistic: every track rendered the same way makes the MFCC mean close to
a sufficient statistic of its instruments. So every demo track goes through its own chain:

    x (n,) float64 at rate sr  ->  EQ  ->  room  ->  saturation  ->  noise floor  ->  level, polarity

* EQ: a tilt of -4..+4 dB per octave around 1 kHz, one bell of -9..+9 dB at 150..3000 Hz
  (an octave wide), and with P 0.5 each a low-pass at 1.2..3.5 kHz and a high-pass at 40..400 Hz
  (4th-order Butterworth magnitudes): microphones, speakers and mixing desks.
* Room (P 0.7): an impulse response of exponentially decaying noise, RT60 0.15..1.2 s, wet/dry
  0.1..0.6: a room, a hall, a plate.
* Saturation (P 0.3): tanh with a drive of 1.5..4 (tape, a hot preamp).
* Noise floor: white, brown (rumble) or mains hum (50 or 60 Hz and harmonics), 15..45 dB below the
  music's RMS.
* Level: the peak at -20..-1 dBFS; polarity inverted with P 0.5.

Every range is drawn from `rng`, a generator of its own (demo.py seeds one per track), so the
music and the labels do not depend on it: a track with and without its production has the same
tags (tests/test_demo.py). Ranges are set to lie within and around what train.py's default chain
draws, so the effects it learns to ignore are those that vary here.
"""
import numpy as np


def _butterworth(f, cutoff, order=4, high=False):
    """|H(f)| of a Butterworth low- or high-pass at `cutoff` Hz."""
    ratio = np.maximum(f, 1e-6) / cutoff
    return 1 / np.sqrt(1 + (1 / ratio if high else ratio) ** (2 * order))


def eq_curve(f, rng):
    """f (K,) Hz -> (gain (K,), the drawn settings): tilt, one bell, optional band limits."""
    octaves = np.log2(np.maximum(f, 20.0) / 1000)                # (K,) octaves from 1 kHz
    tilt, bell_hz, bell_db = rng.uniform(-4, 4), np.exp(rng.uniform(np.log(150), np.log(3000))), rng.uniform(-9, 9)
    db = tilt * octaves + bell_db * np.exp(-2 * (octaves - np.log2(bell_hz / 1000)) ** 2)   # bell: sigma 1/2 octave
    gain = 10 ** (db / 20)
    settings = {"tilt_db_oct": tilt, "bell_hz": bell_hz, "bell_db": bell_db}
    if rng.random() < 0.5:
        settings["lowpass_hz"] = np.exp(rng.uniform(np.log(1200), np.log(3500)))
        gain = gain * _butterworth(f, settings["lowpass_hz"])
    if rng.random() < 0.5:
        settings["highpass_hz"] = np.exp(rng.uniform(np.log(40), np.log(400)))
        gain = gain * _butterworth(f, settings["highpass_hz"], high=True)
    return gain, settings


def room_response(sr, rng):
    """A room's impulse response (n,): the direct sound, then noise decaying by 60 dB in RT60."""
    rt60, wet = rng.uniform(0.15, 1.2), rng.uniform(0.1, 0.6)
    t = np.arange(int(rt60 * sr)) / sr
    tail = rng.standard_normal(len(t)) * np.exp(-6.91 * t / rt60)
    tail *= wet / np.sqrt(np.sum(tail ** 2))                   # the tail's energy: wet x the direct sound's
    ir = np.concatenate([[1.0], tail])
    return ir, {"rt60_s": rt60, "wet": wet}


def noise_floor(n, sr, rng):
    """(n,) unit-RMS noise of a drawn colour -> (noise, colour)."""
    colour = rng.choice(["white", "brown", "hum"])
    if colour == "white":
        x = rng.standard_normal(n)
    elif colour == "brown":
        x = np.cumsum(rng.standard_normal(n))
        c = np.concatenate([[0.0], np.cumsum(np.pad(x, 200))])
        x -= (c[401:] - c[:-401]) / 401                            # minus its 401-sample moving average: the drift
    else:
        t, mains = np.arange(n) / sr, rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 8))
    return x / max(1e-12, np.sqrt(np.mean(x ** 2))), str(colour)


def _fast_size(n):
    """The smallest 2^a 3^b 5^c >= n: an FFT length numpy transforms fast, with little padding."""
    best = 1 << int(np.ceil(np.log2(n)))
    p3 = 1
    while p3 < best:
        p35 = p3
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 5
        p3 *= 3
    return best


def produce(x, sr, rng):
    """x (n,) -> (the recorded track (n,) float64, settings dict). Length kept, peak in -20..-1 dBFS."""
    n = len(x)
    n_fft = _fast_size(n + int(1.3 * sr))                        # room for the longest room tail
    f = np.fft.rfftfreq(n_fft, 1 / sr)
    gain, settings = eq_curve(f, rng)
    spectrum = np.fft.rfft(x, n_fft) * gain
    if rng.random() < 0.7:
        ir, room = room_response(sr, rng)
        spectrum *= np.fft.rfft(ir, n_fft)
        settings.update(room)
    y = np.fft.irfft(spectrum, n_fft)[:n]
    y /= max(1e-12, np.abs(y).max())
    if rng.random() < 0.3:
        settings["drive"] = rng.uniform(1.5, 4)
        y = np.tanh(settings["drive"] * y) / np.tanh(settings["drive"])
    noise, settings["noise"] = noise_floor(n, sr, rng)
    settings["snr_db"] = rng.uniform(15, 45)
    y = y + noise * np.sqrt(np.mean(y ** 2)) * 10 ** (-settings["snr_db"] / 20)
    settings["peak_dbfs"], settings["polarity"] = rng.uniform(-20, -1), int(rng.choice([-1, 1]))
    y *= settings["polarity"] * 10 ** (settings["peak_dbfs"] / 20) / max(1e-12, np.abs(y).max())
    return y, settings
