"""The one log-space range transform: PT's form (theta += u) and HWA's (p += p expm1(u)) are the same optimiser."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aimc_jax._logspace import from_log, log_space, log_step, to_log

TARGET = {"a": jnp.asarray([0.5, 2.0, 8.0], jnp.float32), "b": jnp.asarray([[0.05, 3.0]], jnp.float32)}


def _loss(p):
    return sum(jnp.sum((jnp.log(p[k]) - jnp.log(t)) ** 2 + (p[k] - t) ** 2) for k, t in TARGET.items())


def test_log_step_gradient_is_the_chain_rule_of_the_log():
    p = {"a": jnp.asarray([1.0, 1.5, 3.0], jnp.float32), "b": jnp.asarray([[0.2, 0.7]], jnp.float32)}
    sgd = optax.sgd(1.0)
    u, _ = log_step(sgd, jax.grad(_loss)(p), sgd.init(to_log(p)), p)
    expected = jax.grad(lambda th: _loss(from_log(th)))(to_log(p))  # d L(exp(theta)) / d theta
    for k in p:
        np.testing.assert_allclose(np.asarray(u[k]), -np.asarray(expected[k]), rtol=1e-6)


def test_pt_form_and_hwa_form_follow_the_same_path_and_stay_positive():
    p0 = {k: jnp.ones_like(v) for k, v in TARGET.items()}
    inner = optax.adam(0.1)
    theta, state = to_log(p0), inner.init(to_log(p0))  # PT: keeps theta, adds the log-space step
    tx = log_space(inner)
    p, hwa_state = p0, tx.init(p0)  # HWA: the range itself, updated additively
    for _ in range(100):
        values = from_log(theta)
        u, state = log_step(inner, jax.grad(_loss)(values), state, values, log_params=theta)
        theta = optax.apply_updates(theta, u)
        upd, hwa_state = tx.update(jax.grad(_loss)(p), hwa_state, p)
        p = optax.apply_updates(p, upd)
    for k in TARGET:
        np.testing.assert_allclose(np.asarray(from_log(theta)[k]), np.asarray(p[k]), rtol=1e-4)
        assert np.all(np.asarray(p[k]) > 0)
        np.testing.assert_allclose(np.asarray(p[k]), np.asarray(TARGET[k]), rtol=0.05)  # both reach the optimum
