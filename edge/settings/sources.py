"""[source] (one of the drivers' source types, by `type`) and [decoder]."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from edge.settings.base import ConfigModel


class ReplaySource(ConfigModel):
    """Images or a video played from files instead of a camera: for trials, demonstrations and tests."""

    type: Literal["replay"] = Field(description="Play images or a video from files.")
    path: str = Field(min_length=1, description="Folder of images, a video file, or a .txt list of images.")
    fps: float = Field(10.0, ge=0, le=240, description="Frames per second; 0 plays as fast as decoding goes, "
                       "dropping nothing.")
    loop: bool = Field(False, description="Start again from the first image after the last.")


class OpenCVSource(ConfigModel):
    """A USB (UVC) camera, or a video file, read through OpenCV."""

    type: Literal["opencv"] = Field(description="A USB camera or video file through OpenCV.")
    device: int | str = Field(0, description="Camera index, /dev/video* path, or a video file.")
    width: int | None = Field(None, ge=160, le=4096, description="Frame width asked of the camera, in pixels; "
                              "not set: the camera's own.")
    height: int | None = Field(None, ge=120, le=4096, description="Frame height asked of the camera, in pixels; "
                               "not set: the camera's own.")
    fps: float | None = Field(None, gt=0, le=240, description="Frames per second asked of the camera; not set: "
                              "the camera's own.")
    stall_s: float = Field(5.0, gt=0, le=600, description="No frame for this long: reopen, and stop the "
                           "watchdog pings until frames come again.")


class LinesSource(ConfigModel):
    """Codes as lines of text from a file, a FIFO or standard input (one code a line)."""

    type: Literal["lines"] = Field(description="Codes as lines of text.")
    path: str = Field("-", min_length=1, description="File, FIFO, or '-' for standard input.")
    follow_fifo: bool = Field(True, description="Reopen a FIFO when its writer closes it.")


class PiCameraSource(ConfigModel):
    """A Raspberry Pi camera module, through picamera2."""

    type: Literal["picamera2"] = Field(description="A Raspberry Pi camera module.")
    camera: int = Field(0, ge=0, le=7, description="Which camera, when the Pi has more than one (0: the first).")
    width: int = Field(1280, ge=160, le=4608, description="Frame width in pixels.")
    height: int = Field(720, ge=120, le=2592, description="Frame height in pixels.")
    fps: float = Field(30.0, gt=0, le=120, description="Frames per second.")
    autofocus: Literal["continuous", "manual"] = Field("continuous", description="continuous: the camera "
                                                       "keeps focusing; manual: fixed at lens_position.")
    lens_position: float | None = Field(None, ge=0, le=15, description="Dioptres, with autofocus = manual.")
    exposure_value: float = Field(-1.0, ge=-8, le=8, description="Below 0 keeps bright phone screens readable.")
    stall_s: float = Field(5.0, gt=0, le=600, description="No frame for this long: restart the camera, and stop "
                           "the watchdog pings until frames come again.")


class HidSource(ConfigModel):
    """A USB barcode scanner that types like a keyboard (HID), read through evdev."""

    type: Literal["hid"] = Field(description="A USB scanner that types like a keyboard.")
    device: str | None = Field(None, description="A stable path: /dev/input/by-id/... or "
                               "/dev/input/checkpoint-scanner.")
    name: str | None = Field(None, description="Or: part of the device's name.")
    vendor: int | None = Field(None, ge=0, le=0xFFFF, description="Or: the USB vendor id (as 0x1234 in TOML).")
    product: int | None = Field(None, ge=0, le=0xFFFF, description="With vendor: the USB product id.")
    terminator: Literal["enter", "tab"] = Field("enter", description="The key the scanner sends after each code.")
    grab: bool = Field(True, description="Take the scanner for this daemon alone, so its codes are not also "
                       "typed into a console.")

    @model_validator(mode="after")
    def _chosen(self) -> HidSource:
        if self.device is None and self.name is None and self.vendor is None:
            raise ValueError("source: name the scanner by device, name or vendor (and product)")
        return self


class SerialSource(ConfigModel):
    """A scanner on a serial port (RS-232, or USB in serial mode), read through pyserial."""

    type: Literal["serial"] = Field(description="A scanner on a serial port.")
    port: str = Field("/dev/checkpoint-scanner-serial", min_length=1, description="The serial device (a "
                      "stable name from the udev rules, or /dev/ttyUSB0, /dev/ttyACM0, ...).")
    baudrate: int = Field(9600, ge=300, le=4_000_000, description="Bits per second, as set on the scanner.")
    terminator: Literal["cr", "lf", "crlf", "tab"] = Field("crlf", description="What the scanner sends after "
                                                           "each code.")


SourceSettings = Annotated[ReplaySource | OpenCVSource | LinesSource | PiCameraSource | HidSource | SerialSource,
                           Field(discriminator="type")]


DecoderType = Literal["multipass", "zxing", "pyzbar"]


class DecoderSettings(ConfigModel):
    """How camera frames are searched for codes (scanners and lines sources need no decoding)."""

    type: DecoderType = Field("multipass", description="multipass: zxing-cpp, then, on a miss, second passes "
                              "where a code could be (deblurring, unwarping, rescaling) within budget_ms; zxing: "
                              "zxing-cpp alone; pyzbar: ZBar alone.")
    budget_ms: float = Field(20, ge=0, le=1000, description="At most this long per frame on second passes.")
    budget: Literal["frame", "fixed"] = Field(
        "frame", description="frame: second passes get what the camera's frame interval leaves after the first "
        "pass (less a fifth for the rest of the step), never more than budget_ms, so a slow CPU does not fall "
        "further behind the camera; scanners and unpaced replays get budget_ms. fixed: always budget_ms.")
    debounce_ms: int = Field(1500, ge=0, le=600_000,
                             description="A code seen again within this time of its last sighting is the same scan.")
    max_payload_bytes: int = Field(2048, ge=16, le=8192, description="Longer payloads are malformed.")
