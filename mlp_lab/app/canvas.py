"""The Draw page's canvas: a small Streamlit (components v2) element of our own.

It sends the drawing once per stroke, on pointer-up, as a PNG data URL. The third-party canvas we
used first waited 200 ms after the last change before sending; that alone used two thirds of the
300 ms stroke-to-answer budget. Plain canvas 2D drawing needs no library.
"""

from __future__ import annotations

import streamlit as st

NAME = "mlp_lab.drawing_canvas"

HTML = '<canvas class="mlp-canvas" data-testid="mlp-canvas"></canvas>'

CSS = """
.mlp-canvas { touch-action: none; cursor: crosshair; border: 1px solid #bbb; border-radius: 4px; display: block; }
"""

# Called on mount and again on each rerun that passes new data; the drawing lives in the <canvas>
# element and the stroke in progress on it, so a rerun that lands mid-stroke loses nothing.
JS = """
export default function ({ data, parentElement, setStateValue }) {
  const canvas = parentElement.querySelector("canvas");
  const ctx = canvas.getContext("2d");
  if (!canvas.dataset.ready) {
    canvas.width = data.size;
    canvas.height = data.size;
    canvas.style.width = data.size + "px";
    canvas.style.height = data.size + "px";
    ctx.fillStyle = data.background;
    ctx.fillRect(0, 0, data.size, data.size);
    canvas.dataset.ready = "1";
    canvas.dataset.strokes = "0";
  }
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  const segment = (from, to) => {
    ctx.strokeStyle = data.stroke;
    ctx.lineWidth = data.brush;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from[0], from[1]);
    ctx.lineTo(to[0], to[1]);
    ctx.stroke();
  };
  // One set of listeners, with this call's data: drop the previous call's, cleanup or not.
  if (canvas.controller) canvas.controller.abort();
  const controller = new AbortController();
  canvas.controller = controller;
  const options = { signal: controller.signal };
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    canvas.last = at(event);
    segment(canvas.last, canvas.last);  // a click is a dot
  }, options);
  canvas.addEventListener("pointermove", (event) => {
    if (!canvas.last) return;
    const point = at(event);
    segment(canvas.last, point);
    canvas.last = point;
  }, options);
  const finish = () => {
    if (!canvas.last) return;
    canvas.last = null;
    canvas.dataset.strokes = String(Number(canvas.dataset.strokes) + 1);
    setStateValue("image", canvas.toDataURL("image/png"));
  };
  canvas.addEventListener("pointerup", finish, options);
  canvas.addEventListener("pointercancel", finish, options);
  return () => controller.abort();
}
"""

_mount = st.components.v2.component(NAME, html=HTML, css=CSS, js=JS)


def drawing_canvas(*, key: str, size: int, brush: int, stroke: str, background: str) -> str | None:
    """Mount the canvas; the drawing so far as a PNG data URL, or None before the first stroke.

    A new `key` gives a fresh, empty canvas (Clear, another colour scheme).
    """
    result = _mount(
        key=key,
        data={"size": size, "brush": brush, "stroke": stroke, "background": background},
        default={"image": None},
        on_image_change=lambda: None,
        width="content",
        height="content",
    )
    return result.get("image")
