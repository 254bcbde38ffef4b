// Copies the front-end assets Frontdoor serves from node_modules into web/static/vendor
// and compiles the de-branded stylesheet. Run by `make assets` (after `npm ci`).
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";

const vendor = "web/static/vendor";
rmSync(vendor, { recursive: true, force: true });
mkdirSync(`${vendor}/govuk`, { recursive: true });
cpSync("node_modules/govuk-frontend/dist/govuk/govuk-frontend.min.js", `${vendor}/govuk/govuk-frontend.min.js`);
cpSync("node_modules/govuk-frontend/dist/govuk/assets/images", `${vendor}/govuk/assets/images`, { recursive: true });
cpSync("node_modules/htmx.org/dist/htmx.min.js", `${vendor}/htmx.min.js`);
// bpmn-js: the prebuilt viewer and modeler bundles and their stylesheets and font.
mkdirSync(`${vendor}/bpmn-js`, { recursive: true });
for (const bundle of ["bpmn-viewer", "bpmn-navigated-viewer", "bpmn-modeler"]) {
  cpSync(`node_modules/bpmn-js/dist/${bundle}.production.min.js`, `${vendor}/bpmn-js/${bundle}.min.js`);
}
cpSync("node_modules/bpmn-js/dist/assets", `${vendor}/bpmn-js/assets`, { recursive: true });
execFileSync(
  "node_modules/.bin/sass",
  ["--no-source-map", "--quiet", "--load-path=node_modules", "--style=compressed", "web/assets/frontdoor.scss", `${vendor}/frontdoor.css`],
  { stdio: "inherit" },
);
console.log(`assets ready in ${vendor}`);
