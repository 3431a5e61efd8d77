// AudioWorklet: microphone samples at the context's rate -> 16 kHz mono int16 frames of `frameSamples`.
// Resampling is band-limited interpolation (Hann-windowed sinc, cutoff at the output Nyquist), so 48 kHz input does
// not alias into the speech band the way naive decimation would.
const OUT_RATE = 16000;
const HALF_TAPS = 16;

class PcmWorklet extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.ratio = sampleRate / OUT_RATE; // input samples per output sample
    this.cutoff = Math.min(1, OUT_RATE / sampleRate);
    this.frameSamples = (options.processorOptions && options.processorOptions.frameSamples) || 320;
    this.history = new Float32Array(0); // input not yet consumed, with HALF_TAPS of look-back
    this.position = HALF_TAPS; // fractional index into history of the next output sample
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
  }

  kernel(x) {
    if (x === 0) return this.cutoff;
    const window = 0.5 * (1 + Math.cos((Math.PI * x) / (HALF_TAPS + 1)));
    const arg = Math.PI * this.cutoff * x;
    return (this.cutoff * Math.sin(arg)) / arg * window;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const block = channels[0]; // mono: the first channel
    const merged = new Float32Array(this.history.length + block.length);
    merged.set(this.history);
    merged.set(block, this.history.length);
    while (this.position + HALF_TAPS < merged.length) {
      const centre = Math.floor(this.position);
      const frac = this.position - centre;
      let sum = 0;
      for (let k = -HALF_TAPS + 1; k <= HALF_TAPS; k++) {
        sum += merged[centre + k] * this.kernel(k - frac);
      }
      const clipped = Math.max(-1, Math.min(1, sum));
      this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
      if (this.filled === this.frameSamples) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(this.frameSamples);
        this.filled = 0;
      }
      this.position += this.ratio;
    }
    const keepFrom = Math.max(0, Math.floor(this.position) - HALF_TAPS);
    this.history = merged.slice(keepFrom);
    this.position -= keepFrom;
    return true;
  }
}

registerProcessor("pcm-worklet", PcmWorklet);
