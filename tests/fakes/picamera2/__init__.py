"""A stand-in for picamera2, following its documented API (Picamera2, create_video_configuration,
configure, start, capture_array, stop, close). It records what it was asked and serves YUV420 frames
whose Y plane the test chooses. Only what needs a Raspberry Pi camera is faked."""
import numpy as np

cameras = 1                 # how many cameras are attached
scene = None                # a function () -> grayscale image (the Y plane), or None for a grey frame
fail_after = None           # capture_array raises after this many frames (a camera that died)
log: list[tuple] = []       # every call, in order
opened: list["Picamera2"] = []


def reset():
    global cameras, scene, fail_after
    cameras, scene, fail_after = 1, None, None
    log.clear()
    opened.clear()


def global_camera_info():
    return [{"Model": "imx708", "Num": i} for i in range(cameras)]


class Picamera2:
    def __init__(self, camera_num=0):
        log.append(("Picamera2", camera_num))
        if camera_num >= cameras:
            raise IndexError("list index out of range")  # what picamera2 raises with no such camera
        self.camera_num, self.config, self.started, self.closed, self.frames = camera_num, None, False, False, 0
        self.controls = {}
        opened.append(self)

    def create_video_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=6, controls=None, display="main", encode="main", queue=True,
                                   sensor=None, use_case=None):
        log.append(("create_video_configuration", main, buffer_count, controls))
        return {"use_case": "video", "main": dict(main or {}), "buffer_count": buffer_count,
                "controls": dict(controls or {})}

    def configure(self, config):
        log.append(("configure", config))
        self.config = config
        self.controls.update(config["controls"])

    def set_controls(self, controls):
        log.append(("set_controls", controls))
        self.controls.update(controls)

    def start(self, config=None, show_preview=False):
        log.append(("start",))
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_array(self, name="main"):
        if not self.started:
            raise RuntimeError("Camera not started")
        if fail_after is not None and self.frames >= fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        self.frames += 1
        width, height = self.config[name]["size"]
        y = scene() if scene is not None else np.full((height, width), 128, np.uint8)
        frame = np.full((height * 3 // 2, width), 128, np.uint8)  # YUV420: Y, then U and V quarter planes
        frame[:height] = y
        return frame

    def stop(self):
        log.append(("stop",))
        self.started = False

    def close(self):
        log.append(("close",))
        self.closed = True
