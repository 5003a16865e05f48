// The call's audio in the page, on the audio thread: one processor with the microphone as input and the
// speakers as output, so both directions run on one clock.
//   in:  microphone (context rate) -> resample to the wire rate -> 20 ms frames -> main thread -> WebSocket
//   out: wire audio and marks, in arrival order -> playout queue -> resample to the context rate -> speakers;
//        a mark is reported once every sample queued before it has been played; "clear" empties the queue
//        and reports the marks it held (as Twilio echoes them).
// Messages to the main thread: {frame}, {played}, {mark, playedMs}, {cleared: [names]}, {level}.
import { Resampler } from "./resampler.js";

class CallProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.inRate = o.inRate;
    this.outRate = o.outRate;
    this.frameSamples = Math.round(o.inRate * o.frameMs / 1000);
    this.down = new Resampler(sampleRate, this.inRate);
    this.up = new Resampler(this.outRate, sampleRate);
    this.frame = new Float32Array(this.frameSamples);
    this.frameFill = 0;
    this.queue = [];          // {audio: Float32Array, offset} | {mark: string}
    this.played = 0;          // wire-rate samples of agent audio played (silence excluded)
    this.playedChunk = [];    // wire-rate samples pulled since the last {played} message (silence included)
    this.levelIn = 0; this.levelOut = 0; this.levelCount = 0;
    this.stopped = false;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(m) {
    if (m.audio) this.queue.push({ audio: m.audio, offset: 0 });
    else if (m.mark !== undefined) this.queue.push({ mark: m.mark });
    else if (m.clear) {
      const cleared = this.queue.filter((q) => q.mark !== undefined).map((q) => q.mark);
      this.queue = [];
      this.port.postMessage({ cleared });
    } else if (m.stop) this.stopped = true;
  }

  // Take `n` wire samples of agent audio (silence once the queue runs dry), reporting marks passed.
  take(n) {
    const out = new Float32Array(n);
    let filled = 0;
    while (this.queue.length && filled <= n) {
      const head = this.queue[0];
      if (head.mark !== undefined) {
        this.queue.shift();
        this.port.postMessage({ mark: head.mark, playedMs: Math.round(this.played * 1000 / this.outRate) });
        continue;
      }
      if (filled === n) break;
      const count = Math.min(n - filled, head.audio.length - head.offset);
      out.set(head.audio.subarray(head.offset, head.offset + count), filled);
      head.offset += count;
      filled += count;
      this.played += count;
      if (head.offset === head.audio.length) this.queue.shift();
    }
    for (let i = 0; i < n; i++) this.playedChunk.push(out[i]);
    return out;
  }

  process(inputs, outputs) {
    if (this.stopped) return false;
    const mic = inputs[0] && inputs[0][0];
    const out = outputs[0][0];
    const n = out.length;
    // microphone -> wire frames
    const input = mic && mic.length ? mic : new Float32Array(n);
    this.down.push(input);
    const wire = this.down.pull();
    for (let i = 0; i < wire.length; i++) {
      this.levelIn = Math.max(this.levelIn, Math.abs(wire[i]));
      this.frame[this.frameFill++] = wire[i];
      if (this.frameFill === this.frameSamples) {
        const frame = this.frame.slice();
        this.port.postMessage({ frame }, [frame.buffer]);
        this.frameFill = 0;
        if (this.playedChunk.length) {
          const played = Float32Array.from(this.playedChunk);
          this.playedChunk = [];
          this.port.postMessage({ played }, [played.buffer]);
        }
      }
    }
    // agent audio -> speakers
    this.up.push(this.take(this.up.needed(n)));
    const pcm = this.up.pull(n);
    out.set(pcm);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(pcm);
    for (let i = 0; i < pcm.length; i++) this.levelOut = Math.max(this.levelOut, Math.abs(pcm[i]));
    if (++this.levelCount >= Math.round(sampleRate / 128 / 10)) {  // about ten level reports a second
      this.port.postMessage({ level: { in: this.levelIn, out: this.levelOut } });
      this.levelIn = 0; this.levelOut = 0; this.levelCount = 0;
    }
    return true;
  }
}

registerProcessor("voicegw-call", CallProcessor);
