/**
 * The process owner's diagram editor: bpmn-js's prebuilt modeler, plus Frontdoor's own panel.
 *
 * Page: templates/processes/edit.html (the modeler bundle, global BpmnJS, is loaded before this).
 * The container #editor carries data-diagram-url (the draft or the newest version), data-save-url,
 * data-validate-url, data-revision (the draft revision it started from, "" for none) and
 * data-findings (JSON: findings from a refused deploy, shown at once).
 *
 * - Save draft posts the diagram (saveXML) with the revision it started from; a 409 says someone
 *   else saved first and nothing was overwritten.
 * - Check for problems saves first when there are unsaved changes, then asks the server for the
 *   findings, lists them (each with a button that shows its element) and marks them on the
 *   diagram (diagram.js's annotate).
 * - Deploy saves first when needed, then submits the ordinary form (the server deploys the
 *   revision named in it).
 * - The "Selected element" panel edits the name and the SpiffWorkflow properties
 *   (<spiffworkflow:properties>) of the selected element.  Extension elements bpmn-js does not
 *   know (spiffworkflow:*, other tools' own) are kept as they are: moddle reads them as generic
 *   elements and writes them back unchanged.
 */
import { annotate, clearAnnotations, fetchText, renderDiagram, showProblem } from "./diagram.js";

const SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core";
const container = document.getElementById("editor");
const statusLine = document.getElementById("editor-status");
const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
let modeler = null;
let dirty = false;
let selected = null;

function say(message) {
  statusLine.textContent = message;
}

function revision() {
  return container.dataset.revision || "";
}

function setRevision(value) {
  container.dataset.revision = String(value);
  for (const field of document.querySelectorAll("[data-revision-field]")) {
    field.value = String(value);
  }
}

async function post(url, fields) {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    body.append(name, value);
  }
  const response = await fetch(url, {
    method: "POST",
    body,
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrf, Accept: "application/json" },
  });
  let answer = {};
  try {
    answer = await response.json();
  } catch {
    answer = { error: `The server answered ${response.status}.` };
  }
  return { ok: response.ok, status: response.status, answer };
}

async function save() {
  const { xml } = await modeler.saveXML({ format: true });
  say("Saving…");
  const { ok, answer } = await post(container.dataset.saveUrl, {
    xml,
    revision: revision(),
    based_on_version: container.dataset.basedOn || "",
  });
  if (!ok) {
    say(`Not saved. ${answer.error || ""}`);
    if (answer.findings) {
      showFindings(answer.findings);
    }
    return false;
  }
  setRevision(answer.revision);
  dirty = false;
  say(`Saved as revision ${answer.revision} of the draft, ${answer.saved}.`);
  return true;
}

async function saveIfNeeded() {
  return dirty || !revision() ? save() : true;
}

// ------------------------------------------------------------------ findings

function showElement(id) {
  const element = modeler.get("elementRegistry").get(id);
  if (!element) {
    return;
  }
  modeler.get("selection").select(element);
  modeler.get("canvas").scrollToElement(element);
  container.scrollIntoView({ block: "nearest" });
}

function showFindings(findings) {
  const section = document.getElementById("findings");
  const list = section.querySelector("[data-findings-list]");
  const heading = section.querySelector("#findings-heading");
  const summary = section.querySelector("[data-findings-summary]");
  clearAnnotations(modeler);
  list.replaceChildren();
  heading.textContent = findings.length ? "Problems to fix before deploying" : "No problems found";
  summary.textContent = findings.length
    ? `${findings.length} ${findings.length === 1 ? "problem" : "problems"}. Each is marked on the diagram.`
    : "The draft can be deployed.";
  findings.forEach((finding, index) => {
    const item = document.createElement("li");
    item.className = "fd-finding";
    item.dataset.elementId = finding.element_id || "";
    const where = document.createElement("strong");
    const name = finding.element_name ? ` (${finding.element_name})` : "";
    where.textContent = `${index + 1}. ${finding.element_id || "The file"}${name}:`;
    item.append(where, ` ${finding.message} `);
    if (finding.element_id && modeler.get("elementRegistry").get(finding.element_id)) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "govuk-button govuk-button--secondary fd-finding__show";
      button.textContent = "Show on the diagram";
      button.addEventListener("click", () => showElement(finding.element_id));
      item.append(button);
    }
    list.append(item);
  });
  section.hidden = false;
  annotate(modeler, { findings });
}

async function validate() {
  if (!(await saveIfNeeded())) {
    return;
  }
  say("Checking the draft…");
  const { ok, answer } = await post(container.dataset.validateUrl, {});
  if (!ok) {
    say(answer.error || "The check could not be made.");
    return;
  }
  showFindings(answer.findings);
  say(answer.findings.length ? `Checked: ${answer.findings.length} to fix.` : "Checked: no problems.");
  document.getElementById("findings").focus?.();
}

// ------------------------------------------------------------------ the selected element's panel

function spiffProperties(businessObject) {
  const values = businessObject.extensionElements?.values || [];
  const container = values.find((v) => v.$type === "spiffworkflow:properties");
  return (container?.$children || [])
    .filter((child) => child.$type === "spiffworkflow:property")
    .map((child) => ({ name: child.name || "", value: child.value || "" }));
}

