"""Blocks of a leading axis run on the host's CPU devices in parallel.

On CPU, :func:`hierlm._jax.configure` exposes several host devices; a program mapped over
a one-axis mesh of them runs one block of its leading axis per device, each on its own
thread. The sampler splits its chains this way and the downward pass its draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["Blocks", "host_blocks"]


class Blocks(NamedTuple):
    """A mesh over ``n`` devices (None for one device, where nothing is split)."""

    mesh: Mesh | None

    def spec(self, shape: tuple[int, ...], dtype: Any, shared: bool = False):
        """An argument's shape: split along its leading axis, or ``shared`` by every
        device."""
        sharding = None
        if self.mesh is not None:
            sharding = NamedSharding(self.mesh, P() if shared else P("block"))
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    def shared(self, tree: Any) -> Any:
        """:meth:`spec` of every array of ``tree``, shared."""
        return jax.tree.map(lambda a: self.spec(np.shape(a), jax.numpy.result_type(a), True), tree)

    @property
    def replicated(self) -> jax.sharding.Sharding | None:
        """Where shared values go once, so that no call copies them again."""
        return None if self.mesh is None else NamedSharding(self.mesh, P())

    def spread(self, fn: Callable, n_split_args: int) -> Callable:
        """``fn`` of one block as a function of all of them: its first ``n_split_args``
        arguments and its outputs are split, its last argument shared."""
        if self.mesh is None:
            return fn
        specs = (P("block"),) * n_split_args + (P(),)
        # check_vma=False: NumPyro's loops mix per-block and shared values in ways the
        # replication checker rejects, though each device only ever sees its own block.
        return jax.shard_map(
            fn, mesh=self.mesh, in_specs=specs, out_specs=P("block"), check_vma=False
        )


def host_blocks(n: int) -> Blocks:
    """Blocks over the first ``n`` devices."""
    return Blocks(Mesh(np.array(jax.devices()[:n]), ("block",)) if n > 1 else None)
