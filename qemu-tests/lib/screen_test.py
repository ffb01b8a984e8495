#!/usr/bin/env python3
"""Unit tests of screen.py (CTest: qemu-tests screen judge, label unit): GNOME Shell's top
bar recognised on the real GDM screen (docs/desktop.png) and on drawn ones, not on a
console line or half a bar; PNG filters undone. The verdict: a
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

    def bar_screen(self, *blocks, below=(35, 35, 35)):
        """A 1024x768 dark screen whose top band (rows 0-31) holds light blocks at (x0, x1)
        fractions of the width, rows 8-22, as GNOME Shell's clock, status icons or
        Activities label; BELOW is the colour under the band."""
        px = bytearray(bytes([35, 35, 35]) * (W * 32) + bytes(below) * (W * (H - 32)))
        for x0, x1 in blocks:
            for y in range(8, 22):
                for x in range(int(x0 * W), int(x1 * W)):
                    px[3 * (y * W + x) : 3 * (y * W + x) + 3] = b"\xe0\xe0\xe0"
        return Screen(W, H, bytes(px))

    def test_top_bar_of_the_greeter_and_of_a_session(self):
        clock, status, activities = (0.45, 0.55), (0.9, 0.98), (0.01, 0.08)
        self.assertEqual(self.bar_screen(clock, status).top_bar(), "greeter")
        self.assertEqual(self.bar_screen(activities, clock, status).top_bar(), "session")

    def test_initial_setup_bar_has_an_edge_and_no_clock(self):
        status = (0.9, 0.98)
        self.assertEqual(self.bar_screen(status, below=(10, 80, 100)).top_bar(), "greeter")
        self.assertIsNone(self.bar_screen(status).top_bar())  # no clock and no edge

    def test_no_top_bar_on_a_console_a_blank_screen_or_half_a_bar(self):
        self.assertIsNone(self.bar_screen((0.0, 0.7)).top_bar())  # a line of console text
        self.assertIsNone(self.bar_screen().top_bar())
        self.assertIsNone(self.bar_screen((0.45, 0.55)).top_bar())  # no status area
        self.assertIsNone(self.bar_screen((0.45, 0.55), (0.9, 0.98), (0.25, 0.3)).top_bar())

    def test_the_real_gdm_and_initial_setup_screens_are_recognised(self):
        # Screendumps of the desktop tier: GDM on v2 (clock, no edge) and GNOME Shell in
        # initial-setup mode on v1 (a black bar over the wallpaper, no clock).
        for name in ("desktop.png", "desktop-initial-setup.png"):
            shot = Screen.read(Path(__file__).resolve().parents[2] / "docs" / name)
            self.assertEqual((shot.width, shot.height), (1280, 800))
            self.assertTrue(shot.verdict()[0], name)
            self.assertEqual(shot.top_bar(), "greeter", name)

    def test_png_filters_are_undone(self):
        w, h = 5, 4
        pixels = bytes(self.rng.randrange(256) for _ in range(w * h * 3))
        rows = [pixels[y * w * 3 : (y + 1) * w * 3] for y in range(h)]
        filtered, prev = b"", bytes(w * 3)
        for y, (kind, row) in enumerate(zip((1, 2, 3, 4), rows)):
            out = bytearray()
            for i in range(len(row)):
                a = row[i - 3] if i >= 3 else 0
                b, c = prev[i], (prev[i - 3] if i >= 3 else 0)
                p = a + b - c
                paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (b if abs(p - b) <= abs(p - c) else c)
                pred = {1: a, 2: b, 3: (a + b) // 2, 4: paeth}[kind]
                out.append((row[i] - pred) & 0xFF)
            filtered += bytes([kind]) + bytes(out)
            prev = row
        png = self.dir / "f.png"
        Screen(w, h, pixels).write_png(png)
        data = bytearray(png.read_bytes())
        idat = data.index(b"IDAT")
        body = zlib.compress(filtered)
        chunk = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
        length = struct.unpack(">I", data[idat - 4 : idat])[0]
        data[idat - 4 : idat + 8 + length] = chunk
        png.write_bytes(bytes(data))
        self.assertEqual(Screen.read(png).pixels, pixels)

    def test_truncated_ppm_is_refused(self):
        path = ppm(self.dir / "t.ppm", 40, 30, bytes(100))
        with self.assertRaisesRegex(ValueError, "truncated"):
            Screen.read_ppm(path)


if __name__ == "__main__":
    unittest.main()
