"""The memory inspector: server-rendered pages (Jinja2, autoescaped) with a little JavaScript, no build step."""
