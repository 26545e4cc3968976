"""``batch --engine ray``: the batch's takes as Ray actor tasks, on a cluster or a local one.

One actor per CPU (``--workers``, default: the cluster's CPUs) loads the model and network
once, as a local worker process does, and converts the takes it is given with the same
``run_take``. Inputs and outputs are paths, so every node must see them at the same place
(a shared file system); the actors import this package from the driver's location
(``PYTHONPATH`` in the job's runtime environment), so the project must sit on a shared
path too, or be installed on every node. An actor that dies inside a take (``os._exit``,
the OOM killer) fails that take and is replaced. Ray is optional: ``pip install ray==2.60.0``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import LSMPLifyError

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding lsmplify_blender/


class TakeActor:
    """A Ray actor: the model once, then one take per call (``run_take`` or a test's function)."""

    def __init__(self, options, take_fn):
        from .batch import worker_setup
        from .cli import load_model

        worker_setup()
        self.options, self.take_fn = options, take_fn
        self.model = load_model(options)

    def convert(self, take):
        return self.take_fn(self.options, self.model, take)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise LSMPLifyError(
            "--engine ray needs Ray: pip install ray==2.60.0 (the project's 'ray' extra), "
            "or use --engine local."
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """A HOST:PORT that answers, before Ray spends minutes retrying one that does not."""
    import socket

    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise LSMPLifyError(
            f"--ray-address {address}: nothing answers there ({exc}). Start the head node with "
            "'ray start --head' and give its address, or use --ray-address auto on a cluster "
            "node, or leave it out for a local cluster."
        ) from None


def _connect(ray, workers: int | None, address: str | None) -> bool:
    """Join ``address`` or start a local cluster of ``workers`` CPUs; True when we started it."""
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
    path = os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))
    runtime_env = {"env_vars": {"PYTHONPATH": path}}
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            # address="local": a new instance even where a cluster runs (or a stale one is recorded)
            ray.init(
                address="local",
                num_cpus=workers or os.cpu_count() or 1,
                runtime_env=runtime_env,
                include_dashboard=False,
                log_to_driver=False,
            )
    except ConnectionError as exc:
        # Ray 2.60 wraps the GCS's AuthenticationError in a RuntimeError's text: only that text tells
        if "InvalidAuthToken" in str(exc.__cause__):
            raise LSMPLifyError(
                f"--ray-address {address}: the cluster wants its authentication token. Run with "
                "RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token (or "
                "RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN), or use --ray-address auto on a node "
                "of the cluster."
            ) from None
        raise LSMPLifyError(
            f"--ray-address {address}: no Ray cluster there ({exc}). Start one with "
            "'ray start --head' or leave --ray-address out for a local one."
        ) from None
    return True


def run_ray(pending, options, workers, address, take_fn, counter, cancel) -> None:
    """Feed one take at a time to each actor; a take whose actor died is failed and the actor replaced."""
    from .batch import remove_partial
    from .cli import load_model

    if not pending:
        return
    ray = _import_ray()
    load_model(options)  # a bad --model is one clear error here, not a dead actor per take
    started = _connect(ray, workers, address)
    actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(TakeActor)
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    queue = list(reversed(pending))  # pop() from the end keeps the given order
    actors = {actor_class.remote(options, take_fn) for _ in range(min(n, len(queue)))}
    running: dict = {}  # object ref -> (actor, take)
    try:

        def submit(actor):
            if queue and not (cancel is not None and cancel.is_set()):
                take = queue.pop()
                running[actor.convert.remote(take)] = (actor, take)

        for actor in actors:
            submit(actor)
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            actor, take = running.pop(done[0])
            try:
                row = ray.get(done[0])
            except ray.exceptions.RayActorError as exc:
                remove_partial(take)
                row = {
                    "status": "failed",
                    "error": f"the Ray worker died in this take ({type(exc).__name__}); "
                    "it was replaced and the other takes went on",
                }
                actors.discard(actor)
                actor = actor_class.remote(options, take_fn)
                actors.add(actor)
            except (
                ray.exceptions.RayTaskError
            ) as exc:  # the actor could not start (e.g. a bad --model)
                raise LSMPLifyError(
                    f"A Ray worker failed: {exc.cause if exc.cause else exc}"
                ) from None
            counter.finish(take, row)
            submit(actor)
    finally:
        for actor in actors:  # in-flight takes leave nothing: their partial files are removed
            ray.kill(actor)
        for _actor, take in running.values():
            remove_partial(take)
        if started:
            ray.shutdown()
