#!/usr/bin/python3
"""Input for the end-to-end scenario inside the VM (run as root).

  input.py keys COMBO...      press key combinations on a virtual keyboard made with
                              /dev/uinput, e.g. `alt+f2`, `ctrl+alt+f3`, `alt+sysrq+k`, `enter`
  input.py type TEXT          type TEXT on that keyboard (US layout; letters, digits, space,
                              and - _ . / = : , newline)
  input.py sti TTY TEXT       push TEXT into the input queue of TTY with TIOCSTI, as if typed
                              there (tty_ioctl(4)); used to run commands in a user's shell

The uinput events go through the kernel's keyboard handler like a physical keyboard's: VT
switching (Alt+Fn), SysRq, and typing into the foreground VT (linux/uinput.h,
Documentation/input/uinput.rst).
"""
import fcntl
import os
import struct
import sys
import time

UI_SET_EVBIT, UI_SET_KEYBIT, UI_DEV_CREATE, UI_DEV_DESTROY = 0x40045564, 0x40045565, 0x5501, 0x5502
EV_SYN, EV_KEY = 0, 1
TIOCSTI = 0x5412

# Linux input event codes (linux/input-event-codes.h).
NAMED = {
    "esc": 1, "backspace": 14, "tab": 15, "enter": 28, "ctrl": 29, "shift": 42, "alt": 56,
    "space": 57, "sysrq": 99, "left": 105, "right": 106, "up": 103, "down": 108,
    **{f"f{i}": 58 + i for i in range(1, 11)},
}
ROWS = {"1234567890-=": 2, "qwertyuiop": 16, "asdfghjkl;": 30, "zxcvbnm,./": 44}
for row, first in ROWS.items():
    for i, ch in enumerate(row):
        NAMED[ch] = first + i
SHIFTED = {"_": "-", ":": ";", "+": "="}
CHARS = {" ": "space", "\n": "enter"}


def keyboard():
    fd = os.open("/dev/uinput", os.O_WRONLY | os.O_NONBLOCK)
    fcntl.ioctl(fd, UI_SET_EVBIT, EV_KEY)
    fcntl.ioctl(fd, UI_SET_EVBIT, EV_SYN)
    for code in range(1, 200):
        fcntl.ioctl(fd, UI_SET_KEYBIT, code)
    # struct uinput_user_dev: name[80], input_id {bustype, vendor, product, version}, ff_effects_max, abs*[64] x4
    os.write(fd, struct.pack("80sHHHHI" + "i" * 256, b"secrets-dispatcher-e2e-kbd", 3, 1, 1, 1, 0, *([0] * 256)))
    fcntl.ioctl(fd, UI_DEV_CREATE)
    time.sleep(0.6)  # let the kernel attach its keyboard handler
    return fd


def press(fd, codes):
    def ev(t, c, v):
        os.write(fd, struct.pack("llHHi", 0, 0, t, c, v))
    for c in codes:
        ev(EV_KEY, c, 1)
        ev(EV_SYN, 0, 0)
    for c in reversed(codes):
        ev(EV_KEY, c, 0)
        ev(EV_SYN, 0, 0)
    time.sleep(0.08)


def codes_for_char(ch):
    if ch in CHARS:
        return [NAMED[CHARS[ch]]]
    if ch in SHIFTED:
        return [NAMED["shift"], NAMED[SHIFTED[ch]]]
    if ch.isupper():
        return [NAMED["shift"], NAMED[ch.lower()]]
    if ch in NAMED:
        return [NAMED[ch]]
    raise SystemExit(f"input.py: cannot type {ch!r}")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "sti":
        tty, text = args
        fd = os.open(tty, os.O_RDWR | os.O_NOCTTY)
        for b in text.encode():
            fcntl.ioctl(fd, TIOCSTI, bytes([b]))
        os.close(fd)
        return
    if cmd == "keys":
        plan = [[NAMED[k] for k in combo.split("+")] for combo in args]
    elif cmd == "type":
        plan = [codes_for_char(ch) for ch in args[0]]
    else:
        raise SystemExit(__doc__)
    fd = keyboard()
    try:
        for codes in plan:
            press(fd, codes)
        time.sleep(0.3)
    finally:
        fcntl.ioctl(fd, UI_DEV_DESTROY)
        os.close(fd)


if __name__ == "__main__":
    main(sys.argv)
