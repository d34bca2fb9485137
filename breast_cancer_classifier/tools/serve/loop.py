"""The shape of the service's two threads (worker and sender): turns until stopped."""

import logging
import threading

log = logging.getLogger("breast_cancer_classifier.serve")


class Loop(threading.Thread):
    """A daemon thread that calls :meth:`turn` until :meth:`stop`.

    After a turn that did nothing (``turn`` returned False) it waits ``idle_seconds``, or
    until :meth:`wake`. An exception in a turn is logged and the next turn comes: a bug must
    not end the thread in silence.
    """

    def __init__(self, name, idle_seconds):
        super().__init__(name=name, daemon=True)
        self.idle_seconds = idle_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def turn(self):
        raise NotImplementedError

    def wake(self):
        self._wake.set()

    def stop(self):
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self):
        return self._stopping.is_set()

    def pause(self, seconds):
        """Sleep ``seconds``, or less when stopped."""
        self._stopping.wait(seconds)

    def run(self):
        while not self.stopping:
            self._wake.clear()
            try:
                worked = self.turn()
            except Exception:  # noqa: BLE001 - logged, and the thread goes on
                log.exception("serve: the %s thread failed; it goes on", self.name)
                worked = False
            if not worked:
                self._wake.wait(self.idle_seconds)
