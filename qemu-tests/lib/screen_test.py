#!/usr/bin/env python3
"""Unit tests of screen.py's verdict (CTest: qemu-tests screen judge, label unit): a
blank screen and a 16-colour text console are refused, a screen with anti-aliased
content passes, a small one is refused, and PPM in / PNG out keep the pixels' size."""
import random
import struct
import sys
import tempfile
import unittest
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screen import Screen  # noqa: E402

W, H = 1024, 768


def ppm(path, w, h, pixels):
    path.write_bytes(b"P6\n# QEMU\n%d %d\n255\n" % (w, h) + pixels)
    return path


class ScreenTest(unittest.TestCase):
    def setUp(self):
        self.rng = random.Random(7)
        self.dir = Path(tempfile.mkdtemp())

    def test_blank_is_refused(self):
        ok, why = Screen(W, H, bytes([29, 29, 29]) * (W * H)).verdict()
        self.assertFalse(ok)
        self.assertIn("blank", why)

    def test_text_console_is_refused(self):
        palette = [bytes(self.rng.randrange(256) for _ in range(3)) for _ in range(16)]
        ok, why = Screen(W, H, b"".join(self.rng.choice(palette) for _ in range(W * H))).verdict()
        self.assertFalse(ok)
        self.assertIn("console", why)

    def test_graphical_screen_passes(self):
        # A dark background with a gradient panel: hundreds of shades, like anti-aliasing.
        rows = []
        for y in range(H):
            row = bytearray(bytes([30, 30, 30]) * W)
            if 300 <= y < 500:
                for x in range(300, 724):
                    v = (x + y) % 256
                    row[3 * x : 3 * x + 3] = bytes([v, v, min(255, v + 20)])
            rows.append(bytes(row))
        ok, why = Screen(W, H, b"".join(rows)).verdict()
        self.assertTrue(ok, why)

    def test_too_small_is_refused(self):
        ok, why = Screen(640, 480, bytes(self.rng.randrange(256) for _ in range(640 * 480 * 3))).verdict()
        self.assertFalse(ok)
        self.assertIn("smaller than 1024x768", why)

    def test_ppm_read_and_png_written(self):
        pixels = bytes(self.rng.randrange(256) for _ in range(40 * 30 * 3))
        shot = Screen.read_ppm(ppm(self.dir / "a.ppm", 40, 30, pixels))
        self.assertEqual((shot.width, shot.height, shot.pixels), (40, 30, pixels))
        png = self.dir / "a.png"
        shot.write_png(png)
        data = png.read_bytes()
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(struct.unpack(">II", data[16:24]), (40, 30))
        idat = data.index(b"IDAT")
        length = struct.unpack(">I", data[idat - 4 : idat])[0]
        raw = zlib.decompress(data[idat + 4 : idat + 4 + length])
        self.assertEqual(raw[1 : 1 + 40 * 3], pixels[: 40 * 3])

    def test_truncated_ppm_is_refused(self):
        path = ppm(self.dir / "t.ppm", 40, 30, bytes(100))
        with self.assertRaisesRegex(ValueError, "truncated"):
            Screen.read_ppm(path)


if __name__ == "__main__":
    unittest.main()
