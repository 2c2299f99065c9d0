"""Hardware at the edge: frame and text sources, gate outputs. Hardware modules are imported lazily."""
# OpenCV's pixel cap before any driver imports cv2 (see edge/common/images.py).
from edge.common import images as _images  # noqa: F401
