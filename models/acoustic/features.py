"""MFCC as a torch module of fixed matrices (STFT as a strided convolution, mel filterbank, DCT-II), so it exports
into the ONNX graph with the network: training and serving run the very same feature code, and serving needs no
torch or torchaudio. Parameters follow the blueprint: 40 coefficients, n_fft 400, hop 160 at 16 kHz.

The mel filterbank is HTK-scaled triangles without area normalisation, the log is 10·log10 of power floored at
1e-10 and at 80 dB below the peak, and the DCT is orthonormal: the definition torchaudio.transforms.MFCC uses.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from moodstream.schemas.audio import SAMPLE_RATE

N_FFT = 400
HOP = 160
N_MELS = 64
N_MFCC = 40


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int = N_FFT // 2 + 1, n_mels: int = N_MELS, rate: int = SAMPLE_RATE) -> np.ndarray:
    """[n_freqs, n_mels] triangular filters on the HTK mel scale, 0 Hz to Nyquist."""
    freqs = np.linspace(0, rate / 2, n_freqs)
    mel_points = np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(rate / 2)), n_mels + 2)
    hz_points = mel_to_hz(mel_points)
    slopes = hz_points[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / np.diff(hz_points)[:-1]
    up = slopes[:, 2:] / np.diff(hz_points)[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


def dct_matrix(n_mfcc: int = N_MFCC, n_mels: int = N_MELS) -> np.ndarray:
    """[n_mels, n_mfcc] orthonormal DCT-II."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    dct = np.cos(math.pi / n_mels * (n + 0.5) * k)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / n_mels)
    return dct.T.astype(np.float32)


class MFCC(torch.nn.Module):
    """[batch, samples] float PCM in [-1, 1] → [batch, n_mfcc, frames], centred and reflect-padded like torch.stft."""

    def __init__(self) -> None:
        super().__init__()
        window = torch.hann_window(N_FFT, periodic=True)
        n = torch.arange(N_FFT, dtype=torch.float64)
        k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * n / N_FFT
        kernels = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window.double()
        self.register_buffer("kernels", kernels.float()[:, None, :])  # [2·freqs, 1, n_fft]
        self.register_buffer("mel", torch.from_numpy(mel_filterbank()))
        self.register_buffer("dct", torch.from_numpy(dct_matrix()))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(audio[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")
        spectrum = torch.nn.functional.conv1d(padded, self.kernels, stride=HOP)  # [batch, 2·freqs, frames]
        real, imag = spectrum.chunk(2, dim=1)
        power = real * real + imag * imag
        mels = torch.matmul(power.transpose(1, 2), self.mel)  # [batch, frames, n_mels]
        db = 10.0 * torch.log10(torch.clamp(mels, min=1e-10))
        peak = db.amax(dim=(1, 2), keepdim=True)
        db = torch.maximum(db, peak - 80.0)
        return torch.matmul(db, self.dct).transpose(1, 2)  # [batch, n_mfcc, frames]
