"""The images a stack can build, with their Dockerfiles: the API's and one per GPU worker
package (gpu_worker.common.worker_types declares the worker types)."""

from gpu_worker.common.worker_types import WORKER_PACKAGES

IMAGES = {  # image -> its Dockerfile (each beside a Dockerfile.dockerignore: its build context)
    "api": "app/Dockerfile",
    **{package: f"gpu_worker/{package}/Dockerfile" for package in WORKER_PACKAGES},
}
