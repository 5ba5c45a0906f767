import sys
import threading
import time

from ebsd_core.shared_state import silenced_output


def test_output_silenced_in_two_threads_at_once_comes_back():
    """contextlib.redirect_stdout swaps the process's sys.stdout: two threads restoring it in the wrong order left
    it pointing at one of their dropped buffers."""
    before = sys.stdout, sys.stderr

    def quiet(stderr: bool) -> None:
        for _ in range(200):
            with silenced_output(stderr=stderr):
                print("dropped")
                time.sleep(0.0002)

    threads = [threading.Thread(target=quiet, args=(stderr,)) for stderr in (False, True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (sys.stdout, sys.stderr) == before
