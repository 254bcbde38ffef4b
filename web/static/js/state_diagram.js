/**
 * Live state and heatmap diagrams (web/process_views.py): draws each
 * <div data-state-diagram="ID"> from the JSON data block <script type="application/json" id="ID">
 * ({"xml": "...", "markers": [...], "overlays": [...]}) with diagram.js's viewer and annotations.
 * The XML travels inside the page, so the view of a child's record is one request, audited once.
 */
import { annotate, renderDiagram, showProblem } from "./diagram.js";

async function start(container) {
  try {
    const source = document.getElementById(container.dataset.stateDiagram);
    const data = JSON.parse(source.textContent);
    const viewer = await renderDiagram(container, data.xml);
    annotate(viewer, { markers: data.markers, overlays: data.overlays });
    container.fdViewer = viewer;
    container.dataset.diagramReady = "true";
    container.dispatchEvent(new CustomEvent("fd:diagram-ready", { detail: { viewer } }));
  } catch (error) {
    showProblem(container, `The diagram cannot be shown: ${error.message || error}; the table below lists the same.`);
    container.dataset.diagramReady = "error";
  }
}

for (const container of document.querySelectorAll("[data-state-diagram]")) {
  start(container);
}
