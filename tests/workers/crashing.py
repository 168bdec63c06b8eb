"""A worker whose start fails, as one whose model does not load: it says so on its output and
exits at once, every time RunPod starts it again (the crash loop a deployment must not pay for)."""

import sys

if __name__ == "__main__":
    print("loading the model", flush=True)
    print("RuntimeError: CUDA error: no kernel image is available for this GPU", flush=True)
    sys.exit(1)
