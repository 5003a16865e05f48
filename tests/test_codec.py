"""G.711 mu-law: bit-exact with audioop, ITU reference values, round trips, float → int16."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from audio.codec import float_to_int16, lin2ulaw, ulaw2lin

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib up to 3.12; the audioop-lts package from 3.13

ALL_INT16 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16)
ALL_CODES = bytes(range(256))


def test_encoder_is_bit_exact_with_audioop_for_every_int16() -> None:
    assert lin2ulaw(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)


def test_decoder_is_bit_exact_with_audioop_for_every_code() -> None:
    assert ulaw2lin(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


# G.711 mu-law (Sun g711.c / ITU tables, 16-bit scale): code -> linear value.
DECODE_VECTORS = [(0x00, -32124), (0x80, 32124), (0x0F, -16764), (0x8F, 16764), (0x7E, -8), (0xFE, 8),
                  (0x7F, 0), (0xFF, 0), (0x70, -120), (0xF0, 120), (0xEF, 132)]
# linear -> code: full scale, zero (positive zero 0xFF), smallest steps, segment edges.
ENCODE_VECTORS = [(32767, 0x80), (-32768, 0x00), (0, 0xFF), (-1, 0x7E), (4, 0xFE), (8159 * 4, 0x80),
                  (120, 0xF0), (-120, 0x70), (132, 0xEF)]


@pytest.mark.parametrize(("code", "linear"), DECODE_VECTORS)
def test_decode_reference_vectors(code: int, linear: int) -> None:
    assert int(ulaw2lin(bytes([code]))[0]) == linear


@pytest.mark.parametrize(("linear", "code"), ENCODE_VECTORS)
def test_encode_reference_vectors(linear: int, code: int) -> None:
    assert lin2ulaw(np.array([linear], dtype=np.int16)) == bytes([code])


def test_every_code_survives_a_round_trip_except_negative_zero() -> None:
    again = lin2ulaw(ulaw2lin(ALL_CODES))
    for code in range(256):
        assert again[code] == (0xFF if code == 0x7F else code), hex(code)


def test_round_trip_error_is_within_half_a_mu_law_step() -> None:
    x = ALL_INT16.astype(np.int64)
    err = np.abs(ulaw2lin(lin2ulaw(ALL_INT16)).astype(np.int64) - x)
    inside = np.abs(x) <= 32124
    assert np.all(err[inside] <= np.abs(x[inside]) / 32 + 8)
    # beyond the largest code the encoder saturates instead of wrapping
    assert np.all(ulaw2lin(lin2ulaw(ALL_INT16[~inside])) == np.sign(x[~inside]) * 32124)


def test_encoder_rejects_other_dtypes() -> None:
    with pytest.raises(TypeError, match="int16"):
        lin2ulaw(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="bytes"):
        ulaw2lin("\xff\xff")  # type: ignore[arg-type]


def test_float_to_int16_clips_rounds_and_maps_nan_to_zero() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, np.nan, 1e-6], dtype=np.float32)
    assert float_to_int16(x).tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32767, 0, 0]
    assert float_to_int16(np.array([np.inf, -np.inf], dtype=np.float32)).tolist() == [32767, -32767]


def test_silence_is_0xff() -> None:
    assert lin2ulaw(np.zeros(160, dtype=np.int16)) == b"\xff" * 160


def test_ulaw_to_float_is_the_int16_decoding_scaled_exactly() -> None:
    from audio.codec import ulaw_to_float

    every = bytes(range(256)) * 3
    expected = ulaw2lin(every).astype(np.float64) / 32768.0
    got = ulaw_to_float(every)
    assert got.dtype == np.float32 and np.array_equal(got.astype(np.float64), expected)
    assert ulaw_to_float(b"").shape == (0,)


def test_to_ulaw_encodes_every_encoding_alike() -> None:
    from audio.codec import to_ulaw
    from audio.formats import AudioChunk, AudioFormat, Encoding

    mu = bytes(range(256))
    assert to_ulaw(AudioChunk(mu, AudioFormat(Encoding.MULAW, 8000))) == mu  # as is
    pcm = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    assert to_ulaw(AudioChunk(pcm, AudioFormat(Encoding.PCM_S16, 8000))) == lin2ulaw(pcm)
    floats = np.array([0.0, 0.5, -0.5, 2.0, np.nan], dtype=np.float32)  # clipped, NaN → silence
    assert to_ulaw(AudioChunk(floats, AudioFormat(Encoding.PCM_F32, 16000))) == lin2ulaw(
        np.array([0, 16384, -16384, 32767, 0], dtype=np.int16))
