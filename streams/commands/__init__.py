"""One module per command of ``freshpaint-iterable``; ``streams.cli`` loads them lazily."""
