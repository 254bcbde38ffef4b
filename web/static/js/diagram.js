/**
 * Frontdoor's BPMN diagram viewer (bpmn-js), with markers and overlays.  Reusable by any page.
 *
 * On the page:
 *   1. the templates/processes/_diagram_assets.html include (bpmn-js stylesheets, font, diagram.css);
 *   2. <script src="/static/vendor/bpmn-js/bpmn-navigated-viewer.min.js"></script>  (global BpmnJS);
 *   3. <script type="module" src="/static/js/diagram.js"></script>;
 *   The site's Content-Security-Policy needs no change: the bundles set styles through the DOM
 *   (allowed by style-src 'self'), never with inline style attributes or <style> elements.
 *
 * Every element with the class "fd-diagram" and a data-diagram-url (not the editor's) is drawn
 * when the page loads:
 *
 *   <div class="fd-diagram" data-diagram-url="/processes/x/versions/1/diagram.bpmn"
 *        data-annotations='{"markers": [...], "overlays": [...], "findings": [...]}'   (optional)
 *        data-annotations-url="/somewhere/state.json">                                 (optional)
 *     <p data-diagram-status>Loading the diagram…</p>   (replaced by errors in words, if any)
 *   </div>
 *
 * Annotations (all optional; element ids are the BPMN ids):
 *   markers:  [{"element_id": "review", "class": "fd-marker--active"}]
 *             a CSS class on the shape; diagram.css has fd-marker--completed, --active, --waiting,
 *             --finding, and fd-marker--heat-1 .. --heat-4.
 *   overlays: [{"element_id": "deadline", "text": "Due Friday 8 March", "class": "fd-overlay--timer",
 *               "position": "bottom" | "top", "title": "longer words for a tooltip"}]
 *             a small label beside the shape (text only, never HTML).
 *   findings: [{"element_id": "...", "element_name": "...", "message": "..."}]
 *             a red marker and a numbered label on each element that has a problem.
 *
 * From a module:
 *   import { renderDiagram, annotate, clearAnnotations } from "/static/js/diagram.js";
 *   const viewer = await renderDiagram(container, xml);   // any BpmnJS bundle
 *   annotate(viewer, { markers, overlays, findings });
 * The container gets viewer.fdAnnotations (what was added) so clearAnnotations can remove it.
 */

const MARKER_FINDING = "fd-marker--finding";

/** Draw ``xml`` in ``container`` (emptied first) and fit it to the container. */
export async function renderDiagram(container, xml, options = {}) {
  const Viewer = options.Viewer || window.BpmnJS;
  if (!Viewer) {
    throw new Error("the bpmn-js bundle did not load");
  }
  const canvasHost = document.createElement("div");
  canvasHost.className = "fd-diagram__canvas";
  container.replaceChildren(canvasHost);
  const viewer = new Viewer({ container: canvasHost, ...(options.bpmnjs || {}) });
  const { warnings } = await viewer.importXML(xml);
  viewer.fdImportWarnings = warnings || [];
  viewer.get("canvas").zoom("fit-viewport", "auto");
  return viewer;
}

function hasElement(viewer, id) {
  return Boolean(id) && Boolean(viewer.get("elementRegistry").get(id));
}

function label(text, className, title) {
  const node = document.createElement("div");
  node.className = `fd-overlay ${className || ""}`.trim();
  node.textContent = text;
  if (title) {
    node.title = title;
  }
  return node;
}

/** Add markers, overlays and findings to a drawn diagram; unknown element ids are skipped. */
export function annotate(viewer, annotations = {}) {
  const canvas = viewer.get("canvas");
  const overlays = viewer.get("overlays");
  const added = viewer.fdAnnotations || { markers: [], overlays: [] };
  for (const marker of annotations.markers || []) {
    if (hasElement(viewer, marker.element_id) && marker.class) {
      canvas.addMarker(marker.element_id, marker.class);
      added.markers.push([marker.element_id, marker.class]);
    }
  }
  for (const overlay of annotations.overlays || []) {
    if (!hasElement(viewer, overlay.element_id)) {
      continue;
    }
    const position = overlay.position === "top" ? { top: -28, left: 0 } : { bottom: 4, left: 0 };
    added.overlays.push(
      overlays.add(overlay.element_id, "fd", { position, html: label(overlay.text, overlay.class, overlay.title) }),
    );
  }
  (annotations.findings || []).forEach((finding, index) => {
    if (!hasElement(viewer, finding.element_id)) {
      return;
    }
    canvas.addMarker(finding.element_id, MARKER_FINDING);
    added.markers.push([finding.element_id, MARKER_FINDING]);
    added.overlays.push(
      overlays.add(finding.element_id, "fd", {
        position: { top: -28, left: 0 },
        html: label(`Problem ${index + 1}: ${finding.message}`, "fd-overlay--finding", finding.message),
      }),
    );
  });
  viewer.fdAnnotations = added;
  return added;
}

/** Remove what annotate added. */
export function clearAnnotations(viewer) {
  const added = viewer.fdAnnotations;
  if (!added) {
    return;
  }
  const canvas = viewer.get("canvas");
  const overlays = viewer.get("overlays");
  for (const [id, className] of added.markers) {
    if (hasElement(viewer, id)) {
      canvas.removeMarker(id, className);
    }
  }
  for (const overlayId of added.overlays) {
    overlays.remove(overlayId);
  }
  viewer.fdAnnotations = { markers: [], overlays: [] };
}

/** Put an error in words where the diagram would be. */
export function showProblem(container, message) {
  const status = document.createElement("p");
  status.className = "govuk-body fd-diagram__status fd-diagram__status--error";
  status.textContent = message;
  container.replaceChildren(status);
}

export async function fetchText(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) {
    throw new Error(`the server answered ${response.status} for ${url}`);
  }
  return response.text();
}

async function readAnnotations(container) {
  const annotations = { markers: [], overlays: [], findings: [] };
  const merge = (more) => {
    for (const key of Object.keys(annotations)) {
      annotations[key].push(...((more && more[key]) || []));
    }
  };
  if (container.dataset.annotations) {
    merge(JSON.parse(container.dataset.annotations));
  }
  if (container.dataset.annotationsUrl) {
    merge(JSON.parse(await fetchText(container.dataset.annotationsUrl)));
  }
  return annotations;
}

async function start(container) {
  try {
    const xml = await fetchText(container.dataset.diagramUrl);
    const viewer = await renderDiagram(container, xml);
    annotate(viewer, await readAnnotations(container));
    container.fdViewer = viewer;
    container.dataset.diagramReady = "true";
    container.dispatchEvent(new CustomEvent("fd:diagram-ready", { detail: { viewer } }));
  } catch (error) {
    showProblem(container, `The diagram cannot be shown: ${error.message || error}`);
    container.dataset.diagramReady = "error";
  }
}

for (const container of document.querySelectorAll(".fd-diagram[data-diagram-url]:not(.fd-diagram--editor)")) {
  start(container);
}
