"""Screenshots from QEMU's screendump (binary PPM): read them, judge whether they show a
graphical screen rather than nothing or a text console, recognise GNOME Shell's top bar
(and with it the greeter or initial setup apart from a user's session), and save them as
PNG (stdlib only: zlib and struct) for docs/.

    python3 screen.py check SHOT.ppm|SHOT.png [--min-size 1024x768]   # exit 1 if bad
    python3 screen.py png SHOT.ppm OUT.png
"""
import argparse
import struct
import sys
import zlib
from pathlib import Path
from typing import Dict, Optional, Tuple


def _luminance(c: bytes) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _unfilter(kind: int, line: bytearray, prev: bytearray) -> None:
    """Undoes one PNG filter (Sub, Up, Average, Paeth) in place; 3 bytes a pixel."""
    for i in range(len(line)):
        a = line[i - 3] if i >= 3 else 0
        b = prev[i]
        c = prev[i - 3] if i >= 3 else 0
        if kind == 1:
            pred = a
        elif kind == 2:
            pred = b
        elif kind == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        line[i] = (line[i] + pred) & 0xFF


class Screen:
    def __init__(self, width: int, height: int, pixels: bytes) -> None:
        self.width, self.height, self.pixels = width, height, pixels  # RGB, 3 bytes each

    @classmethod
    def read_ppm(cls, path: Path) -> "Screen":
        data = Path(path).read_bytes()
        fields, pos = [], 0
        while len(fields) < 4:  # magic, width, height, maxval; '#' comments allowed
            while pos < len(data) and data[pos : pos + 1].isspace():
                pos += 1
            if data[pos : pos + 1] == b"#":
                pos = data.index(b"\n", pos) + 1
                continue
            end = pos
            while end < len(data) and not data[end : end + 1].isspace():
                end += 1
            fields.append(data[pos:end])
            pos = end
        if fields[0] != b"P6" or fields[3] != b"255":
            raise ValueError(f"{path}: not an 8-bit binary PPM (P6) as QEMU's screendump writes")
        width, height = int(fields[1]), int(fields[2])
        pixels = data[pos + 1 : pos + 1 + width * height * 3]
        if len(pixels) != width * height * 3:
            raise ValueError(f"{path}: {len(pixels)} bytes of pixels for {width}x{height}; truncated")
        return cls(width, height, pixels)

    @classmethod
    def read_png(cls, path: Path) -> "Screen":
        """An 8-bit RGB, non-interlaced PNG (what write_png and most tools write)."""
        data = Path(path).read_bytes()
        if data[:8] != b"\x89PNG\r\n\x1a\n":
            raise ValueError(f"{path}: not a PNG")
        pos, idat, width, height = 8, b"", 0, 0
        while pos < len(data):
            (n,) = struct.unpack(">I", data[pos : pos + 4])
            kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
            pos += 12 + n
            if kind == b"IHDR":
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
                if (depth, colour, interlace) != (8, 2, 0):
                    raise ValueError(f"{path}: only 8-bit RGB non-interlaced PNGs are read")
            elif kind == b"IDAT":
                idat += body
        raw, stride = zlib.decompress(idat), width * 3
        out, prev = bytearray(), bytearray(stride)
        for y in range(height):
            kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
            if kind:
                _unfilter(kind, line, prev)
            out += line
            prev = line
        return cls(width, height, bytes(out))

    @classmethod
    def read(cls, path: Path) -> "Screen":
        with open(path, "rb") as f:
            magic = f.read(4)
        return cls.read_png(path) if magic == b"\x89PNG" else cls.read_ppm(path)

    def top_bar(self) -> Optional[str]:
        """GNOME Shell's top bar, if the screen shows one: a band at the top in one colour
        with the system status at the right, nothing between it and the middle nor left
        of the middle (a text console's lines would cross those gaps), and either the
        clock in the middle (GDM) or an edge where the band ends (initial setup draws a
        black bar over its wallpaper, without a clock). Returns "session" when the left
        end holds something too (the Activities button of a user's session), "greeter"
        when it is empty (GDM and initial setup have none), else None."""
        w, band = self.width, max(24, self.height * 4 // 100)
        bg, n, total = self._dominant(0, band)
        if n < 0.8 * total:
            return None
        bg_lum = _luminance(bg)
        edge = abs(self._mean_luminance(band + 2, band + 10) - bg_lum) > 20
        regions = {"left": (0, 0.15), "gap1": (0.15, 0.38), "clock": (0.40, 0.60), "gap2": (0.62, 0.82),
                   "status": (0.85, 1.0)}
        found = {name: 0 for name in regions}
        for y in range(band):
            row = y * w
            for name, (a, b) in regions.items():
                for x in range(int(a * w), int(b * w)):
                    if abs(_luminance(self.pixels[3 * (row + x) : 3 * (row + x) + 3]) - bg_lum) > 60:
                        found[name] += 1
        if found["gap1"] or found["gap2"] or not found["status"] or not (found["clock"] or edge):
            return None
        return "session" if found["left"] else "greeter"

    def _sample(self, y0: int, y1: int):
        """Every 5th pixel of rows [y0, y1)."""
        w = self.width
        for y in range(y0, min(y1, self.height)):
            for x in range(0, w, 5):
                yield self.pixels[3 * (y * w + x) : 3 * (y * w + x) + 3]

    def _mean_luminance(self, y0: int, y1: int) -> float:
        values = [_luminance(c) for c in self._sample(y0, y1)]
        return sum(values) / max(1, len(values))

    def _dominant(self, y0: int, y1: int) -> Tuple[bytes, int, int]:
        """The most common colour of rows [y0, y1) (every 5th pixel), its count, the total."""
        colours: Dict[bytes, int] = {}
        for c in self._sample(y0, y1):
            colours[c] = colours.get(c, 0) + 1
        colour, n = max(colours.items(), key=lambda kv: kv[1])
        return colour, n, sum(colours.values())

    def stats(self) -> Dict[str, float]:
        """Distinct colours (a text console has its 16; anti-aliased text, icons and
        gradients give hundreds), luminance mean and spread, and how much is one colour."""
        colours: Dict[bytes, int] = {}
        p = self.pixels
        step = 3 * 7  # every 7th pixel: enough to judge, fast in pure Python
        lum_sum = lum_sq = 0.0
        n = 0
        for i in range(0, len(p) - 2, step):
            c = p[i : i + 3]
            colours[c] = colours.get(c, 0) + 1
            y = _luminance(c)
            lum_sum += y
            lum_sq += y * y
            n += 1
        mean = lum_sum / n
        return {
            "width": self.width,
            "height": self.height,
            "colours": len(colours),
            "luminance_mean": round(mean, 1),
            "luminance_stddev": round(max(0.0, lum_sq / n - mean * mean) ** 0.5, 1),
            "dominant_share": round(max(colours.values()) / n, 3),
        }

    def verdict(self, min_size: Tuple[int, int] = (1024, 768)) -> Tuple[bool, str]:
        s = self.stats()
        why = []
        if self.width < min_size[0] or self.height < min_size[1]:
            why.append(f"{self.width}x{self.height} is smaller than {min_size[0]}x{min_size[1]}")
        if s["dominant_share"] > 0.995 or s["luminance_stddev"] < 2:
            why.append("the screen is blank (one colour)")
        elif s["colours"] <= 24:
            why.append(f"only {s['colours']} colours: a text console, not a graphical screen")
        ok = not why
        return ok, ("graphical screen" if ok else "; ".join(why)) + f" ({s})"

    def write_png(self, path: Path) -> None:
        rows = b"".join(
            b"\0" + self.pixels[y * self.width * 3 : (y + 1) * self.width * 3] for y in range(self.height)
        )

        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        Path(path).write_bytes(
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("ppm", help="a screendump (PPM) or a PNG")
    c.add_argument("--min-size", default="1024x768")
    p = sub.add_parser("png")
    p.add_argument("ppm")
    p.add_argument("out")
    a = ap.parse_args()
    screen = Screen.read(Path(a.ppm))
    if a.cmd == "png":
        screen.write_png(Path(a.out))
        return 0
    w, h = (int(x) for x in a.min_size.split("x"))
    ok, text = screen.verdict((w, h))
    bar = screen.top_bar()
    print(("ok: " if ok else "bad: ") + text + "; GNOME Shell's top bar: " + (bar or "none"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
