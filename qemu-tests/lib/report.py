"""One line per check and per step, as the QEMU scenarios print them; `results` keeps
the checks for the final 'N passed, N failed' line."""
import time

results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    print(f"{'ok  ' if cond else 'FAIL'} {name}" + ("" if cond else f": {detail}"), flush=True)
    return bool(cond)


def step(text):
    print(f"--- {time.strftime('%H:%M:%S')} {text}", flush=True)
