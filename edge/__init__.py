"""The checkpoint daemon's core: decode, decide, record, signal. Never imports hardware libraries."""
# OpenCV reads its pixel cap from the environment once, when cv2 is first imported: set here, where every
# import of the core passes first, so no import order inside a module can undo it.
from edge.common import images as _images  # noqa: F401
