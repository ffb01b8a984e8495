"""Screenshots from QEMU's screendump (binary PPM): read them, judge whether they show a
graphical screen rather than nothing or a text console, and save them as PNG (stdlib
only: zlib and struct) for docs/.

    python3 screen.py check SHOT.ppm [--min-size 1024x768]   # prints the verdict, exit 1 if bad
    python3 screen.py png SHOT.ppm OUT.png
"""
import argparse
import struct
import sys
import zlib
from pathlib import Path
from typing import Dict, Tuple


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
            y = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
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
    c.add_argument("ppm")
    c.add_argument("--min-size", default="1024x768")
    p = sub.add_parser("png")
    p.add_argument("ppm")
    p.add_argument("out")
    a = ap.parse_args()
    screen = Screen.read_ppm(Path(a.ppm))
    if a.cmd == "png":
        screen.write_png(Path(a.out))
        return 0
    w, h = (int(x) for x in a.min_size.split("x"))
    ok, text = screen.verdict((w, h))
    print(("ok: " if ok else "bad: ") + text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
