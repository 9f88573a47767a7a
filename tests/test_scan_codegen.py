"""What a scanned encoder layer compiles to: the noise stays in place, the layer's vectors are sliced once.

Inside `analog_apply`'s scan over encoder layers each layer's ranges and chip state are
dynamic slices of the stacked layers. Two things XLA:CPU did there cost roberta-base's
analog forward ~2.5x (experiments/results/bench_model.md): a dynamic slice of the column
ranges fused into the per-crossbar noise/ADC/back-scaling loop (`tile._mvm._unfused` keeps it
out), and the key-independent index of the hash generator hoisted out of the loop into
one carried buffer per crossbar (`tile._rng._weyl_index`). These tests read the compiled HLO.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aimc_jax as aj
from aimc_jax.tile import _rng
from aimc_jax.tile._mvm import _mvm

N, IN, OUT, LAYERS = 64, 48, 48, 2
CFG = aj.TileConfig(max_input_size=32, max_output_size=32)


def _np_mix(h):
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x7FEB352D)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(0x846CA68B)
    return h ^ (h >> np.uint32(16))


@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 4, 5), (300, 129)])
def test_hash_bits_equal_the_weyl_formula(shape):
    """Element i gets mix(mix(i * 0x9E3779B9 + s0) ^ s1), whatever the way the index is built."""
    for k in range(3):
        key = jax.random.key(k)
        s0, s1 = (np.uint32(v) for v in np.asarray(jax.random.bits(key, (2,), jnp.uint32)))
        i = np.arange(int(np.prod(shape)), dtype=np.uint32).reshape(shape)
        with np.errstate(over="ignore"):
            expected = _np_mix(_np_mix(i * np.uint32(0x9E3779B9) + s0) ^ s1)
        assert np.array_equal(np.asarray(_rng.hash_bits(key, shape)), expected)


@functools.cache
def _scanned_mvm_hlo() -> str:
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(0, 0.1, (LAYERS, IN, OUT)), jnp.float32)
    chips = []
    for layer in range(LAYERS):
        r = aj.init_ranges(w[layer], CFG)
        state = aj.read(aj.program(w[layer], r, CFG, key=jax.random.key(layer)), 60.0, CFG, key=jax.random.key(9))
        chips.append((state, r))
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *chips)

    def forward(stacked, x, key):
        def body(h, inputs):
            state, r, k = inputs
            return jnp.tanh(_mvm(state, r, h, CFG, k)), None

        return jax.lax.scan(body, x, (*stacked, jax.random.split(key, LAYERS)))[0]

    x = jnp.asarray(rng.normal(size=(N, IN)), jnp.float32)
    return jax.jit(forward).lower(stacked, x, jax.random.key(1)).compile().as_text()


def _computations(hlo: str) -> dict[str, str]:
    out, name = {}, None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%(\S+) .*\{$", line)
        if head:
            name = head.group(1)
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


def test_output_noise_loop_reads_no_dynamic_slice_of_the_column_ranges():
    """No (1, n_in, OUT) dynamic slice (a layer's column ranges) inside the output-noise loop."""
    comps = _computations(_scanned_mvm_hlo())
    noisy = [name for name, body in comps.items() if re.search(r"%erf_inv[.0-9]* = ", body)]
    assert noisy, "no output-noise computation found (did the HLO op name change?)"
    column = re.compile(rf"f32\[1,\d+,{OUT}\]\S* dynamic-slice\(")
    sliced = [name for name in noisy if column.search(comps[name])]
    assert not sliced, f"the column ranges' dynamic slice is fused into the output-noise loop: {sliced}"


def test_no_noise_index_is_hoisted_out_of_the_layer_loop():
    """The while loop carries no uint32 array of an output-noise draw's size (N x crossbar columns)."""
    hlo = _scanned_mvm_hlo()
    carried = re.findall(r"u32\[(\d+),(\d+)\]\{1,0\} get-tuple-element", hlo)
    assert not [s for s in carried if int(s[0]) == N], f"hoisted noise index buffers: {carried}"
