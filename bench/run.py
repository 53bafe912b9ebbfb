"""The end-to-end platform benchmark: ``voltrisk bench`` (see voltrisk/benchmark.py).

    .venv/bin/python bench/run.py --quick --json
"""

from voltrisk.cli import app

if __name__ == "__main__":
    app(["bench", *__import__("sys").argv[1:]])
