"""Run the development worker under the runpod SDK's job loop."""

from gpu_worker.common.serve import serve
from gpu_worker.dev.handler import handle, settings

serve(handle, settings)
