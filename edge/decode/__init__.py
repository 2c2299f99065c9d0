"""Frames in, QR codes out: the decoder and its second passes, and debouncing frames into scans."""
