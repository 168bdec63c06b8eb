"""`python -m runpod_api.emulator --port P [--endpoint NAME=MODULE [--env NAME:KEY=VALUE]]...
[--image IMAGE=MODULE]... [--registry HOST=USERNAME:PASSWORD]...`."""

import argparse
import logging
from types import FrameType

import uvicorn

from runpod_api.emulator.server import create_app
from runpod_api.emulator.workers import Pool


class EmulatorServer(uvicorn.Server):
    """Stops the workers first on shutdown: a worker whose server has stopped listening
    retries its job polls in a tight loop (runpod SDK behaviour) until it is killed."""

    def __init__(self, config: uvicorn.Config, pools: dict[str, Pool]) -> None:
        super().__init__(config)
        self.pools = pools

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        for pool in self.pools.values():
            pool.terminate()
        super().handle_exit(sig, frame)


def _mapping(value: str) -> tuple[str, str]:
    name, sep, module = value.partition("=")
    if not sep or not name or not module:
        raise argparse.ArgumentTypeError(f"expected NAME=MODULE, got {value!r}")
    return name, module


def _endpoint_variable(value: str) -> tuple[str, str, str]:
    name, sep, assignment = value.partition(":")
    key, eq, variable = assignment.partition("=")
    if not sep or not eq or not name or not key:
        raise argparse.ArgumentTypeError(f"expected NAME:KEY=VALUE, got {value!r}")
    return name, key, variable


def _registry(value: str) -> tuple[str, tuple[str, str]]:
    host, sep, credentials = value.partition("=")
    username, colon, password = credentials.partition(":")
    if not sep or not colon or not host or not username or not password:
        raise argparse.ArgumentTypeError(f"expected HOST=USERNAME:PASSWORD, got {value!r}")
    return host, (username, password)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runpod_api.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--endpoint",
        type=_mapping,
        action="append",
        default=[],
        metavar="NAME=MODULE",
        help="serve /v2/NAME/ with a worker running `python -m MODULE`",
    )
    parser.add_argument(
        "--image",
        type=_mapping,
        action="append",
        default=[],
        metavar="IMAGE=MODULE",
        help="endpoints made through /v2/serverless on IMAGE run `python -m MODULE` workers",
    )
    parser.add_argument(
        "--registry",
        type=_registry,
        action="append",
        default=[],
        metavar="HOST=USERNAME:PASSWORD",
        help="images from HOST are pulled only with a registry credential holding these",
    )
    parser.add_argument(
        "--env",
        type=_endpoint_variable,
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="set KEY=VALUE in the environment of endpoint NAME's workers",
    )
    parser.add_argument("--api-key", help="require Authorization: Bearer KEY on /v2")
    parser.add_argument(
        "--execution-timeout", type=float, help="default execution timeout of a job, in seconds"
    )
    args = parser.parse_args(argv)
    endpoint_env: dict[str, dict[str, str]] = {}
    for name, key, value in args.env:
        if name not in dict(args.endpoint):
            parser.error(f"--env names endpoint {name!r}, which no --endpoint declares")
        endpoint_env.setdefault(name, {})[key] = value
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app(
        dict(args.endpoint),
        f"http://{args.host}:{args.port}",
        api_key=args.api_key,
        execution_timeout_s=args.execution_timeout,
        endpoint_env=endpoint_env,
        images=dict(args.image),
        registries=dict(args.registry),
    )
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=3
    )
    EmulatorServer(config, app.state.emulator.pools).run()


if __name__ == "__main__":
    main()
