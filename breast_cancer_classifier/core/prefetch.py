"""Run the input side of a stage in a background thread, a bounded number of items ahead.

Reading files and cutting windows (PIL, OpenCV, numpy, h5py) mostly release the GIL, so a
second thread can prepare the next batch while the model runs on the current one. The
items come out in order; an exception raised while preparing an item is raised again in
the consumer at that item's place, so failures keep their meaning and their order.
"""

import queue
import threading

_END = object()


def prefetch(items, depth=1):
    """Iterate over ``items`` (any iterable) with up to ``depth`` items prepared ahead.

    ``depth=0`` iterates in the calling thread (no thread, no extra memory). Memory: up to
    ``depth + 1`` items exist besides the one the consumer holds. When the consumer stops
    early (``break``, an exception, Ctrl-C), the worker stops after its current item.
    """
    if depth <= 0:
        yield from items
        return
    slots = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry):
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            put((None, err))

    worker = threading.Thread(target=work, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, err = slots.get()
            if err is not None:
                raise err
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        worker.join()
