// Streaming windowed-sinc resampler (mono Float32), shared by the call worklet and the page.
// A Blackman-windowed sinc low-pass at 0.92 of the lower Nyquist, tabulated at 64 phases per input sample
// and linearly interpolated; `zeros` zero crossings each side at the output rate when downsampling.
export class Resampler {
  constructor(inRate, outRate, zeros = 8) {
    this.step = inRate / outRate;               // input samples per output sample
    this.cutoff = Math.min(1, outRate / inRate) * 0.92;
    this.width = Math.ceil(zeros / this.cutoff); // kernel half width in input samples
    this.res = 64;
    const n = this.width * this.res;
    this.table = new Float32Array(n + 2);
    for (let i = 0; i <= n + 1; i++) {
      const x = i / this.res;
      const w = x >= this.width ? 0 : 0.42 + 0.5 * Math.cos(Math.PI * x / this.width)
        + 0.08 * Math.cos(2 * Math.PI * x / this.width);
      const s = x === 0 ? 1 : Math.sin(Math.PI * this.cutoff * x) / (Math.PI * this.cutoff * x);
      this.table[i] = this.cutoff * s * w;
    }
    this.buf = new Float32Array(4096);
    this.len = this.width;  // starts with `width` samples of silence of history
    this.t = this.width;    // position of the next output sample, in input samples from buf[0]
  }

  // How many more input samples are needed before `count` outputs can be produced.
  needed(count) {
    const last = this.t + (count - 1) * this.step + this.width + 1;
    return Math.max(0, Math.ceil(last) - this.len);
  }

  push(samples) {
    if (this.len + samples.length > this.buf.length) {
      const keep = Math.floor(this.t) - this.width;  // samples no output will touch again
      if (keep > 0) {
        this.buf.copyWithin(0, keep, this.len);
        this.len -= keep;
        this.t -= keep;
      }
      if (this.len + samples.length > this.buf.length) {
        const grown = new Float32Array(Math.max(this.buf.length * 2, this.len + samples.length));
        grown.set(this.buf.subarray(0, this.len));
        this.buf = grown;
      }
    }
    this.buf.set(samples, this.len);
    this.len += samples.length;
  }

  // Produce as many output samples as the input allows, at most `max`.
  pull(max = Infinity) {
    const out = [];
    while (out.length < max && this.t + this.width + 1 <= this.len) {
      const base = Math.floor(this.t);
      const frac = this.t - base;
      let acc = 0;
      for (let k = -this.width + 1; k <= this.width; k++) {
        const x = Math.abs(k - frac) * this.res;
        const i = Math.floor(x);
        if (i > this.width * this.res) continue;
        const h = this.table[i] + (this.table[i + 1] - this.table[i]) * (x - i);
        acc += this.buf[base + k] * h;
      }
      out.push(acc);
      this.t += this.step;
    }
    return Float32Array.from(out);
  }
}

// G.711 mu-law <-> linear, as the gateway's audio.codec does.
export function mulawDecode(bytes) {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const u = ~bytes[i] & 0xff;
    const sign = u & 0x80, exponent = (u >> 4) & 7, mantissa = u & 0x0f;
    const magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    out[i] = (sign ? -magnitude : magnitude) / 32768;
  }
  return out;
}

export function mulawEncode(samples) {
  const out = new Uint8Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    let s = Math.max(-32635, Math.min(32635, Math.round(samples[i] * 32768)));
    const sign = s < 0 ? 0x80 : 0;
    if (sign) s = -s;
    s += 0x84;
    let exponent = 7;
    for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
    const mantissa = (s >> (exponent + 3)) & 0x0f;
    out[i] = ~(sign | (exponent << 4) | mantissa) & 0xff;
  }
  return out;
}

export function pcm16Decode(buffer) {
  const view = new DataView(buffer);
  const out = new Float32Array(buffer.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(2 * i, true) / 32768;
  return out;
}

export function pcm16Encode(samples) {
  const out = new ArrayBuffer(samples.length * 2);
  const view = new DataView(out);
  for (let i = 0; i < samples.length; i++) {
    view.setInt16(2 * i, Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32768))), true);
  }
  return out;
}