function propertyRow(name = "", value = "") {
  const row = document.createElement("div");
  row.className = "fd-property";
  const index = document.querySelectorAll(".fd-property").length + 1;
  for (const [part, initial, width] of [
    ["name", name, "govuk-input--width-20"],
    ["value", value, "govuk-input--width-20"],
  ]) {
    const group = document.createElement("div");
    group.className = "govuk-form-group fd-property__part";
    const labelNode = document.createElement("label");
    labelNode.className = "govuk-label";
    labelNode.htmlFor = `property-${index}-${part}`;
    labelNode.textContent = `Property ${index} ${part}`;
    const input = document.createElement("input");
    input.className = `govuk-input ${width}`;
    input.id = `property-${index}-${part}`;
    input.dataset.part = part;
    input.value = initial;
    input.autocomplete = "off";
    group.append(labelNode, input);
    row.append(group);
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "govuk-button govuk-button--secondary fd-property__remove";
  remove.textContent = `Remove property ${index}`;
  remove.addEventListener("click", () => row.remove());
  row.append(remove);
  return row;
}

function describe(element) {
  const type = (element.businessObject.$type || "").replace("bpmn:", "").replace(/([a-z])([A-Z])/g, "$1 $2");
  return `${type} ${element.id}`;
}

function showPanel(element) {
  const panel = document.getElementById("element-panel");
  const target = element && element.type === "label" ? element.labelTarget : element;
  selected = target;
  if (!target || !target.parent) {
    // Nothing, or the process / collaboration itself, is selected.
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  panel.querySelector("[data-element-what]").textContent = describe(target);
  document.getElementById("element-name").value = target.businessObject.name || "";
  const holder = panel.querySelector("[data-properties]");
  holder.replaceChildren();
  for (const { name, value } of spiffProperties(target.businessObject)) {
    holder.append(propertyRow(name, value));
  }
}

function applyPanel() {
  if (!selected) {
    return;
  }
  const element = selected;
  const modeling = modeler.get("modeling");
  const moddle = modeler.get("moddle");
  const name = document.getElementById("element-name").value;
  if ((element.businessObject.name || "") !== name) {
    modeling.updateLabel(element, name);
  }
  const wanted = [...document.querySelectorAll("#element-panel .fd-property")]
    .map((row) => ({
      name: row.querySelector('[data-part="name"]').value.trim(),
      value: row.querySelector('[data-part="value"]').value,
    }))
    .filter((p) => p.name);
  const current = spiffProperties(element.businessObject);
  if (JSON.stringify(current) !== JSON.stringify(wanted)) {
    const bo = element.businessObject;
    const others = (bo.extensionElements?.values || []).filter((v) => v.$type !== "spiffworkflow:properties");
    const values = [...others];
    if (wanted.length) {
      const children = wanted.map((p) => moddle.createAny("spiffworkflow:property", SPIFF_NS, p));
      values.push(moddle.createAny("spiffworkflow:properties", SPIFF_NS, { $children: children }));
    }
    const extensionElements = values.length ? moddle.create("bpmn:ExtensionElements", { values }) : undefined;
    modeling.updateProperties(element, { extensionElements });
  }
  say(`Changed ${element.id}. Save the draft to keep it.`);
  showPanel(element);
}

// ------------------------------------------------------------------ start

async function start() {
  try {
    const xml = await fetchText(container.dataset.diagramUrl);
    modeler = await renderDiagram(container, xml);
  } catch (error) {
    showProblem(container, `The diagram cannot be opened for editing: ${error.message || error}`);
    container.dataset.diagramReady = "error";
    return;
  }
  window.fdModeler = modeler; // for the browser tests and the developer console
  modeler.get("eventBus").on("commandStack.changed", () => {
    dirty = true;
    say("Unsaved changes.");
  });
  modeler.get("eventBus").on("selection.changed", ({ newSelection }) => {
    showPanel(newSelection.length === 1 ? newSelection[0] : null);
  });
  modeler.get("eventBus").on("element.changed", ({ element }) => {
    if (selected && element.id === selected.id && document.activeElement?.closest("#element-panel") == null) {
      showPanel(element);
    }
  });
  const initial = JSON.parse(container.dataset.findings || "[]");
  if (initial.length) {
    showFindings(initial);
  }
  document.getElementById("save-draft").addEventListener("click", () => save());
  document.getElementById("validate-draft").addEventListener("click", () => validate());
  document.getElementById("apply-properties").addEventListener("click", () => applyPanel());
  document.getElementById("add-property").addEventListener("click", () => {
    const holder = document.querySelector("#element-panel [data-properties]");
    const row = propertyRow();
    holder.append(row);
    row.querySelector("input").focus();
  });
  const form = document.getElementById("deploy-form");
  form.addEventListener("submit", async (event) => {
    if (dirty || !revision()) {
      event.preventDefault();
      if (await save()) {
        form.submit();
      }
    }
  });
  window.addEventListener("beforeunload", (event) => {
    if (dirty) {
      event.preventDefault();
    }
  });
  container.dataset.diagramReady = "true";
  say(modeler.fdImportWarnings.length ? `Opened, with ${modeler.fdImportWarnings.length} import warnings.` : "");
}

start();
