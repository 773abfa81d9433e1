#!/usr/bin/env python3
"""Runs a command on a fresh pseudo-terminal: what the command writes to the terminal comes out
on our stdout byte for byte, what arrives on our stdin is typed into the terminal.

Used by the benchmarks and tests to run the console entrypoint as it runs in a terminal
emulator (its stdin and stdout are a terminal), and to feed its exact output to a headless
terminal emulator.

Usage: pty_run.py COLS ROWS -- COMMAND [ARGS...]

Exits with the command's exit code (128 + n when a signal n ended it). Ends the command with
SIGTERM when our stdin is closed or on SIGTERM.

Sources: Python's pty and termios modules; man 4 pts, man 2 ioctl_tty (TIOCSWINSZ).
"""

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.stderr.write("usage: pty_run.py COLS ROWS -- COMMAND [ARGS...]\n")
        return 64
    cols, rows = int(sys.argv[1]), int(sys.argv[2])
    argv = sys.argv[4:]
    pid, master = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.kill(pid, signal.SIGWINCH)

    def stop(*_args: object) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, stop)
    stdin_open = True
    out = sys.stdout.buffer
    while True:
        fds = [master] + ([0] if stdin_open else [])
        try:
            ready, _, _ = select.select(fds, [], [], 0.5)
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                break
            out.write(data)
            out.flush()
        if 0 in ready:
            data = os.read(0, 4096)
            if not data:
                stdin_open = False
                stop()
            else:
                os.write(master, data)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main())
